"""The images, built and run for real: a Docker engine of the tests' own, a
Debian base made by debootstrap, the CPU image (Dockerfile) built from this
checkout, and inside it what a user runs: the real data, horovodrun over MPI and
Gloo, mpirun with --layout mpi, a bad flag, checkpoints on a mounted directory.
`pytest -m docker`. The GPU image (Dockerfile.gpu) is built and checked by
test_gpu_image, marker docker_gpu, only when asked for (`pytest -m docker_gpu`).

The engine: dockerd from Debian's docker.io, its exec-root and socket in a
temporary directory, with no bridge, no iptables and no IP forwarding, so the
host's network is left as it was; its data-root is kept in
~/.cache/distsoftmax/docker (the base image and the build's layers: a later run
rebuilds only what changed; a new base, made when the host's CA certificates
or apt sources change, clears the rest), one test run at a time (a lock). It is stopped by
its PID, then whatever it started is ended by PID too. Builds use
--network host (apt and pip reach the package registries); every container
runs with --network none.

They need root, dockerd and debootstrap (./bootstrap.sh test installs docker.io
and debootstrap); elsewhere they skip and say why
(DISTSOFTMAX_DOCKER_TESTS=require turns that into a failure)."""
import fcntl
import glob
import hashlib
import io
import os
import re
import shutil
import signal
import subprocess
import sys
import tarfile
import tempfile
import time

import pytest

from harness import ROOT, saved_epoch, skip_unless_ready

CACHE = os.path.join(os.environ.get('XDG_CACHE_HOME') or os.path.expanduser('~/.cache'),
                     'distsoftmax')
DATA_ROOT = os.path.join(CACHE, 'docker')
LOGS = os.path.join(CACHE, 'docker-logs')  # the last build's output of each image
BASE_REPO = 'local/debian'   # tagged bookworm-<digest of what the host put in>
CPU_IMAGE = 'distsoftmax:cpu'
GPU_IMAGE = 'distsoftmax:gpu'
APP_UID = 1000              # the images' user (uid and gid), home /home/app
BUILD_TIMEOUT = 90 * 60     # bounds a hung build; a build with no wheels to reuse takes ~20 min
RUN_TIMEOUT = 600


def skip_reason():
    if os.geteuid() != 0:
        return 'docker tests need root (they start dockerd)'
    missing = [pkg for binary, pkg in (('dockerd', 'docker.io'), ('debootstrap', 'debootstrap'))
               if not shutil.which(binary, path=os.environ.get('PATH', '') + ':/usr/sbin:/sbin')]
    if missing:
        return f'missing packages {" ".join(missing)} (./bootstrap.sh test installs them)'
    return None


def require_docker():
    skip_unless_ready(skip_reason(), 'DISTSOFTMAX_DOCKER_TESTS')


# --- the engine -------------------------------------------------------------------

