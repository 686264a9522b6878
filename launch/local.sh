#!/usr/bin/env bash
# Horovod on this host: NP worker processes, one device each.
#
#   launch/local.sh [--gloo|--mpi] [distsoftmax train flags...]
#
# environment:
#   NP                  processes (default: one per GPU from nvidia-smi -L, else 2)
#   HOROVOD_CONTROLLER  gloo (default) or mpi: horovodrun --gloo / --mpi
#                       (a leading --gloo or --mpi argument wins over it)
#   OMP_NUM_THREADS     threads per process (default: max(1, cores / NP))
#   HOROVODRUN_ARGS     more horovodrun options, split on spaces,
#                       e.g. "--timeline-filename /tmp/timeline.json --verbose"
#   PYTHON              the interpreter (default: the repo's .venv, else python on PATH)
# Every other argument goes to `python -m distsoftmax`.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(dirname "$here")
if [ -x "$repo/.venv/bin/python" ]; then
    PATH="$repo/.venv/bin:$PATH"  # horovodrun and python from the venv
    export PATH
fi
python=${PYTHON:-python}

controller=${HOROVOD_CONTROLLER:-gloo}
case "${1:-}" in
    --gloo) controller=gloo; shift ;;
    --mpi) controller=mpi; shift ;;
esac

if [ -z "${NP:-}" ]; then
    gpus=0
    if command -v nvidia-smi >/dev/null 2>&1; then
        gpus=$(nvidia-smi -L 2>/dev/null | grep -c '^GPU' || true)
    fi
    NP=$(( gpus > 0 ? gpus : 2 ))
fi
case "$NP" in
    '' | *[!0-9]* | 0) echo "local.sh: NP must be a positive integer, not '$NP'" >&2; exit 2 ;;
esac

if [ -z "${OMP_NUM_THREADS:-}" ]; then
    cores=$(nproc 2>/dev/null || echo 1)
    OMP_NUM_THREADS=$(( cores / NP > 1 ? cores / NP : 1 ))
fi
export OMP_NUM_THREADS  # horovodrun passes the environment on to every process

read -r -a extra <<< "${HOROVODRUN_ARGS:-}"
case "$controller" in
    gloo) ctl=(--gloo) ;;
    mpi) ctl=(--mpi) ;;  # horovodrun adds Open MPI's --allow-run-as-root itself
    *) echo "local.sh: HOROVOD_CONTROLLER must be gloo or mpi, not '$controller'" >&2; exit 2 ;;
esac

exec horovodrun -np "$NP" -H "localhost:$NP" "${ctl[@]}" "${extra[@]}" \
    "$python" -m distsoftmax "$@"
