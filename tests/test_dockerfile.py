"""Dockerfile (CPU) and Dockerfile.gpu: lint-clean, and in step with
pyproject.toml and the data module.

No docker and no network: hadolint reads the files, the rest parses them.
tests/test_docker.py builds and runs the images.
"""
import fnmatch
import json
import os
import re
import shutil
import subprocess
import sys
import tomllib

import pytest

from distsoftmax import data

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CPU, GPU = 'Dockerfile', 'Dockerfile.gpu'
BOTH = pytest.mark.parametrize('name', [CPU, GPU])


def _text(name):
    with open(os.path.join(ROOT, name), encoding='utf-8') as f:
        return f.read()


def instructions(name):
    """[(INSTRUCTION, arguments)], continuation lines joined, comments dropped."""
    out, buf = [], ''
    for line in _text(name).splitlines():
        if line.strip().startswith('#') or (not line.strip() and not buf):
            continue  # comments may sit inside a continued instruction; they are not part of it
        if line.rstrip().endswith('\\'):
            buf += line.rstrip()[:-1] + ' '
            continue
        buf += line
        word, _, rest = buf.strip().partition(' ')
        out.append((word.upper(), rest.strip()))
        buf = ''
    assert not buf, 'Dockerfile ends inside a continued line'
    return out


def stages(name):
    """[[(INSTRUCTION, arguments)] of each stage], the ARGs before the first FROM left out."""
    out = []
    for word, args in instructions(name):
        if word == 'FROM':
            out.append([])
        if out:
            out[-1].append((word, args))
    return out


def final_stage(name):
    return stages(name)[-1]


def pip_installs(name, where=None):
    """The arguments of every `pip install` in a RUN (of WHERE, a list of
    instructions; the whole file by default), spaces around specifiers removed."""
    found = []
    for word, args in where if where is not None else instructions(name):
        if word == 'RUN':
            for part in re.split(r'&&|;|\|\|', args):
                m = re.search(r'\bpip3?(?:\.\d+)? install (.*)', part)
                if m:
                    found += [a.strip('"\'') for a in m.group(1).split()]
    return found


def apt_installs(where):
    found = []
    for word, args in where:
        if word == 'RUN':
            for part in re.split(r'&&|;', args):
                m = re.search(r'\bapt-get install (.*)', part)
                if m:
                    found += [a for a in m.group(1).split() if not a.startswith('-')]
    return found


def pyproject():
    with open(os.path.join(ROOT, 'pyproject.toml'), 'rb') as f:
        return tomllib.load(f)['project']


def requirement(reqs, name):
    """The requirement string for NAME in a pyproject list, spaces removed."""
    hits = [r.replace(' ', '') for r in reqs
            if re.match(rf'{re.escape(name)}\s*(?:[<>=!~;\[]|$)', r)]
    assert len(hits) == 1, f'{name}: expected one requirement in {reqs}'
    return hits[0]


def hadolint_binary():
    for candidate in (shutil.which('hadolint'),
                      os.path.join(os.path.dirname(sys.executable), 'hadolint')):
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    return None


# --- (a) hadolint -------------------------------------------------------------

