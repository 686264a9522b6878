#!/usr/bin/env bash
# One idempotent set-up for a fresh Debian/Ubuntu machine, then run or test.
#   ./bootstrap.sh setup   system packages, .venv, Horovod (MXNet+Gloo+MPI)
#   ./bootstrap.sh run     setup, then 5 epochs on the real Fashion-MNIST (CPU)
#   ./bootstrap.sh test    setup, the test tools (shellcheck, Slurm, munge, sshd,
#                          iproute2), then the test suite
# Extra arguments after run/test go to distsoftmax/pytest.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
venv="$root/.venv"
cache="${XDG_CACHE_HOME:-$HOME/.cache}/distsoftmax"
wheels="$cache/wheels"
horovod_version=0.28.1
apt_packages=(build-essential libopenmpi-dev openmpi-bin libgomp1 libquadmath0
              dataset-fashion-mnist python3 python3-venv python3-dev)
# only for ./bootstrap.sh test: the linter, the real Slurm, sshd and network
# namespaces of tests/test_cluster.py, and the Docker engine and debootstrap of
# tests/test_docker.py
test_packages=(shellcheck slurm-wlm munge openssh-server openssh-client iproute2
               docker.io debootstrap)

say() { printf 'bootstrap: %s\n' "$*" >&2; }
die() { say "error: $*"; exit 1; }

system_packages() {
    local missing=() p
    for p in "$@"; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'ok installed' || missing+=("$p")
    done
    [ ${#missing[@]} -eq 0 ] && return 0
    local sudo=""
    if [ "$(id -u)" -ne 0 ]; then
        if command -v sudo >/dev/null && sudo -n true 2>/dev/null; then sudo=sudo; fi
    fi
    if ! command -v apt-get >/dev/null || { [ "$(id -u)" -ne 0 ] && [ -z "$sudo" ]; }; then
        say "no apt-get or root: install by hand: ${missing[*]} (going on)"
        return 0
    fi
    say "apt-get install ${missing[*]}"
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends \
        "${missing[@]}" >/dev/null
}

pick_python() {
    local p
    for p in python3.11 python3; do
        if command -v "$p" >/dev/null &&
           "$p" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))'; then
            command -v "$p"; return 0
        fi
    done
    die "Python 3.11 not found (mxnet 1.9.1 needs it): install python3.11 and python3.11-venv"
}

python_env() {
    if [ ! -x "$venv/bin/python" ]; then
        say "creating $venv"
        "$(pick_python)" -m venv "$venv"
    fi
    # a stamp of pyproject.toml skips pip entirely when nothing changed
    local stamp="$venv/.distsoftmax-installed" want
    want=$(sha256sum "$root/pyproject.toml" | cut -d' ' -f1)
    if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
        say "installing distsoftmax (editable) with extras mpi,test"
        "$venv/bin/pip" install -q --upgrade pip wheel packaging
        # mpi4py from source, so it links the same OpenMPI as Horovod; the build
        # backend's boxed notes on editable installs are not for our users
        PYTHONWARNINGS=ignore "$venv/bin/pip" install -q --no-binary=mpi4py -e "${root}[mpi,test]"
        echo "$want" > "$stamp"
    fi
}

horovod_build() {
    # cheap: the installed version and its MXNet extension, without importing mxnet
    if compgen -G "$venv/lib/python3.*/site-packages/horovod/mxnet/mpi_lib*.so" >/dev/null &&
       compgen -G "$venv/lib/python3.*/site-packages/horovod-$horovod_version.dist-info" >/dev/null; then
        return 0
    fi
    mkdir -p "$wheels"
    if ! ls "$wheels"/horovod-"$horovod_version"-*.whl >/dev/null 2>&1; then
        say "building Horovod $horovod_version with MXNet, Gloo and MPI (about 3 min, once per machine)"
        HOROVOD_WITH_MXNET=1 HOROVOD_WITHOUT_TENSORFLOW=1 HOROVOD_WITHOUT_PYTORCH=1 \
        HOROVOD_WITH_GLOO=1 HOROVOD_WITH_MPI=1 \
            "$venv/bin/pip" wheel -q --no-deps --no-build-isolation \
            -w "$wheels" "horovod==$horovod_version"
    fi
    "$venv/bin/pip" install -q "$wheels"/horovod-"$horovod_version"-*.whl
    local check
    check=$("$venv/bin/horovodrun" --check-build 2>&1) || die "horovodrun --check-build failed"
    for fw in MXNet Gloo MPI; do
        grep -qE "\[X\] $fw" <<<"$check" ||
            die "Horovod built without $fw: remove $wheels/horovod-* and rerun ./bootstrap.sh setup"
    done
}

setup() {
    system_packages "${apt_packages[@]}"
    python_env
    horovod_build
}

cmd=${1:-setup}
[ $# -gt 0 ] && shift
usage() {
    sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d; s/^# \{0,1\}//'
}

case "$cmd" in
    -h | --help | help) usage ;;
    setup) setup; say "ready: $venv" ;;
    run)   setup; exec "$venv/bin/python" -m distsoftmax "$@" ;;
    test)  setup; system_packages "${test_packages[@]}"; cd "$root"; exec "$venv/bin/python" -m pytest "$@" ;;
    *)     say "error: unknown command '$cmd' (use setup, run, test or --help)"; exit 2 ;;
esac
