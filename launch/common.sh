#!/usr/bin/env bash
# shellcheck disable=SC2034  # REPO_PYTHON, controller, SHIFT_ARGS, words: read by the sourcing script
# Sourced by local.sh, mpi.sh and multihost.sh (running it alone does nothing):
# what every recipe does before it starts its launcher.
set -euo pipefail

# The repository's .venv first on PATH, where bootstrap.sh made one: horovodrun
# and python come from it, and the launchers pass PATH on to every worker.
# REPO_PYTHON: the venv's python as an absolute path, or empty.
use_repo_venv() {
    local repo
    repo=$(dirname "$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)")
    REPO_PYTHON=
    if [ -x "$repo/.venv/bin/python" ]; then
        PATH="$repo/.venv/bin:$PATH"
        export PATH
        REPO_PYTHON=$repo/.venv/bin/python
    fi
}

# Horovod's controller: HOROVOD_CONTROLLER, or a leading --gloo / --mpi argument
# (FIRST), which wins; SHIFT_ARGS tells the caller to drop it. Default: mpi where
# mpirun is installed (Horovod's Gloo controller trained several times slower on
# CPU: bench/RESULTS.md), else gloo.
pick_controller() {
    local script=$1 first=${2:-} default=gloo
    if command -v mpirun >/dev/null 2>&1; then default=mpi; fi
    controller=${HOROVOD_CONTROLLER:-$default}
    SHIFT_ARGS=0
    case "$first" in
        --gloo | --mpi) controller=${first#--}; SHIFT_ARGS=1 ;;
    esac
    case "$controller" in
        gloo | mpi) ;;
        *) echo "$script: HOROVOD_CONTROLLER must be gloo or mpi, not '$controller'" >&2; exit 2 ;;
    esac
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

# OMP_NUM_THREADS: what the caller set, else 1, distsoftmax's own default (the
# model's ops are too small to split across threads); exported, so that
# horovodrun and mpirun -x pass it on to every process.
default_omp_threads() {
    export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
}

# split_words SCRIPT NAME: the variable NAME (e.g. MPIRUN_ARGS) split into words
# as a shell would split it, quotes and backslashes included, without expanding
# anything: MPIRUN_ARGS="--mca plm_rsh_args '-i /keys/id -p 2222'" gives three
# words. The words land in the array `words`; unbalanced quotes exit 2.
split_words() {
    local script=$1 name=$2 value err
    value=${!name:-}
    words=()
    [ -n "$value" ] || return 0
    if ! err=$(xargs -r true 2>&1 <<< "$value"); then
        echo "$script: $name: ${err#xargs: }" >&2
        exit 2
    fi
    mapfile -d '' -t words < <(xargs -r printf '%s\0' <<< "$value")
}

# SSH_PORT and SSH_IDENTITY_FILE as horovodrun flags (appended to args) and as
# the options of this script's own ssh (ssh_opts), which match horovodrun's
ssh_settings() {
    ssh_opts=(-o BatchMode=yes -o ConnectTimeout=10 -o StrictHostKeyChecking=no)
    if [ -n "${SSH_PORT:-}" ]; then
        args+=(-p "$SSH_PORT")
        ssh_opts+=(-p "$SSH_PORT")
    fi
    if [ -n "${SSH_IDENTITY_FILE:-}" ]; then
        args+=(--ssh-identity-file "$SSH_IDENTITY_FILE")
        ssh_opts+=(-i "$SSH_IDENTITY_FILE")
    fi
}
