#!/usr/bin/env bash
# Train on a Cloud TPU VM or pod slice: create the VM (or reuse, start or recreate it), copy this
# checkout to every worker, give each worker its own Python 3.11 environment (uv, from PyPI)
# with the package at the tested versions, and start the same command on all workers, detached
# (it survives the ssh session), each logging to ~/ssinfogan_logs/worker-<hostname>.log. JAX
# finds the other workers by itself (ssinfogan_jax.main calls jax.distributed.initialize()).
#
#   launch/tpu_vm.sh --name=ssinfogan-v4-32 --zone=us-central2-b --accelerator-type=v4-32 \
#       --config=configs/celeba.py --workdir=gs://my-bucket/celeba-run1 [--spot] [--dry-run] \
#       [-- --config.batch_size=256 ...]
#
# After a preemption, run the same command again: a PREEMPTED VM is deleted and created again,
# a STOPPED one is started, and training resumes from the work dir's latest checkpoint.
# --dry-run prints every command (the remote ones too) instead of running it. Flags after `--`
# go to main.py.
set -euo pipefail

name=""
zone=""
project=""
accelerator_type="v4-8"
version="tpu-ubuntu2204-base"
config="configs/mnist.py"
workdir=""
mode="train"
spot=0
dry_run=0
extra=()
invocation=("$0" "$@")

usage() {
  sed -n '2,16p' "$0" | sed 's/^# \{0,1\}//'
  exit "${1:-0}"
}

while (($#)); do
  case "$1" in
    --name=*) name="${1#*=}" ;;
    --zone=*) zone="${1#*=}" ;;
    --project=*) project="${1#*=}" ;;
    --accelerator-type=*) accelerator_type="${1#*=}" ;;
    --version=*) version="${1#*=}" ;;
    --config=*) config="${1#*=}" ;;
    --workdir=*) workdir="${1#*=}" ;;
    --mode=*) mode="${1#*=}" ;;
    --spot) spot=1 ;;
    --dry-run) dry_run=1 ;;
    -h | --help) usage 0 ;;
    --) shift; extra=("$@"); break ;;
    *) echo "tpu_vm.sh: unknown argument: $1" >&2; usage 2 ;;
  esac
  shift
done

for required in name zone workdir; do
  if [[ -z "${!required}" ]]; then
    echo "tpu_vm.sh: --${required} is required" >&2
    exit 2
  fi
done
if [[ "$workdir" != gs://* ]]; then
  echo "tpu_vm.sh: --workdir must be a gs:// path that every worker can reach" >&2
  exit 2
fi

# shellcheck source=launch/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
archive="/tmp/ssinfogan_jax-src.tar.gz"
tpu=(gcloud compute tpus tpu-vm)
where=(--zone="$zone")
if [[ -n "$project" ]]; then
  where+=(--project="$project")
fi
rerun="$(show "${invocation[@]}")"

# 1. The TPU VM: create it if absent, reuse it if READY, start it if STOPPED; a PREEMPTED VM can
# only be deleted, so delete it and create it again (the checkpoints live in the gs:// work dir).
describe=("${tpu[@]}" describe "$name" "${where[@]}" --format='value(state)')
create=("${tpu[@]}" create "$name" "${where[@]}" --accelerator-type="$accelerator_type"
  --version="$version")
if ((spot)); then
  create+=(--spot)
fi
delete=("${tpu[@]}" delete "$name" "${where[@]}" --quiet)
start=("${tpu[@]}" start "$name" "${where[@]}")
if ((dry_run)); then
  run "${describe[@]}"
  echo "# if it does not exist:"
  run "${create[@]}"
  echo "# if it is PREEMPTED: delete it, then the create above:"
  run "${delete[@]}"
  echo "# if it is STOPPED:"
  run "${start[@]}"
  echo "# if it is READY: reuse it; in any other state: stop, saying what to run"
else
  state="$("${describe[@]}" 2>/dev/null)" || state="ABSENT"
  case "$state" in
    ABSENT | "") run "${create[@]}" ;;
    READY) echo "tpu_vm.sh: $name exists and is READY: reusing it" ;;
    PREEMPTED)
      echo "tpu_vm.sh: $name was preempted: deleting it and creating it again" \
        "(training resumes from $workdir)"
      run "${delete[@]}"
      run "${create[@]}"
      ;;
    STOPPED) run "${start[@]}" ;;
    CREATING | STARTING | RESTARTING | REPAIRING | REIMAGING | STOPPING | DELETING)
      echo "tpu_vm.sh: $name is $state; when \`$(show "${describe[@]}")\` says READY or" \
        "STOPPED (or it is gone), run again: $rerun" >&2
      exit 1
      ;;
    *)
      echo "tpu_vm.sh: $name is $state; delete it with \`$(show "${delete[@]}")\`, then run" \
        "again: $rerun" >&2
      exit 1
      ;;
  esac
fi

# 2. Ship this checkout (committed files) to every worker and install it there, into a Python
# 3.11 venv of its own (launch/lib.sh: install_command). A worker still training refuses (the
# rm -rf would pull the code from under it).
busy="if pgrep -f 'ssinfogan_jax[.]main' >/dev/null; then echo \"\$(hostname): a training is"
busy+=" still running; stop it (pkill -f 'ssinfogan_jax[.]main') or wait\" >&2; exit 1; fi"
unpack="rm -rf ~/ssinfogan_jax && mkdir -p ~/ssinfogan_jax"
unpack+=" && tar -xzf ~/ssinfogan_jax-src.tar.gz -C ~/ssinfogan_jax && cd ~/ssinfogan_jax"
run git -C "$repo_root" archive --format=tar.gz --output="$archive" HEAD
run "${tpu[@]}" scp "$archive" "$name":ssinfogan_jax-src.tar.gz "${where[@]}" --worker=all
run "${tpu[@]}" ssh "$name" "${where[@]}" --worker=all \
  --command="$busy; $unpack && $(install_command tpu)"

# 3. The same training command on every worker at once, detached from the ssh session (setsid -f
# forks it into a session of its own, nohup, no fd left on the terminal), appending to a log per worker that ends with the exit code (75: preempted, run this
# script again; see README).
main="$VENV_DIR/bin/python -m ssinfogan_jax.main $(show --config="$config" --workdir="$workdir" \
  --mode="$mode" "${extra[@]}")"
# shellcheck disable=SC2088  # the ~ and $(hostname) are the worker's
log="~/ssinfogan_logs/worker-\$(hostname).log"
job="$main; echo \"[tpu_vm.sh] exit code \$? at \$(date)\""
train="mkdir -p ~/ssinfogan_logs && cd ~/ssinfogan_jax"
train+=" && setsid -f nohup bash -c $(show "$job") >>$log 2>&1 </dev/null"
train+=" && echo \"\$(hostname): training started, log $log\""
run "${tpu[@]}" ssh "$name" "${where[@]}" --worker=all --command="$train"

follow=("${tpu[@]}" ssh "$name" "${where[@]}" --worker=0
  --command='tail -n 100 -f ~/ssinfogan_logs/worker-*.log')
echo "# Training runs detached on every worker. Follow worker 0 (the one that logs progress):"
echo "#   $(show "${follow[@]}")"
echo "# After a preemption, run the same command again; it resumes from $workdir."