class Docker:
    """A running dockerd of our own and a client that talks to it alone."""

    def __init__(self, tmp):
        self.tmp = tmp
        self.sock = os.path.join(tmp, 'docker.sock')
        self.log_path = os.path.join(tmp, 'dockerd.log')
        client = '/usr/bin/docker' if os.access('/usr/bin/docker', os.X_OK) else shutil.which('docker')
        self.client = client
        self.env = dict(os.environ, DOCKER_HOST=f'unix://{self.sock}',
                        DOCKER_CONFIG=os.path.join(tmp, 'client'), DOCKER_BUILDKIT='0')
        self.proc = None
        self.base = None

    def start(self):
        os.makedirs(DATA_ROOT, exist_ok=True)
        dockerd = shutil.which('dockerd', path=os.environ.get('PATH', '') + ':/usr/sbin:/sbin')
        argv = [dockerd, '--data-root', DATA_ROOT, '--exec-root', os.path.join(self.tmp, 'exec'),
                '--pidfile', os.path.join(self.tmp, 'dockerd.pid'), '-H', f'unix://{self.sock}',
                '--bridge=none', '--iptables=false', '--ip6tables=false', '--ip-forward=false',
                '--ip-masq=false', '--log-level=warn']
        self.log = open(self.log_path, 'w')
        self.proc = subprocess.Popen(argv, stdout=self.log, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL, start_new_session=True)
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f'dockerd exited with {self.proc.returncode}:\n{self.log_tail()}')
            if os.path.exists(self.sock) and self('version', check=False, timeout=30).returncode == 0:
                return
            time.sleep(0.5)
        raise RuntimeError(f'dockerd did not answer within 120 s:\n{self.log_tail()}')

    def stop(self):
        """SIGTERM to dockerd by its PID (it stops its containerd), then SIGKILL by
        PID to anything it started that is still there."""
        if self.proc is None:
            return
        import psutil
        try:
            children = psutil.Process(self.proc.pid).children(recursive=True)
        except psutil.Error:
            children = []
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=30)
        for child in children:
            try:
                child.wait(timeout=10)
            except psutil.TimeoutExpired:
                child.kill()
            except psutil.Error:
                pass
        self.log.close()
        self.proc = None
        # dockerd leaves its bind mount of the host's network namespace
        # (exec-root/netns/default): unmount what is still mounted under tmp
        with open('/proc/self/mountinfo') as f:
            points = [line.split()[4] for line in f]
        for point in sorted((p for p in points if p.startswith(self.tmp + '/')), reverse=True):
            subprocess.run(['umount', point], capture_output=True)

    def log_tail(self, n=40):
        with open(self.log_path, errors='replace') as f:
            return ''.join(f.readlines()[-n:])

    def __call__(self, *args, check=True, timeout=RUN_TIMEOUT, **kw):
        r = subprocess.run([self.client, *args], env=self.env, capture_output=True, text=True,
                           timeout=timeout, **kw)
        if check and r.returncode != 0:
            raise AssertionError(f'docker {" ".join(args)}: exit {r.returncode}\n'
                                 f'{r.stdout[-3000:]}{r.stderr[-3000:]}')
        return r

    def has_image(self, ref):
        return self('image', 'inspect', ref, check=False).returncode == 0

    def image_id(self, ref):
        r = self('image', 'inspect', '-f', '{{.Id}}', ref, check=False)
        return r.stdout.strip() if r.returncode == 0 else None

    def build(self, dockerfile, tag, build_args, log_name):
        """docker build (the classic builder, --network host) of this checkout;
        its output in tmp/LOG_NAME, the tail of it in a failure. The image TAG
        had before is removed with the layers only it used (not the cache of
        the build stages: they are no parents of the image, and stay)."""
        before = self.image_id(tag)
        argv = [self.client, 'build', '--network', 'host', '-f', os.path.join(ROOT, dockerfile),
                '-t', tag]
        for key, value in build_args.items():
            argv += ['--build-arg', f'{key}={value}']
        os.makedirs(LOGS, exist_ok=True)     # kept: the one place to read a failed build whole
        log_path = os.path.join(LOGS, log_name)
        with open(log_path, 'w') as log:
            r = subprocess.run([*argv, ROOT], env=self.env, stdout=log, stderr=subprocess.STDOUT,
                               stdin=subprocess.DEVNULL, timeout=BUILD_TIMEOUT)
        with open(log_path, errors='replace') as f:
            out = f.read()
        assert r.returncode == 0, \
            f'docker build -f {dockerfile}: exit {r.returncode} (all of it in {log_path})\n{out[-6000:]}'
        if before and before != self.image_id(tag):
            self('image', 'rm', before, check=False)
        return out

    def run(self, image, *args, entrypoint=None, network='none', user=None, volumes=(),
            extra=(), timeout=RUN_TIMEOUT):
        argv = ['run', '--rm', '--network', network]
        if entrypoint:
            argv += ['--entrypoint', entrypoint]
        if user:
            argv += ['--user', user]
        for host, inside in volumes:
            argv += ['-v', f'{host}:{inside}']
        return self(*argv, *extra, image, *map(str, args), check=False, timeout=timeout)


def host_mirror():
    """The Debian archive the host's apt uses (deb822 .sources or sources.list)."""
    texts = []
    for path in ['/etc/apt/sources.list', *sorted(glob.glob('/etc/apt/sources.list.d/*.sources')),
                 *sorted(glob.glob('/etc/apt/sources.list.d/*.list'))]:
        try:
            with open(path) as f:
                texts.append(f.read())
        except OSError:
            pass
    for text in texts:
        for stanza in re.split(r'\n\s*\n', text):
            if re.search(r'^Suites:.*\bbookworm\b(?!-)', stanza, re.M):
                uri = re.search(r'^URIs:\s*(\S+)', stanza, re.M)
                if uri and '-security' not in uri.group(1):
                    return uri.group(1)
        m = re.search(r'^deb\s+(?:\[[^]]*\]\s+)?(\S+)\s+bookworm\s', text, re.M)
        if m:
            return m.group(1)
    return 'http://deb.debian.org/debian'


