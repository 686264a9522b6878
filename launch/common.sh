#!/usr/bin/env bash
# Sourced by local.sh, mpi.sh and multihost.sh (running it alone does nothing):
# what every recipe does before it starts its launcher.
set -euo pipefail

# The repository's .venv first on PATH, where bootstrap.sh made one: horovodrun
# and python come from it, and the launchers pass PATH on to every worker.
use_repo_venv() {
    local repo
    repo=$(dirname "$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)")
    if [ -x "$repo/.venv/bin/python" ]; then
        PATH="$repo/.venv/bin:$PATH"
        export PATH
    fi
}

# NP: what the caller set, else one process per GPU (nvidia-smi -L), else 2.
default_np() {
    local script=$1 gpus=0
    if [ -z "${NP:-}" ]; then
        if command -v nvidia-smi >/dev/null 2>&1; then
            gpus=$(nvidia-smi -L 2>/dev/null | grep -c '^GPU' || true)
        fi
        NP=$(( gpus > 0 ? gpus : 2 ))
    fi
    case "$NP" in
        '' | *[!0-9]* | 0) echo "$script: NP must be a positive integer, not '$NP'" >&2; exit 2 ;;
    esac
}

# OMP_NUM_THREADS: what the caller set, else this host's cores shared out among
# the PER_HOST processes on it, so that they do not fight over the cores.
default_omp_threads() {
    local per_host=$1 cores
    if [ -z "${OMP_NUM_THREADS:-}" ]; then
        cores=$(nproc 2>/dev/null || echo 1)
        OMP_NUM_THREADS=$(( cores / per_host > 1 ? cores / per_host : 1 ))
    fi
    export OMP_NUM_THREADS
}
