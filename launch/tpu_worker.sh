#!/usr/bin/env bash
# Runs on each TPU VM worker (tpu_vm.sh starts it, detached, on all workers at once): one
# attempt of the training command, with its log kept in the gs:// work dir.
#
#   bash launch/tpu_worker.sh --logs=gs://BUCKET/RUN/logs --tag=TAG -- COMMAND...
#
# The worker's log is ~/ssinfogan_logs/worker_<i>.log (i: the worker's number, which is its JAX
# process index), started from LOGS/worker_<i>.log so that it holds every attempt, even on a VM
# that was created again. It is copied to LOGS/worker_<i>.log every 30 s and when the command
# ends, and ends with the command's exit code; the code also goes to LOGS/exit_codes/TAG/worker_<i>,
# which tpu_vm.sh waits for. SIGTERM (a preemption) goes to the command, which saves a checkpoint
# and exits with 75; the log is then copied once more.
set -uo pipefail
# shellcheck source=launch/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

logs=""
tag=""
upload_every=30
while (($#)); do
  case "$1" in
    --logs=*) logs="${1#*=}" ;;
    --tag=*) tag="${1#*=}" ;;
    --upload-every=*) upload_every="${1#*=}" ;;
    --) shift; break ;;
    *) echo "tpu_worker.sh: unknown argument: $1" >&2; exit 2 ;;
  esac
  shift
done
if [[ -z "$logs" || -z "$tag" || $# -eq 0 ]]; then
  echo "tpu_worker.sh: give --logs=gs://..., --tag=... and, after --, the command" >&2
  exit 2
fi

# The worker's number: TPU_WORKER_ID where set, else the VM's metadata (what JAX reads for its
# process index on a TPU VM), else the host name's -w-<i> suffix, else the host name.
worker="${TPU_WORKER_ID:-}"
if [[ -z "$worker" ]]; then
  worker="$(curl -sf --max-time 5 -H 'Metadata-Flavor: Google' \
    http://metadata.google.internal/computeMetadata/v1/instance/attributes/agent-worker-number \
    2>/dev/null)" || worker=""
fi
if ! [[ "$worker" =~ ^[0-9]+$ ]]; then
  host="$(hostname)"
  if [[ "$host" =~ -w-([0-9]+)$ ]]; then
    worker="${BASH_REMATCH[1]}"
  else
    worker="$host"
  fi
fi

mkdir -p ~/ssinfogan_logs
log=~/ssinfogan_logs/"worker_$worker.log"
remote_log="$logs/worker_$worker.log"

# Earlier attempts' lines (a new VM starts with an empty disk); none yet: a new log.
if ! gcloud storage cp "$remote_log" "$log" >/dev/null 2>&1; then
  : >"$log"
fi
upload() {
  gcloud storage cp "$log" "$remote_log" >/dev/null 2>>~/ssinfogan_logs/upload_errors.log
}
echo "[tpu_vm.sh] attempt $tag on $(hostname) (worker $worker) at $(date)" >>"$log"
upload

# The periodic copy stops when $stop appears, after any copy under way: a late periodic copy
# must not replace the final one.
stop="$(mktemp -u ~/ssinfogan_logs/.stop.XXXXXX)"
(
  for ((second = 1; ; second++)); do
    sleep 1
    [[ -e "$stop" ]] && exit 0
    if ((second % upload_every == 0)); then upload; fi
  done
) &
uploader=$!

"$@" >>"$log" 2>&1 </dev/null &
child=$!
trap 'kill -TERM "$child" 2>/dev/null' TERM INT
status=0
wait_for_exit "$child" || status=$?

touch "$stop"
wait "$uploader"
rm -f "$stop"
echo "[tpu_vm.sh] exit code $status at $(date)" >>"$log"
upload
echo "$status" | gcloud storage cp - "$logs/exit_codes/$tag/worker_$worker" >/dev/null 2>&1
exit "$status"