SOURCES = '/etc/apt/sources.list.d/debian.sources'


def host_additions():
    """What the base takes from the host besides debootstrap's files: its apt
    sources (deb822, as the public image has them) and its extra CA certificates
    (certificates only: pip inside then trusts what the host trusts, as behind a
    TLS-inspecting proxy). {path in the image: bytes}."""
    files = {}
    if os.path.isfile(SOURCES):
        with open(SOURCES, 'rb') as f:
            files[SOURCES] = f.read()
    for crt in sorted(glob.glob('/usr/local/share/ca-certificates/*.crt')):
        with open(crt, 'rb') as f:
            files[crt] = f.read()
    return files


def base_ref():
    """The base's tag names a digest of host_additions(): a host whose CA or apt
    sources changed makes a new base instead of building on a stale one."""
    digest = hashlib.sha256()
    for path, content in sorted(host_additions().items()):
        digest.update(path.encode() + b'\0' + hashlib.sha256(content).digest())
    return f'{BASE_REPO}:bookworm-{digest.hexdigest()[:12]}'


def make_base(docker, tmp, ref):
    """debootstrap --variant=minbase bookworm from the host's Debian archive, plus
    host_additions(), imported as REF. Every image built on an older base is of
    no more use to a build's cache: they all go first."""
    docker('image', 'prune', '-a', '-f', timeout=1800)
    rootfs = os.path.join(tmp, 'rootfs')
    r = subprocess.run(['debootstrap', '--variant=minbase', 'bookworm', rootfs, host_mirror()],
                       capture_output=True, text=True, timeout=30 * 60)
    assert r.returncode == 0, f'debootstrap: exit {r.returncode}\n{r.stdout[-3000:]}{r.stderr[-3000:]}'
    additions = host_additions()
    if SOURCES in additions:
        os.remove(os.path.join(rootfs, 'etc/apt/sources.list'))
    for path, content in additions.items():
        os.makedirs(os.path.dirname(rootfs + path), exist_ok=True)
        with open(rootfs + path, 'wb') as f:
            f.write(content)
    tar = subprocess.Popen(['tar', '-C', rootfs, '--numeric-owner', '-c', '.'],
                           stdout=subprocess.PIPE)
    docker('import', '--change', 'CMD ["bash"]', '-', ref, stdin=tar.stdout, timeout=600)
    assert tar.wait() == 0
    shutil.rmtree(rootfs)


def host_wheels():
    """The wheels this host built that the CPU image may take instead of compiling:
    bootstrap.sh's Horovod (MXNet, Gloo, MPI) and mpi4py from pip's cache, both
    against bookworm's Open MPI and CPython 3.11. None on another release, or
    with DISTSOFTMAX_DOCKER_WHEELS=none (to build the images as without a host)."""
    if os.environ.get('DISTSOFTMAX_DOCKER_WHEELS') == 'none':
        return []
    try:
        with open('/etc/os-release') as f:
            if 'VERSION_CODENAME=bookworm' not in f.read():
                return []
    except OSError:
        return []
    found = sorted(glob.glob(os.path.join(CACHE, 'wheels', 'horovod-0.28.1-cp311-*.whl')))[-1:]
    pip_cache = subprocess.run([sys.executable, '-m', 'pip', 'cache', 'dir'], capture_output=True,
                               text=True).stdout.strip() or os.path.expanduser('~/.cache/pip')
    mpi4py = sorted(glob.glob(os.path.join(pip_cache, 'wheels', '**', 'mpi4py-*-cp311-*.whl'),
                              recursive=True), key=os.path.getmtime)[-1:]
    return found + mpi4py


def wheels_image(docker):
    """An image holding host_wheels() in /wheels (docker import of a tar), tagged
    by their content so that a rebuild finds the same layers; None if none."""
    wheels = host_wheels()
    if not wheels:
        return None
    digest = hashlib.sha256()
    for path in wheels:
        with open(path, 'rb') as f:
            digest.update(os.path.basename(path).encode() + hashlib.sha256(f.read()).digest())
    ref = f'local/distsoftmax-wheels:{digest.hexdigest()[:16]}'
    if not docker.has_image(ref):
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode='w') as tar:
            for path in wheels:
                tar.add(path, arcname=f'wheels/{os.path.basename(path)}')
        r = subprocess.run([docker.client, 'import', '-', ref], env=docker.env, input=buf.getvalue(),
                           capture_output=True, timeout=300)
        assert r.returncode == 0, r.stderr.decode(errors='replace')
    return ref


