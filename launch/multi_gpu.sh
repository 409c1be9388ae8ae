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
# --install first installs the package with CUDA jaxlib; --dry-run prints the commands instead
# of running them. Flags after `--` go to main.py.
set -euo pipefail

config="configs/mnist.py"
workdir=""
mode="train"
gpus=""
coordinator=""
num_processes=""
process_id=""
install=0
dry_run=0
extra=()

usage() {
  sed -n '2,14p' "$0" | sed 's/^# \{0,1\}//'
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

# shellcheck source=launch/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
if ((install)); then
  run python3 -m pip install -U 'jax[cuda12]' -e "$repo_root"
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
run "${cmd[@]}"
