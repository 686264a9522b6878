#!/usr/bin/env bash
# Elastic Horovod: horovodrun -np NP --min-np MIN_NP [--max-np MAX_NP]
# --host-discovery-script, over Gloo. Workers that fail leave, hosts that the
# discovery lists join, and the job goes on without a restart; distsoftmax
# rolls back to its last commit and replays the same global steps, so the
# result stays the one-process result (README: "Elastic training").
#
#   launch/elastic.sh [distsoftmax train flags...]
#
# Needs what multihost.sh needs on every host (passwordless ssh from this
# launch host, the repository and its .venv at the same path, data and
# --checkpoint-dir on storage every host sees the same way).
#
# Blacklisting: a worker that fails (kill -9, a crash, an exit non-zero) gets
# its whole host blacklisted by horovodrun for the rest of the run (or for
# HOROVODRUN_ARGS="--blacklist-cooldown-range MIN MAX" seconds): two slots on
# one host do not survive the loss of one of them. Put the workers on
# different hosts (slots=1 each) to survive the loss of one.
#
# environment:
#   HOSTFILE            "host slots=N" (or "host:N") lines, read again at every
#                       discovery (every few seconds): add a line to add a host,
#                       remove one to take a host out (default: launch/hosts)
#   DISCOVERY           instead of HOSTFILE: a shell command that prints the
#                       available hosts, one "host:slots" line each
#   NP                  processes to start with (default: every slot found now)
#   MIN_NP              fewer processes than this: the job waits up to
#                       ELASTIC_TIMEOUT for hosts, then ends (default: 1)
#   MAX_NP              at most this many processes (default: no bound)
#   NETWORK_INTERFACE   the interface Gloo uses, e.g. eth0 (default: HOROVOD_GLOO_IFACE;
#                       lo when every host is localhost or 127.*). Required
#                       otherwise: without it elastic Gloo waits, silently, for two
#                       hosts to probe their common interfaces.
#   ELASTIC_TIMEOUT     s, horovodrun --elastic-timeout: how long to wait for
#                       MIN_NP processes after a change (default: 600)
#   DISTSOFTMAX_COMMIT_STEPS  steps between two commits (default: 32)
#   GRACE               s after a worker's error line before horovodrun, if it still
#                       runs (a stopped worker holds it), is stopped quietly (default: 30)
#   SSH_ALIVE           s between two ssh keepalives of horovodrun's ssh to a worker:
#                       a host cut off is dropped after 3 unanswered (default: 5)
#   SSH_PORT, SSH_IDENTITY_FILE, HOROVODRUN_ARGS, PYTHON, OMP_NUM_THREADS: as multihost.sh
#
# Output: horovodrun's own traceback for a failed job is dropped (the
# workers' one line says what failed); its exit code is kept. After a failure
# what is left of this run on every host that was ever listed is ended.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=SCRIPTDIR/common.sh
. "$here/common.sh"
use_repo_venv
python=${PYTHON:-${REPO_PYTHON:-python}}

work=$(mktemp -d "${TMPDIR:-/tmp}/distsoftmax-elastic.XXXXXX")
trap 'rm -rf "$work"' EXIT
seen=$work/seen
: > "$seen"

if [ -n "${DISCOVERY:-}" ]; then
    printf '#!/bin/sh\n( %s ) | tee -a %q\n' "$DISCOVERY" "$seen" > "$work/discover"
else
    hostfile=${HOSTFILE:-$here/hosts}
    if [ ! -r "$hostfile" ]; then
        echo "elastic.sh: no hostfile $hostfile: copy launch/hosts.example there and edit it," \
             "or set HOSTFILE or DISCOVERY" >&2
        exit 2
    fi
    hostfile=$(cd "$(dirname "$hostfile")" && pwd)/$(basename "$hostfile")
    n=0
    while IFS= read -r line || [ -n "$line" ]; do
        n=$(( n + 1 ))
        line=${line%%#*}
        [[ "$line" =~ ^[[:space:]]*$ || "$line" =~ ^[[:space:]]*[^[:space:]#:]+([[:space:]]+slots=[0-9]+|:[0-9]+)[[:space:]]*$ ]] && continue
        echo "elastic.sh: $hostfile line $n: '$line' is not 'host slots=N' or 'host:N'" >&2
        exit 2
    done < "$hostfile"
    # "host slots=N" and "host:N" lines; blank lines and comments are skipped
    cat > "$work/discover" <<EOF
#!/bin/sh
sed -n -e 's/^[[:space:]]*\([^[:space:]#:]\{1,\}\)[[:space:]]\{1,\}slots=\([0-9]\{1,\}\)[[:space:]]*$/\1:\2/p' -e t \\
       -e 's/^[[:space:]]*\([^[:space:]#:]\{1,\}:[0-9]\{1,\}\)[[:space:]]*$/\1/p' '$hostfile' | tee -a '$seen'
EOF
fi
chmod +x "$work/discover"

if ! now=$("$work/discover" 2>&1); then
    echo "elastic.sh: the host discovery failed: $(tail -n 1 <<< "$now")" >&2
    exit 2
fi
slots=0 local_only=1
while IFS=: read -r host n; do
    [ -n "$host" ] || continue
    case "$n" in '' | *[!0-9]*) echo "elastic.sh: discovery printed '$host:$n', not host:slots" >&2; exit 2 ;; esac
    slots=$(( slots + n ))
    case "$host" in localhost | 127.*) ;; *) local_only='' ;; esac
done <<< "$now"
if [ "$slots" -eq 0 ]; then
    echo "elastic.sh: the host discovery lists no slots${hostfile:+ in $hostfile}" >&2
    exit 2
fi
NP=${NP:-$slots}
MIN_NP=${MIN_NP:-1}
for v in NP MIN_NP ${MAX_NP:+MAX_NP} ${ELASTIC_TIMEOUT:+ELASTIC_TIMEOUT} ${GRACE:+GRACE} ${SSH_ALIVE:+SSH_ALIVE}; do
    case "${!v}" in '' | *[!0-9]* | 0) echo "elastic.sh: $v must be a positive integer, not '${!v}'" >&2; exit 2 ;; esac