# --- fixtures ---------------------------------------------------------------------

@pytest.fixture(scope='module')
def docker():
    require_docker()
    os.makedirs(CACHE, exist_ok=True)
    with open(os.path.join(CACHE, 'docker.lock'), 'w') as lock:
        deadline = time.monotonic() + 60 * 60   # another test run has the data-root
        while True:
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    pytest.fail(f'{DATA_ROOT} stayed locked by another test run for an hour')
                time.sleep(5)
        tmp = tempfile.mkdtemp(prefix='dsdocker-', dir='/tmp')   # short: a unix socket path
        d = Docker(tmp)
        try:
            d.start()
            d('container', 'prune', '-f')      # left by a run that was killed
            d.base = base_ref()
            if not d.has_image(d.base):
                make_base(d, tmp, d.base)
            yield d
        finally:
            d.stop()
            shutil.rmtree(tmp, ignore_errors=True)


@pytest.fixture(scope='module')
def cpu_image(docker):
    args = {'BASE': docker.base}
    wheels = wheels_image(docker)
    if wheels:
        args['WHEELS'] = wheels
    started = time.monotonic()
    out = docker.build('Dockerfile', CPU_IMAGE, args, 'build-cpu.log')
    size = int(docker('image', 'inspect', '-f', '{{.Size}}', CPU_IMAGE).stdout)
    print(f'\n{CPU_IMAGE}: built in {(time.monotonic() - started) / 60:.1f} min, {size / 1e9:.2f} GB')
    if wheels:
        assert 'Horovod: the prebuilt wheel' in out, 'the host-built Horovod wheel was not taken'
    return CPU_IMAGE


def done_line(out):
    """The one done line, without the rank prefix horovodrun --mpi puts on it ([1,0]<stdout>:)."""
    lines = [m.group(1) for m in re.finditer(r'^(?:\[[\d,]+\]<stdout>:)?(done: .*)$', out, re.M)]
    assert len(lines) == 1, out
    return lines[0]


def final_acc(line):
    return float(re.search(r'final test acc ([\d.]+)', line).group(1))


# --- the CPU image ----------------------------------------------------------------

@pytest.mark.docker
def test_image_runs_as_uid_1000_with_its_own_data(docker, cpu_image):
    r = docker.run(cpu_image, '-c', 'id -u; id -g; echo "$HOME"; ls /usr/share/datasets/fashion-mnist',
                   entrypoint='/bin/sh')
    assert r.returncode == 0, r.stderr
    uid, gid, home, *files = r.stdout.split()
    assert (uid, gid, home) == (str(APP_UID), str(APP_UID), '/home/app')
    assert sorted(files) == sorted(['t10k-images-idx3-ubyte.gz', 't10k-labels-idx1-ubyte.gz',
                                    'train-images-idx3-ubyte.gz', 'train-labels-idx1-ubyte.gz'])


@pytest.mark.docker
def test_one_epoch_on_the_real_data(docker, cpu_image):
    """No network, so the data can only be the image's copy (checked by SHA-256)."""
    r = docker.run(cpu_image, '--epochs', '1')
    assert r.returncode == 0, r.stdout + r.stderr
    line = done_line(r.stdout)
    assert line.startswith('done: local, 1 worker(s) x 1 device(s) (cpu(0)), 1 epoch'), line
    assert 0.75 < final_acc(line) < 0.85, line   # the README's 0.792 after one epoch


@pytest.mark.docker
@pytest.mark.parametrize('transport', ['--mpi', '--gloo'])
def test_horovodrun_two_workers(docker, cpu_image, transport):
    """Gloo's rendezvous resolves the container's hostname: with --network none
    only `localhost` has an address (else both ranks die, 'Resource deadlock avoided')."""
    r = docker.run(cpu_image, '-np', '2', transport, 'python', '-m', 'distsoftmax',
                   '--epochs', '1', '--quiet', entrypoint='horovodrun',
                   extra=['--hostname', 'localhost'])
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    line = done_line(r.stdout)
    assert line.startswith('done: horovod, 2 worker(s) x 1 device(s)'), line
    assert 0.75 < final_acc(line) < 0.85, line


