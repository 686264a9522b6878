#!/usr/bin/env bash
# Horovod over several hosts: horovodrun -np NP --hostfile HOSTFILE, started
# over ssh from this (the launch) host.
#
#   launch/multihost.sh [--gloo|--mpi] [distsoftmax train flags...]
#
# Needs on every host: passwordless ssh from the launch host, the repository at
# the same path as here (or a shared filesystem), and its .venv (bootstrap.sh
# setup). Data and --checkpoint-dir must be on storage every host sees the same
# way: rank 0 writes the checkpoints and, on --resume, reads and broadcasts one.
#
# environment:
#   HOSTFILE            "host slots=N" lines, nothing else: horovodrun rejects
#                       comments and blank lines (default: launch/hosts; see hosts.example)
#   NP                  processes in all (default: the sum of the slots, e.g. 8)
#   HOROVOD_CONTROLLER  gloo or mpi (default: mpi where mpirun is installed); a leading --gloo / --mpi wins
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
#   SSH_IDENTITY_FILE   ssh private key, if not ssh's default (horovodrun --ssh-identity-file)
#   CHECK_HOSTS         1 (default): with Gloo on several hosts, first check over ssh
#                       that every host's own name resolves, on that host, to one of
#                       its non-loopback addresses (on HOROVOD_GLOO_IFACE when set);
#                       Horovod 0.28.1's Gloo builds a context from that name, and
#                       fails ("Connection refused", or a segfault) where it resolves
#                       to 127.0.1.1 (Debian's and Ubuntu's default /etc/hosts) or to
#                       nothing. 0 skips the check.
#   OMP_NUM_THREADS     threads per process (default: 1)
#   HOROVODRUN_ARGS     more horovodrun options, split as a shell splits words
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
slots=0 hosts=0 names=()
while read -r line || [ -n "$line" ]; do
    if ! [[ "$line" =~ ^[^[:space:]]+[[:space:]]+slots=([0-9]+)[[:space:]]*$ ]]; then
        echo "multihost.sh: $hostfile: '$line' is not 'host slots=N'" \
             "(horovodrun takes no comments or blank lines)" >&2
        exit 2
    fi
    n=${BASH_REMATCH[1]}
    names+=("${line%%[[:space:]]*}")
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
ssh_settings
split_words multihost.sh HOROVODRUN_ARGS
extra=("${words[@]}")

# Run on a host: its name and the first IPv4 address that name resolves to there,
# its interfaces on one line, then its IPv4 addresses (on the interface $1, if
# given), one per line.
# shellcheck disable=SC2016  # expanded on the remote host
probe='h=$(hostname); a=$(getent ahostsv4 "$h" | head -n 1 | cut -d " " -f 1)
echo "$h ${a:--}"; echo $(ip -o link show | awk -F ": " "{sub(\"@.*\", \"\", \$2); print \$2}")
ip -o -4 addr show ${1:+dev "$1"} 2>/dev/null | awk "{sub(\"/.*\", \"\", \$4); print \$4}"'