@BOTH
def test_hadolint_is_clean(name):
    binary = hadolint_binary()
    if binary is None:
        pytest.skip('hadolint not installed (the test extra installs it: pip install -e .[test])')
    r = subprocess.run([binary, '--no-color', name], cwd=ROOT,
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, f'hadolint found problems:\n{r.stdout}{r.stderr}'


@BOTH
def test_every_ignored_hadolint_rule_is_justified(name):
    """A `# hadolint ignore=DLxxxx` pragma needs a comment naming the rule just above it."""
    lines = _text(name).splitlines()
    pragmas = [(i, line) for i, line in enumerate(lines)
               if re.match(r'\s*#\s*hadolint\s+ignore=', line)]
    for i, line in pragmas:
        rules = re.search(r'ignore=(\S+)', line).group(1).split(',')
        above = []
        for prev in reversed(lines[:i]):
            if not prev.strip().startswith('#'):
                break
            above.append(prev)
        for rule in rules:
            assert any(rule in c for c in above), \
                f'line {i + 1}: {rule} is ignored without a comment saying why'


# --- (b) the base: Debian bookworm, the public image by default ----------------

@BOTH
def test_every_stage_starts_from_the_base_or_a_stage(name):
    text = _text(name)
    assert re.search(r'^ARG BASE=debian:bookworm$', text, re.M), 'ARG BASE=debian:bookworm'
    named = set()
    for stage in stages(name):
        word, args = stage[0]
        image, _, alias = args.partition(' AS ')
        assert image in ('${BASE}', '${WHEELS}') or image in named, f'FROM {args}'
        if alias:
            named.add(alias.strip())
    assert re.search(r'^ARG WHEELS=(\S+)$', text, re.M).group(1) in named, \
        'WHEELS must default to a stage of the file (no prebuilt wheels)'


@BOTH
def test_python_is_debians_and_matches_requires_python(name):
    """bookworm's python3 is 3.11; the build asserts it, against requires-python."""
    low = re.search(r'>=\s*(\d+)\.(\d+)', pyproject()['requires-python']).groups()
    assert f"sys.version_info[:2] == ({low[0]}, {low[1]})" in _text(name)
    assert 'python3' in apt_installs(final_stage(name))
    assert 'python3-venv' in apt_installs(stages(name)[-2]), 'the venv is made in the build stage'


@BOTH
def test_the_image_has_no_compiler(name):
    """A slim final stage: the venv is built in the stage before and copied."""
    final = final_stage(name)
    for pkg in apt_installs(final):
        assert not re.match(r'(build-essential|g\+\+|gcc|cmake|.*-dev|nvidia-cuda-toolkit)$', pkg), pkg
    assert ('COPY', '--from=build /opt/venv /opt/venv') in final
    assert not pip_installs(name, final), 'pip runs in the build stage only'


# --- (c) versions match pyproject.toml ---------------------------------------

def test_cpu_image_has_the_pinned_cpu_mxnet():
    pin = requirement(pyproject()['dependencies'], 'mxnet')
    assert re.fullmatch(r'mxnet==[\w.]+', pin), f'pyproject.toml should pin mxnet exactly, not {pin!r}'
    installs = pip_installs(CPU)
    assert pin in installs
    assert not any(a.startswith(('mxnet-cu', 'nvidia-')) for a in installs), installs


def test_gpu_image_has_the_cuda_build_of_the_pinned_mxnet_and_its_runtime():
    pin = requirement(pyproject()['dependencies'], 'mxnet')
    version = re.fullmatch(r'mxnet==([\w.]+)', pin).group(1)
    installs = pip_installs(GPU)
    wheel = [a for a in installs if a.startswith('mxnet-cu')]
    assert len(wheel) == 1, installs
    m = re.fullmatch(r'mxnet-cu(\d\d)(\d)==([\w.]+)', wheel[0])
    assert m and m.group(3) == version, f'{wheel[0]} vs {pin}'
    cuda_major = m.group(1)
    # the CPU wheel would replace the CUDA one: the package goes in with --no-deps
    assert not any(re.match(r'mxnet(?:==|$)', a) for a in installs)
    for word, args in instructions(GPU):
        for part in re.split(r'&&|;', args) if word == 'RUN' else ():
            m = re.search(r'\bpip3? install (.*)', part)
            if m and any(a == '.' or (a.startswith('/') and not a.endswith('.whl'))
                         for a in m.group(1).split()):
                assert '--no-deps' in part, f'the package must be installed with --no-deps: {part}'
    # every library libmxnet.so links, from one wheel each, for the same CUDA major, pinned
    runtime = {a.split('==')[0]: a for a in installs if a.startswith('nvidia-')}
    for lib in ('cuda-runtime', 'cublas', 'cufft', 'curand', 'cusolver', 'cuda-nvrtc', 'nvtx',
                'cudnn', 'nccl'):
        wheel = runtime.get(f'nvidia-{lib}-cu{cuda_major}')
        assert wheel and re.fullmatch(r'[\w-]+==[\d.]+', wheel), \
            f'nvidia-{lib}-cu{cuda_major} not pinned: {sorted(runtime)}'
    # libmxnet.so links libcudnn.so.8: cuDNN 9 has another soname
    assert runtime[f'nvidia-cudnn-cu{cuda_major}'].split('==')[1].startswith('8.')
    assert not set(runtime) - {f'nvidia-{lib}-cu{cuda_major}' for lib in (
        'cuda-runtime', 'cublas', 'cufft', 'curand', 'cusolver', 'cuda-nvrtc', 'nvtx', 'cudnn',
        'nccl')}, sorted(runtime)


def test_gpu_runtime_libraries_are_on_the_loader_path():
    """The wheels' lib directories are registered with ldconfig in the image,
    so libmxnet.so and Horovod find them without LD_LIBRARY_PATH."""
    final = final_stage(GPU)
    assert any(w == 'COPY' and a.endswith('/etc/ld.so.conf.d/nvidia-cu11.conf') for w, a in final)
    assert ('RUN', 'ldconfig') in final
    assert 'site-packages/nvidia/*/lib > /etc/ld.so.conf.d/nvidia-cu11.conf' in _text(GPU)


@BOTH
def test_numpy_bound_matches(name):
    bound = requirement(pyproject()['dependencies'], 'numpy')
    assert bound in pip_installs(name), f'{bound} (pyproject.toml) not installed in the image'


@BOTH
def test_other_runtime_dependencies_match(name):
    for req in pyproject()['dependencies']:
        dist = re.match(r'[A-Za-z0-9_.-]+', req).group(0)
        if dist in ('mxnet', 'numpy'):
            continue
        assert req.replace(' ', '') in pip_installs(name), f'{req} (pyproject.toml) not installed'


@BOTH
def test_mpi4py_matches_the_extra(name):
    req = requirement(pyproject()['optional-dependencies']['mpi'], 'mpi4py')
    assert req in pip_installs(name), f'{req} (pyproject.toml [mpi]) not installed in the image'
    assert '--no-binary=mpi4py' in pip_installs(name), 'mpi4py must link the image\'s Open MPI'


@BOTH
def test_horovod_matches_the_extra(name):
    pin = requirement(pyproject()['optional-dependencies']['horovod'], 'horovod')
    assert re.fullmatch(r'horovod==[\w.]+', pin), pin
    assert pin in pip_installs(name), f'{pin} (pyproject.toml [horovod]) not installed in the image'
    run = next(args for word, args in instructions(name)
               if word == 'RUN' and pin in args)
    flags = ['HOROVOD_WITH_MXNET=1', 'HOROVOD_WITH_MPI=1', 'HOROVOD_WITH_GLOO=1',
             '--no-build-isolation', 'horovodrun --check-build']
    checked = ['MXNet', 'MPI', 'Gloo']
    if name == GPU:
        flags += ['HOROVOD_GPU_OPERATIONS=NCCL', 'HOROVOD_NCCL_LINK=SHARED', 'HOROVOD_NCCL_HOME=']
        checked.append('NCCL')
    for flag in flags:
        assert flag in run, f'the Horovod build lacks {flag}'
    loop = re.search(r'for op in ([\w ]+); do', run)
    assert loop and set(checked) <= set(loop.group(1).split()), 'the build must check ' + ' '.join(checked)
    # a prebuilt wheel may stand in for the CPU build only: it has no NCCL
    if name == GPU:
        assert '/tmp/wheels/horovod' not in _text(GPU)


def test_gpu_kernels_of_horovod_match_mxnets_gpus():
    """mxnet-cu112 1.9.1 has kernels for sm_50, 60, 70, 80, 86 (no PTX): Horovod's
    own are built for the same list, and the README names those GPUs."""
    m = re.search(r'HOROVOD_BUILD_CUDA_CC_LIST=([\d,]+)', _text(GPU))
    assert m and m.group(1).split(',') == ['50', '60', '70', '80', '86'], m and m.group(1)
    with open(os.path.join(ROOT, 'README.md'), encoding='utf-8') as f:
        readme = f.read()
    assert 'sm_50, 60, 70, 80 and 86' in readme and 'H100' in readme


# --- (d) entrypoint, user ------------------------------------------------------

@BOTH
def test_entrypoint_runs_distsoftmax_in_exec_form(name):
    entry = [args for word, args in final_stage(name) if word == 'ENTRYPOINT']
    assert entry, 'no ENTRYPOINT in the final stage'
    argv = json.loads(entry[-1])  # exec form: a JSON array, so flags pass through
    assert argv in (['distsoftmax'], ['/opt/venv/bin/distsoftmax']) or (
        len(argv) == 3 and re.fullmatch(r'(?:\S*/)?python3?(?:\.\d+)?', argv[0])
        and argv[1:] == ['-m', 'distsoftmax']), argv


@BOTH
def test_runs_as_a_non_root_user(name):
    users = [args for word, args in final_stage(name) if word == 'USER']
    assert users, 'no USER in the final stage: the container would run as root'
    assert users[-1] == '1000:1000', f'USER {users[-1]}: numeric uid 1000 (runAsNonRoot, the README)'


@BOTH
def test_horovodrun_is_on_path(name):
    env = ' '.join(args for word, args in final_stage(name) if word == 'ENV')
    venv = re.search(r'VIRTUAL_ENV=(\S+)', env)
    assert venv and f'PATH={venv.group(1)}/bin:' in env, 'the venv bin (horovodrun) is not on PATH'


# --- (e) data -----------------------------------------------------------------

@BOTH
def test_data_is_debians_package_checked_against_the_loader(name):
    final = final_stage(name)
    assert 'dataset-fashion-mnist' in apt_installs(final)
    pairs = re.findall(r'\b([0-9a-f]{64})\s+((?:train|t10k)-[\w-]+\.gz)\b', _text(name))
    assert dict((f, digest) for digest, f in pairs) == data.FILES
    assert len(pairs) == len(data.FILES), 'a data file is listed twice'
    check = next(args for word, args in final if word == 'RUN' and data.FILES[
        'train-images-idx3-ubyte.gz'] in args)
    # the hashes are of the decompressed files, where the loader looks first
    assert 'zcat' in check and f'{data.DEBIAN_DIR}/$name' in check, check


# --- .dockerignore --------------------------------------------------------------

@BOTH
def test_dockerignore_keeps_what_the_image_copies(name):
    with open(os.path.join(ROOT, '.dockerignore'), encoding='utf-8') as f:
        patterns = [p.strip().rstrip('/') for p in f
                    if p.strip() and not p.startswith('#') and not p.startswith('!')]
    for must in ('.venv', '.git', 'runs'):
        assert must in patterns, f'.dockerignore should exclude {must}'
    for word, args in instructions(name):
        if word != 'COPY' or args.startswith('--from'):
            continue
        for src in [a for a in args.split() if not a.startswith('--')][:-1]:
            hit = [p for p in patterns if fnmatch.fnmatch(src.rstrip('/'), p.lstrip('*/'))]
            assert not hit, f'COPY {src}: excluded from the build context by .dockerignore {hit}'
            assert os.path.exists(os.path.join(ROOT, src)), f'COPY {src}: no such path'