@pytest.mark.docker
def test_mpirun_layout_mpi(docker, cpu_image):
    r = docker.run(cpu_image, '-np', '2', 'python', '-m', 'distsoftmax', '--layout', 'mpi',
                   '--epochs', '1', '--quiet', entrypoint='mpirun')
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    line = done_line(r.stdout)
    assert line.startswith('done: mpi, 2 worker(s) x 1 device(s)'), line
    assert 0.75 < final_acc(line) < 0.85, line


@pytest.mark.docker
def test_bad_flag_is_one_line_and_exit_2(docker, cpu_image):
    r = docker.run(cpu_image, '--no-such-flag')
    assert r.returncode == 2, (r.returncode, r.stdout, r.stderr)
    assert r.stdout == ''
    lines = r.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith('distsoftmax: error: ') \
        and '--no-such-flag' in lines[0], r.stderr


@pytest.mark.docker
def test_checkpoints_on_a_mounted_directory_resume_on_the_host(docker, cpu_image, tmp_path):
    """The container writes as uid 1000 into a host directory of that owner;
    the host's own checkout resumes from what it wrote."""
    runs = tmp_path / 'runs'
    runs.mkdir()
    os.chown(runs, APP_UID, APP_UID)
    r = docker.run(cpu_image, '--epochs', '1', '--quiet', '--checkpoint-dir', '/runs/ckpt',
                   '--metrics', '/runs/metrics.jsonl', volumes=[(runs, '/runs')])
    assert r.returncode == 0, r.stdout + r.stderr
    ckpt = runs / 'ckpt'
    assert saved_epoch(ckpt) == 1
    written = [ckpt, *ckpt.iterdir(), runs / 'metrics.jsonl']
    assert {(p.stat().st_uid, p.stat().st_gid) for p in written} == {(APP_UID, APP_UID)}, \
        [(p.name, p.stat().st_uid) for p in written]

    r = subprocess.run([sys.executable, '-m', 'distsoftmax', '--epochs', '2',
                        '--checkpoint-dir', str(ckpt), '--resume'], cwd=ROOT,
                       capture_output=True, text=True, timeout=RUN_TIMEOUT)
    assert r.returncode == 0, r.stdout + r.stderr
    assert f'resumed from {ckpt} after epoch 1' in r.stdout + r.stderr
    assert 'epochs (1 this run)' in done_line(r.stdout)
    assert saved_epoch(ckpt) == 2


# --- the GPU image ----------------------------------------------------------------

def standin_libcuda(docker, tmp):
    """Debian's libcuda1 (non-free), unpacked on the host: the driver's
    libcuda.so.1 without a driver or a GPU behind it. Fetched by apt in a
    container of the base (--network host), as root."""
    out = os.path.join(tmp, 'libcuda1')
    os.makedirs(out)
    script = ("sed -i 's/^Components: main$/Components: main contrib non-free non-free-firmware/' "
              "/etc/apt/sources.list.d/debian.sources && apt-get update -qq && cd /tmp "
              "&& apt-get download -qq libcuda1 && dpkg-deb -x libcuda1_*.deb /out")
    r = docker.run(docker.base, '-c', script, entrypoint='/bin/sh', network='host', user='0',
                   volumes=[(out, '/out')])
    assert r.returncode == 0, r.stdout + r.stderr
    found = glob.glob(os.path.join(out, 'usr/lib/x86_64-linux-gnu/**/libcuda.so.1'), recursive=True)
    assert found, f'no libcuda.so.1 in libcuda1: {os.listdir(out)}'
    return out, os.path.dirname(found[0])


