#!/usr/bin/env bash
# Restart-from-checkpoint for Horovod runs. Horovod's elastic mode does not
# exist for MXNet, so a failed rank (a crash, a killed process, a lost host)
# ends the whole horovodrun job; this script starts it again, continuing from
# the last completed epoch. At most one epoch of work is lost per failure.
#
#   launch/recover.sh [--gloo|--mpi] --checkpoint-dir DIR [distsoftmax train flags...]
#
# Every attempt runs `horovodrun ... python -m distsoftmax ARGS --resume`
# through $LAUNCHER, the first one too: with no checkpoint in DIR distsoftmax
# starts fresh (and says so), with one it continues an earlier run.
#
# environment:
#   MAX_RESTARTS   restarts after a failure (default 3); then it gives up
#   BACKOFF        seconds before the first restart (default 5), doubled each time
#   LAUNCHER       the script that runs horovodrun (default: launch/local.sh;
#                  launch/multihost.sh for several hosts); NP, HOROVOD_CONTROLLER,
#                  HOSTFILE, ... go to it
# Exit status: 0 once a run succeeds, else the last attempt's status. A dry
# run (--dry-run, every check before training, under the same launcher) comes
# first: what it rejects exits 2 and is not retried. SIGINT / SIGTERM of this
# script go to the running attempt and end the retries.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
launcher=${LAUNCHER:-$here/local.sh}
max_restarts=${MAX_RESTARTS:-3}
backoff=${BACKOFF:-5}
for v in "$max_restarts" "$backoff"; do
    case "$v" in
        '' | *[!0-9]*) echo "recover.sh: MAX_RESTARTS and BACKOFF must be whole numbers" >&2; exit 2 ;;
    esac
done

say() { printf 'recover.sh: %s %s\n' "$(date '+%Y-%m-%dT%H:%M:%S%z')" "$*" >&2; }

ckpt='' resume=''
args=("$@")
for i in "${!args[@]}"; do
    case "${args[$i]}" in
        --checkpoint-dir) ckpt=${args[$((i + 1))]:-} ;;
        --checkpoint-dir=*) ckpt=${args[$i]#--checkpoint-dir=} ;;
        --resume) resume=1 ;;
    esac
done
if [ -z "$ckpt" ]; then
    echo "recover.sh: --checkpoint-dir DIR is required: restarts continue from it" >&2
    exit 2
fi
if [ -z "$resume" ]; then
    args+=(--resume)
fi
# What fails the same way on every attempt (a flag, the data, a checkpoint made
# with other flags, a world size that does not divide the batch) fails this dry
# run under the real launcher: it is said once and not retried.
say "dry run: $launcher ${args[*]} --dry-run"
if ! "$launcher" "${args[@]}" --dry-run; then
    say "the dry run failed (the error above): not starting, nothing to retry"
    exit 2
fi

stopped='' child=''
trap 'stopped=1; if [ -n "$child" ]; then kill -TERM "$child" 2>/dev/null || true; fi' INT TERM

attempt=1
while :; do
    say "attempt $attempt: $launcher ${args[*]}"
    "$launcher" "${args[@]}" &
    child=$!
    status=0
    wait "$child" || status=$?
    while kill -0 "$child" 2>/dev/null; do  # the wait was cut short by a signal
        status=0
        wait "$child" || status=$?
    done
    child=''
    if [ "$status" -eq 0 ]; then
        say "attempt $attempt succeeded"
        exit 0
    fi
    say "attempt $attempt failed with exit $status"
    if [ -n "$stopped" ]; then
        say "interrupted: not restarting; the last completed epoch stays in $ckpt"
        exit "$status"
    fi
    if [ "$attempt" -gt "$max_restarts" ]; then
        say "giving up after $max_restarts restarts"
        exit "$status"
    fi
    say "restart $attempt of $max_restarts in ${backoff}s, from the last checkpoint in $ckpt"
    sleep "$backoff"
    backoff=$(( backoff * 2 ))
    attempt=$(( attempt + 1 ))
done