done
if [ "$MIN_NP" -gt "$NP" ]; then
    echo "elastic.sh: MIN_NP $MIN_NP is more than NP $NP: lower MIN_NP, or list more slots (NP defaults to" \
         "every slot the discovery finds)" >&2
    exit 2
fi
if [ -n "${MAX_NP:-}" ] && [ "$MAX_NP" -lt "$NP" ]; then
    echo "elastic.sh: MAX_NP $MAX_NP is less than NP $NP: raise MAX_NP, or set NP to at most $MAX_NP" >&2
    exit 2
fi
iface=${NETWORK_INTERFACE:-${HOROVOD_GLOO_IFACE:-}}
if [ -z "$iface" ]; then
    if [ -n "$local_only" ]; then
        iface=lo
    else
        echo "elastic.sh: set NETWORK_INTERFACE (e.g. eth0): elastic Gloo on several hosts needs" \
             "--network-interface, or it waits for two hosts to probe their interfaces" >&2
        exit 2
    fi
fi

default_omp_threads
args=(-np "$NP" --min-np "$MIN_NP" --host-discovery-script "$work/discover" --gloo
      --network-interface "$iface")
[ -z "${MAX_NP:-}" ] || args+=(--max-np "$MAX_NP")
[ -z "${ELASTIC_TIMEOUT:-}" ] || args+=(--elastic-timeout "$ELASTIC_TIMEOUT")
ssh_settings
# horovodrun learns that a worker ended when its ssh to that host ends. Across
# a cut link that ssh would wait for TCP to give up, and the survivors' re-join
# waits for the host (tests/test_elastic.py saw the job fail): keepalives end
# it within 3 x SSH_ALIVE seconds, so that horovodrun drops the host.
mkdir "$work/bin"
cat > "$work/bin/ssh" <<EOF
#!/bin/sh
exec $(command -v ssh) -o ServerAliveInterval=${SSH_ALIVE:-5} -o ServerAliveCountMax=3 "\$@"
EOF
chmod +x "$work/bin/ssh"
split_words elastic.sh HOROVODRUN_ARGS
extra=("${words[@]}")

