#!/usr/bin/env bash
# Plain MPI, no Horovod: mpirun starts NP processes and distsoftmax sums the
# gradients with one mpi4py Allreduce per step (--layout mpi).
#
#   launch/mpi.sh [distsoftmax train flags...]
#
# environment:
#   NP               processes (default: one per GPU from nvidia-smi -L, else 2)
#   HOSTFILE         an Open MPI hostfile ("node1 slots=4" lines); default: this host
#   OMP_NUM_THREADS  threads per process (default: 1), sent with -x
#   MPIRUN_ARGS      more mpirun options, split as a shell splits words (quote a value
#                    with spaces), e.g. "--mca btl_tcp_if_include eth0" or
#                    "--mca plm_rsh_args '-o ConnectTimeout=10 -i /keys/id'"
#   SSH_IDENTITY_FILE, SSH_PORT
#                    with HOSTFILE: the ssh key and port mpirun uses to reach the
#                    hosts (-mca plm_rsh_args "-i FILE -p PORT"; give either these
#                    or plm_rsh_args in MPIRUN_ARGS, not both)
#   PYTHON           the interpreter (default: the repo's .venv, else python on PATH)
# mpi4py must be built against the mpirun found on PATH (bootstrap.sh does so).
set -euo pipefail

# shellcheck source=SCRIPTDIR/common.sh
. "$(dirname "${BASH_SOURCE[0]}")/common.sh"
use_repo_venv
python=${PYTHON:-python}
default_np mpi.sh
default_omp_threads
cores=$(nproc 2>/dev/null || echo 1)

args=(-np "$NP" -x OMP_NUM_THREADS -x PATH -x PYTHONUNBUFFERED=1)
if [ "$(id -u)" -eq 0 ]; then
    args+=(--allow-run-as-root)  # Open MPI refuses root without it
fi
if [ -n "${HOSTFILE:-}" ]; then
    args+=(--hostfile "$HOSTFILE")
elif [ "$NP" -gt "$cores" ]; then
    args+=(--oversubscribe)  # more ranks than cores on this one host
fi
rsh=()
if [ -n "${SSH_IDENTITY_FILE:-}" ]; then rsh+=(-i "$SSH_IDENTITY_FILE"); fi
if [ -n "${SSH_PORT:-}" ]; then rsh+=(-p "$SSH_PORT"); fi
if [ ${#rsh[@]} -gt 0 ]; then
    args+=(--mca plm_rsh_args "${rsh[*]}")
fi
split_words mpi.sh MPIRUN_ARGS
extra=("${words[@]}")

exec mpirun "${args[@]}" "${extra[@]}" "$python" -m distsoftmax --layout mpi "$@"
