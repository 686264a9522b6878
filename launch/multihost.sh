#!/usr/bin/env bash
# Horovod over several hosts: horovodrun -np NP --hostfile HOSTFILE, started
# over ssh from this (the launch) host.
#
#   launch/multihost.sh [--gloo|--mpi] [distsoftmax train flags...]
#
# Needs on every host: passwordless ssh from the launch host, the repository at
# the same path as here (or a shared filesystem), and its .venv (bootstrap.sh
# setup). Data and --checkpoint-dir must be on storage every host sees the same
# way: rank 0 writes the checkpoints, every rank reads them on --resume.
#
# environment:
#   HOSTFILE            "host slots=N" lines, nothing else: horovodrun rejects
#                       comments and blank lines (default: launch/hosts; see hosts.example)
#   NP                  processes in all (default: the sum of the slots, e.g. 8)
#   HOROVOD_CONTROLLER  gloo (default) or mpi; a leading --gloo / --mpi argument wins
#   HOROVOD_GLOO_IFACE  the network interface to use, e.g. eth0 or ib0. Passed as
#                       horovodrun --network-interfaces, which then (a) picks the
#                       launch host's address that the workers reach Horovod's Gloo
#                       rendezvous server at (it runs inside horovodrun on this host,
#                       on a random TCP port 1024-65535), (b) sets HOROVOD_GLOO_IFACE
#                       and NCCL_SOCKET_IFNAME on every worker (with --mpi: also
#                       -mca btl_tcp_if_include). Unset, horovodrun probes every host
#                       for the common routed interfaces and uses the first, and
#                       overrides any NCCL_SOCKET_IFNAME of yours with that list.
#   SSH_PORT            ssh port, if not 22 (horovodrun -p)
#   OMP_NUM_THREADS     threads per process (default: 1)
#   HOROVODRUN_ARGS     more horovodrun options, split on spaces
#   PYTHON              the interpreter, as a path valid on every host
#                       (default: this repo's .venv/bin/python, else python)
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=SCRIPTDIR/common.sh
. "$here/common.sh"
use_repo_venv
python=${PYTHON:-${REPO_PYTHON:-python}}  # an absolute path: the same on every host

pick_controller multihost.sh "${1:-}"
shift "$SHIFT_ARGS"

hostfile=${HOSTFILE:-$here/hosts}
if [ ! -r "$hostfile" ]; then
    echo "multihost.sh: no hostfile $hostfile: copy launch/hosts.example there and edit it," \
         "or set HOSTFILE" >&2
    exit 2
fi
slots=0 hosts=0
while read -r line || [ -n "$line" ]; do
    if ! [[ "$line" =~ ^[^[:space:]]+[[:space:]]+slots=([0-9]+)[[:space:]]*$ ]]; then
        echo "multihost.sh: $hostfile: '$line' is not 'host slots=N'" \
             "(horovodrun takes no comments or blank lines)" >&2
        exit 2
    fi
    n=${BASH_REMATCH[1]}
    slots=$(( slots + n )) hosts=$(( hosts + 1 ))
done < "$hostfile"
if [ "$hosts" -eq 0 ]; then
    echo "multihost.sh: $hostfile lists no hosts" >&2
    exit 2
fi
NP=${NP:-$slots}

default_omp_threads

args=(-np "$NP" --hostfile "$hostfile" "--$controller")
if [ -n "${HOROVOD_GLOO_IFACE:-}" ]; then
    args+=(--network-interfaces "$HOROVOD_GLOO_IFACE")
fi
if [ -n "${SSH_PORT:-}" ]; then
    args+=(-p "$SSH_PORT")
fi
read -r -a extra <<< "${HOROVODRUN_ARGS:-}"

exec horovodrun "${args[@]}" "${extra[@]}" "$python" -m distsoftmax "$@"