# every worker of this run carries DISTSOFTMAX_ELASTIC_RUN (horovodrun passes the
# environment on): after a failure, what is left of it is ended on every host
DISTSOFTMAX_ELASTIC_RUN="${HOSTNAME:-host}-$$-$(date +%s)-$RANDOM"
export DISTSOFTMAX_ELASTIC_RUN
# shellcheck disable=SC2016  # expanded on the remote host
reap='for e in /proc/[0-9]*/environ; do
    if tr "\0" "\n" 2>/dev/null < "$e" | grep -qxF "DISTSOFTMAX_ELASTIC_RUN=$1"; then
        p=${e#/proc/}; kill -KILL "${p%/environ}" 2>/dev/null
    fi
done; true'
reap_workers() {     # quietly: the worker's line said the job stops
    local host
    if [ -n "$local_only" ]; then
        env -u DISTSOFTMAX_ELASTIC_RUN bash -s -- "$DISTSOFTMAX_ELASTIC_RUN" <<< "$reap" > /dev/null 2>&1
        return
    fi
    while read -r host; do
        env -u DISTSOFTMAX_ELASTIC_RUN ssh "${ssh_opts[@]}" "$host" \
            bash -s -- "$DISTSOFTMAX_ELASTIC_RUN" <<< "$reap" > /dev/null 2>&1 || continue
    done < <(cut -d: -f1 "$seen" | sort -u)
}

# What horovodrun says of a failed job (its logging, its "Process N exit with
# status code" lines, its traceback) comes after the worker's own line, which
# says what failed: it is dropped; the first failed worker's exit code (from
# that traceback) becomes this script's. A failure of horovodrun's own (no
# worker said anything) is one line.
filter_launcher() {
    trap '' INT TERM    # Ctrl-C reaches the whole group: the workers' last lines still come through here
    local line tb='' msg='' said='' tagged='^\[[0-9]+\]<std(out|err)>:'
    # what a worker's Horovod and shell say when a peer leaves (Gloo's broken ring, a
    # kill): the rollback's line, or the job's one line, says it in our words
    local left='^\[[0-9]+\]<stderr>:(\[[0-9-]+ [0-9:. ]+: E [^]]*\] \[[0-9]+\]: Horovod background loop uncaught exception: |Killed$)'
    while IFS= read -r line || [ -n "$line" ]; do
        if [[ "$line" =~ $left ]]; then
            continue
        elif [[ "$line" =~ $tagged ]]; then
            if [[ "$line" =~ distsoftmax:\ (error:|interrupted|rank\ [0-9]+:\ interrupted) ]] && [ -z "$said" ]; then
                said=1
                date +%s > "$work/said"
            fi
            printf '%s\n' "$line"
        elif [[ "$line" == 'Traceback (most recent call last):' ]]; then
            tb=1
        elif [ -n "$tb" ] && [ -z "$msg" ] && [[ "$line" =~ ^[A-Za-z_.]*(Error|Exception|Interrupt|Timeout)(:\ |$) ]]; then
            msg=$line
        elif [[ "$line" =~ ^Exit\ code:\ ([0-9]+)$ ]]; then
            echo "${BASH_REMATCH[1]}" > "$work/code"
        elif [ -z "$tb" ] && ! [[ "$line" =~ ^(ERROR|WARNING|INFO|DEBUG):|^Process\ [0-9]+\ exit\ with\ status\ code ]]; then
            printf '%s\n' "$line"
        fi
    done
    local few='TimeoutException: Timed out waiting .* at least ([0-9]+) Horovod processes\. Timeout after ([0-9]+) seconds'
    if [ -n "$msg" ] && [ -z "$said" ] && [[ "$msg" =~ $few ]]; then
        # the survivors' own line can be lost when horovodrun ends their ssh first: say it for them
        echo "distsoftmax: error: the job could not be re-formed after a worker left: fewer than" \
             "${BASH_REMATCH[1]} workers (MIN_NP) within ${BASH_REMATCH[2]} s (ELASTIC_TIMEOUT); the last" \
             "checkpoint in --checkpoint-dir resumes with --resume"
    elif [ -n "$msg" ] && [ -z "$said" ]; then
        echo "elastic.sh: horovodrun: $msg"
    fi
}

# horovodrun in a session of its own: Ctrl-C (SIGINT to this whole group) or a
# SIGTERM here reaches it once, as the SIGINT it ends its workers on (they get
# its SIGTERM and say what was kept). The subshell that waits for it, and the
# filter, outlive that signal so that the exit code and the last lines come.
run_horovodrun() {
    trap ':' INT TERM      # handled, not ignored: horovodrun must not inherit an ignored SIGINT
    PATH="$work/bin:$PATH" setsid horovodrun "${args[@]}" "${extra[@]}" "$python" -m distsoftmax "$@" 2>&1 &
    local pid=$! rc=0
    echo "$pid" > "$work/pid"
    until wait "$pid"; rc=$?; [ "$rc" -le 128 ] || ! kill -0 "$pid" 2>/dev/null; do :; done
    [ "$rc" -eq 0 ] || echo "$rc" > "$work/status"
}
status=0
# (bash's own "Killed" notice of horovodrun, after a reap, goes to /dev/null: the worker's line said it)
run_horovodrun "$@" 2>/dev/null | filter_launcher &
filter=$!
# the exit code says the signal that reached this script (130 for Ctrl-C), not
# the SIGTERM that horovodrun passed on to its workers
# shellcheck disable=SC2317  # called by the traps below
on_signal() {
    echo "$1" > "$work/signalled"
    kill -INT "$(cat "$work/pid" 2>/dev/null)" 2>/dev/null || true
}
trap 'on_signal 130' INT
trap 'on_signal 143' TERM
# A worker that stops without dying (SIGSTOP, a hung host) never reports to
# horovodrun, which then waits for it for ever after the others have said
# their line and left: GRACE seconds after a worker's error line, horovodrun
# is stopped (the line said it all), and what is left of the run is ended.
grace=${GRACE:-30}
stopped=''
while kill -0 "$filter" 2>/dev/null; do
    sleep 1 || true        # a signal's trap interrupts it
    if [ -z "$stopped" ] && [ -s "$work/said" ] && [ $(( $(date +%s) - $(cat "$work/said") )) -ge "$grace" ]; then
        stopped=1
        kill -TERM "$(cat "$work/pid")" 2>/dev/null || true
        reap_workers
    fi
done
wait "$filter" 2>/dev/null || true
[ ! -s "$work/status" ] || status=$(cat "$work/status")
if [ "$status" -ne 0 ] && [ -s "$work/code" ]; then
    status=$(head -n 1 "$work/code")
fi
if [ -n "$stopped" ] && [ "$status" -eq 0 ]; then
    status=1
fi
if [ "$status" -ne 0 ] && [ -s "$work/signalled" ]; then
    status=$(cat "$work/signalled")
fi
if [ "$status" -ne 0 ]; then
    reap_workers
fi
exit "$status"
