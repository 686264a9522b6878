/* One core's fp32 peak and its streaming read bandwidth, for bench/native.py.
 *
 * usage: peak [ITERS] [MB]   prints one JSON line
 * The peak: 16 independent chains of a = a * m + c over the widest vector the
 * compiler targets with -march=native (AVX-512, AVX or SSE: GCC vector
 * extensions), which -O3 -ffp-contract=fast turns into one FMA each; 2 FLOP per
 * lane per FMA; the best of 3 repetitions. The bandwidth: one pass of 64-bit
 * loads over an MB-megabyte buffer, the best of 3. One thread: the bound it
 * gives is one core's, as the C floor and the numpy floor use one core.
 * build: cc -O3 -march=native -ffp-contract=fast peak.c -o peak
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#if defined(__AVX512F__)
#define VB 64
#elif defined(__AVX__)
#define VB 32
#else
#define VB 16
#endif
#define W (VB / 4)
#define NACC 16
typedef float vf __attribute__((vector_size(VB)));
static double now(void) { struct timespec t; clock_gettime(CLOCK_MONOTONIC, &t); return t.tv_sec + 1e-9 * t.tv_nsec; }
static double tcpu(void) { struct timespec t; clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t); return t.tv_sec + 1e-9 * t.tv_nsec; }
int main(int argc, char **argv) {
    long iters = argc > 1 ? atol(argv[1]) : 20000000;
    long mb = argc > 2 ? atol(argv[2]) : 128;
    volatile float seed = 1.0f;
    vf m = {0}, c = {0};
    for (int k = 0; k < W; k++) { m[k] = 0.999999f * seed; c[k] = 1e-7f * seed; }
    /* NACC independent chains in registers: enough to cover the FMA latency of two pipes */
    vf a0 = m, a1 = m * 2, a2 = m * 3, a3 = m * 4, a4 = m * 5, a5 = m * 6, a6 = m * 7, a7 = m * 8,
       a8 = m * 9, a9 = m * 10, a10 = m * 11, a11 = m * 12, a12 = m * 13, a13 = m * 14, a14 = m * 15, a15 = m * 16;
    double best = 0, best_cpu = 0;
    for (int rep = 0; rep < 3; rep++) {
        double t0 = now(), c0 = tcpu();
        for (long i = 0; i < iters; i++) {
#define F(a) a = a * m + c;
            F(a0) F(a1) F(a2) F(a3) F(a4) F(a5) F(a6) F(a7) F(a8) F(a9) F(a10) F(a11) F(a12) F(a13) F(a14) F(a15)
        }
        double wall = now() - t0, cp = tcpu() - c0;
        double flops = 2.0 * iters * NACC * W;
        if (flops / wall > best) { best = flops / wall; best_cpu = flops / cp; }
    }
    vf t = a0 + a1 + a2 + a3 + a4 + a5 + a6 + a7 + a8 + a9 + a10 + a11 + a12 + a13 + a14 + a15;
    float s = 0;
    for (int k = 0; k < W; k++) s += t[k];
    size_t n = (size_t)mb << 20;
    unsigned char *buf = malloc(n);
    memset(buf, 1, n);
    double bw = 0;
    unsigned long long sum = 0;
    for (int rep = 0; rep < 3; rep++) {
        double t0 = now();
        const unsigned long long *p = (const unsigned long long *)buf;
        unsigned long long a0 = 0, a1 = 0, a2 = 0, a3 = 0;
        for (size_t i = 0; i + 3 < n / 8; i += 4) { a0 += p[i]; a1 += p[i + 1]; a2 += p[i + 2]; a3 += p[i + 3]; }
        sum += a0 + a1 + a2 + a3;
        double t = now() - t0;
        if (n / t > bw) bw = n / t;
    }
    printf("{\"vector_bits\": %d, \"accumulators\": %d, \"gflops\": %.2f, \"gflops_per_cpu_s\": %.2f, \"read_gb_s\": %.2f, \"check\": %g}\n",
           VB * 8, NACC, best / 1e9, best_cpu / 1e9, bw / 1e9, (double)s + (double)(sum & 1));
    return 0;
}