# Horovod 0.28.1's Gloo builds one of its contexts from each host's own name
# (not from --network-interfaces): stop here, with the fix, where that name
# does not resolve to an address of that host that the other hosts can reach.
check_host_names() {
    local host out name addr ifaces mine ok a iface=${HOROVOD_GLOO_IFACE:-}
    for host in "${names[@]}"; do
        # the remote command's output alone: ssh's own notes (a changed host key's
        # banner) go to its stderr, kept apart for the message
        if ! out=$(ssh "${ssh_opts[@]}" "$host" bash -s -- "$iface" <<< "$probe" 2>"$ssh_err"); then
            echo "multihost.sh: cannot ssh to $host to check it (ssh ${ssh_opts[*]} $host):" \
                 "$(grep -v '^@' "$ssh_err" | grep . | tail -n 1)" >&2
            exit 2
        fi
        read -r name addr <<< "$(head -n 1 <<< "$out")"
        ifaces=$(sed -n 2p <<< "$out")
        if [ -n "$iface" ] && ! grep -qw -- "$iface" <<< "$ifaces"; then
            echo "multihost.sh: HOROVOD_GLOO_IFACE=$iface: $host has no such interface (it has: $ifaces)" >&2
            exit 2
        fi
        mine=$(tail -n +3 <<< "$out" | grep -v '^127\.' || true)
        ok=''
        for a in $mine; do [ "$a" = "$addr" ] && ok=1; done
        if [ -z "$ok" ]; then
            a=$(head -n 1 <<< "$mine")
            echo "multihost.sh: on $host the host name '$name' resolves to ${addr/#-/nothing}," \
                 "not to an address of ${iface:-a non-loopback interface of} $host; Horovod's Gloo" \
                 "fails on that: on $host put '${a:-ADDRESS} $name' in /etc/hosts (instead of any" \
                 "127.0.1.1 line), or use --mpi, or CHECK_HOSTS=0 to skip this check" >&2
            exit 2
        fi
    done
}
local_only=1
for host in "${names[@]}"; do
    case "$host" in localhost | 127.*) ;; *) local_only='' ;; esac
done
if [ "$controller" = gloo ] && [ "${CHECK_HOSTS:-1}" != 0 ] && [ -z "$local_only" ]; then
    ssh_err=$(mktemp)
    check_host_names
    rm -f "$ssh_err"
fi

# Open MPI's daemons notice a cut link only through TCP keepalives on their
# idle control connections (default: after 300 s idle, then 9 probes 20 s
# apart); 10 s, then 3 probes 3 s apart, ends a cut-off orted in about 20 s.
# A value you set wins.
export OMPI_MCA_oob_tcp_keepalive_time=${OMPI_MCA_oob_tcp_keepalive_time:-10}
export OMPI_MCA_oob_tcp_keepalive_intvl=${OMPI_MCA_oob_tcp_keepalive_intvl:-3}
export OMPI_MCA_oob_tcp_keepalive_probes=${OMPI_MCA_oob_tcp_keepalive_probes:-3}

# A failed job can leave a rank behind on its host: one stuck in Gloo's
# connection retries ignores SIGTERM, and horovodrun only ends its own ssh.
# Every rank of this run carries DISTSOFTMAX_MULTIHOST_RUN (horovodrun passes
# the environment on); after a failure, ssh ends those processes on every host,
# and only those.
DISTSOFTMAX_MULTIHOST_RUN="${HOSTNAME:-host}-$$-$(date +%s)-$RANDOM"
export DISTSOFTMAX_MULTIHOST_RUN
# shellcheck disable=SC2016  # expanded on the remote host
reap='for e in /proc/[0-9]*/environ; do
    if tr "\0" "\n" < "$e" 2>/dev/null | grep -qxF "DISTSOFTMAX_MULTIHOST_RUN=$1"; then
        p=${e#/proc/}; kill -KILL "${p%/environ}" 2>/dev/null && echo "${p%/environ}"
    fi
done; true'
reap_ranks() {
    local host pids
    for host in "${names[@]}"; do
        # not in ssh's own environment: on this host the search would find ssh
        pids=$(env -u DISTSOFTMAX_MULTIHOST_RUN ssh "${ssh_opts[@]}" "$host" \
               bash -s -- "$DISTSOFTMAX_MULTIHOST_RUN" <<< "$reap" 2>/dev/null) || continue
        if [ -n "$pids" ]; then
            echo "multihost.sh: ended what was left of this run on $host: pid ${pids//$'\n'/ }" >&2
        fi
    done
}

horovodrun "${args[@]}" "${extra[@]}" "$python" -m distsoftmax "$@" &
child=$!
trap 'kill -TERM "$child" 2>/dev/null || true' INT TERM
status=0
wait "$child" || status=$?
while kill -0 "$child" 2>/dev/null; do  # the wait was cut short by a signal
    status=0
    wait "$child" || status=$?
done
if [ "$status" -ne 0 ] && [ -z "$local_only" ]; then
    reap_ranks
fi
exit "$status"
