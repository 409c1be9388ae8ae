#!/usr/bin/env bash
# Train on the GPUs of one host, or of several hosts (one process per host).
#
# One host, every visible GPU (jax.pmap spreads the global batch over them):
#   launch/multi_gpu.sh --config=configs/celeba.py --workdir=/tmp/celeba [--gpus=0,1,2,3]
# Several hosts: run this on every host with the same coordinator (host 0's address) and its
# own --process-id:
#   launch/multi_gpu.sh --config=configs/celeba.py --workdir=/shared/celeba \
#       --coordinator=10.0.0.1:12345 --num-processes=2 --process-id=0
#
# python3 must be 3.11 or newer (the script stops with exit code 2 otherwise). --install first
# installs the package with CUDA 12 jaxlib at the tested versions (constraints.txt) into python3's
# environment. A run stopped by a preemption (exit code 75) is started again, and resumes from
# the work dir, at most --max-attempts times in all (default 10); a SIGTERM or Ctrl-C to this
# script is passed on to the run and ends the retries. --dry-run prints the commands instead of
# running them. Flags after `--` go to main.py.
set -euo pipefail

config="configs/mnist.py"
workdir=""
mode="train"
gpus=""
coordinator=""
num_processes=""
process_id=""
install=0
max_attempts=10
dry_run=0
extra=()

usage() {
  # The comment block at the top of this file, without the shebang.
  awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"
  exit "${1:-0}"
}

while (($#)); do
  case "$1" in
    --config=*) config="${1#*=}" ;;
    --workdir=*) workdir="${1#*=}" ;;
    --mode=*) mode="${1#*=}" ;;
    --gpus=*) gpus="${1#*=}" ;;
    --coordinator=*) coordinator="${1#*=}" ;;
    --num-processes=*) num_processes="${1#*=}" ;;
    --process-id=*) process_id="${1#*=}" ;;
    --install) install=1 ;;
    --max-attempts=*) max_attempts="${1#*=}" ;;
    --dry-run) dry_run=1 ;;
    -h | --help) usage 0 ;;
    --) shift; extra=("$@"); break ;;
    *) echo "multi_gpu.sh: unknown argument: $1" >&2; usage 2 ;;
  esac
  shift
done

if [[ -z "$workdir" ]]; then
  echo "multi_gpu.sh: --workdir is required" >&2
  exit 2
fi
multi_host=0
if [[ -n "$coordinator$num_processes$process_id" ]]; then
  if [[ -z "$coordinator" || -z "$num_processes" || -z "$process_id" ]]; then
    echo "multi_gpu.sh: give all of --coordinator, --num-processes and --process-id" >&2
    exit 2
  fi
  multi_host=1
fi

if ! [[ "$max_attempts" =~ ^[1-9][0-9]*$ ]]; then
  echo "multi_gpu.sh: --max-attempts must be a positive integer, not '$max_attempts'" >&2
  exit 2
fi
if ! python3 -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
  echo "multi_gpu.sh: ssinfogan_jax needs Python >= 3.11; python3 is" \
    "$(python3 -V 2>&1 | head -n 1) ($(command -v python3 || echo 'not on PATH'));" \
    "activate a Python 3.11 environment (e.g. uv venv --python 3.11) and run again" >&2
  exit 2
fi

# shellcheck source=launch/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
if ((install)); then
  run python3 -m pip install -c "$repo_root/constraints.txt" -e "${repo_root}[cuda12]"
fi

cmd=()
if [[ -n "$gpus" ]]; then
  cmd+=(env CUDA_VISIBLE_DEVICES="$gpus")
fi
cmd+=(python3 -m ssinfogan_jax.main --config="$config" --workdir="$workdir" --mode="$mode")
if ((multi_host)); then
  cmd+=(--coordinator_address="$coordinator" --num_processes="$num_processes"
    --process_id="$process_id")
fi
cmd+=("${extra[@]}")
cd "$repo_root"
if ((dry_run)); then
  show "${cmd[@]}"
  echo "# again while it exits with $EXIT_PREEMPTED (preempted), at most $max_attempts attempts"
  exit 0
fi
status=0
retry_preempted "$max_attempts" "${cmd[@]}" || status=$?
exit "$status"