@pytest.mark.docker_gpu
def test_gpu_image(request, tmp_path):
    """Build Dockerfile.gpu (about 30 min, 16 GB of disk during the build), then,
    with no GPU and a stand-in libcuda.so.1: mxnet imports with CUDA, CUDNN and
    NCCL, Horovod has NCCL, and CPU training passes in one process and under
    horovodrun. Only with `-m docker_gpu`."""
    if 'docker_gpu' not in (request.config.option.markexpr or ''):
        pytest.skip('the GPU image builds for ~30 min: run it with -m docker_gpu')
    docker = request.getfixturevalue('docker')   # not started for the skip
    args = {'BASE': docker.base}
    wheels = wheels_image(docker)
    if wheels:
        args['WHEELS'] = wheels
    started = time.monotonic()
    docker.build('Dockerfile.gpu', GPU_IMAGE, args, 'build-gpu.log')
    minutes = (time.monotonic() - started) / 60
    size = int(docker('image', 'inspect', '-f', '{{.Size}}', GPU_IMAGE).stdout)
    print(f'\n{GPU_IMAGE}: built in {minutes:.1f} min, {size / 1e9:.2f} GB')

    # no driver: mxnet-cu112 cannot load
    r = docker.run(GPU_IMAGE, '-c', 'import mxnet', entrypoint='python')
    assert r.returncode != 0 and 'libcuda.so.1' in r.stderr, r.stderr

    host_dir, lib_dir = standin_libcuda(docker, str(tmp_path))
    inside = '/opt/standin' + lib_dir[len(host_dir):]
    standin = ['-e', f'LD_LIBRARY_PATH={inside}']
    vol = [(host_dir, '/opt/standin:ro')]
    code = ('import mxnet; from mxnet.runtime import Features; f = Features(); '
            'print(*(n + "=" + str(f.is_enabled(n)) for n in ("CUDA", "CUDNN", "NCCL")), '
            '"gpus=" + str(mxnet.context.num_gpus()))')
    r = docker.run(GPU_IMAGE, '-c', code, entrypoint='python', volumes=vol, extra=standin)
    assert r.returncode == 0, r.stderr
    print(r.stdout.strip())
    assert r.stdout.split() == ['CUDA=True', 'CUDNN=True', 'NCCL=True', 'gpus=0'], r.stdout

    r = docker.run(GPU_IMAGE, '--check-build', entrypoint='horovodrun', volumes=vol, extra=standin)
    assert r.returncode == 0, r.stderr
    print(r.stdout.strip())
    for op in ('MXNet', 'MPI', 'Gloo', 'NCCL'):
        assert re.search(rf'\[X\] {op}\b', r.stdout), r.stdout
    # its PyTorch tick only says that horovod.torch imports: it does without its
    # extension (a warning), which was not built
    r = docker.run(GPU_IMAGE, '-c', 'import glob, os, horovod; d = os.path.dirname(horovod.__file__); '
                   'print(len(glob.glob(d + "/torch/mpi_lib*")), len(glob.glob(d + "/mxnet/mpi_lib*")))',
                   entrypoint='python')
    assert r.stdout.split() == ['0', '1'], r.stdout + r.stderr

    r = docker.run(GPU_IMAGE, '--epochs', '1', volumes=vol, extra=standin)
    assert r.returncode == 0, r.stdout + r.stderr
    line = done_line(r.stdout)
    print(line)
    assert 0.75 < final_acc(line) < 0.85, line

    r = docker.run(GPU_IMAGE, '-np', '2', '--mpi', 'python', '-m', 'distsoftmax', '--epochs', '1',
                   '--quiet', entrypoint='horovodrun', volumes=vol,
                   extra=[*standin, '--hostname', 'localhost'])
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    line = done_line(r.stdout)
    print(line)
    assert line.startswith('done: horovod, 2 worker(s)'), line

    # tests/gpu_check.sh in the image, the checkout mounted: it finds the
    # image's python and mxnet-cu112, which sees no GPU here (exit 2), and
    # tests/test_gpu.py runs under the image's pytest, every test skipped
    mount = [(ROOT, '/src:ro')] + vol
    r = docker.run(GPU_IMAGE, entrypoint='tests/gpu_check.sh', volumes=mount,
                   extra=[*standin, '-w', '/src'])
    assert r.returncode == 2 and 'mxnet sees no GPU' in r.stderr, r.stdout + r.stderr
    r = docker.run(GPU_IMAGE, '-m', 'pytest', '-q', '-rs', '-p', 'no:cacheprovider',
                   'tests/test_gpu.py', entrypoint='python', volumes=mount,
                   extra=[*standin, '-w', '/src'])
    assert r.returncode == 0 and 'mxnet sees no GPU' in r.stdout and ' passed' not in r.stdout, \
        r.stdout[-3000:] + r.stderr[-3000:]
    print(r.stdout.strip().splitlines()[-1])
