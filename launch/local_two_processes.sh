#!/usr/bin/env bash
# Two training processes on this machine, joined through a coordinator on 127.0.0.1: the
# multi-host code path (jax.distributed, per-process data shards, process-0-only logging) on a
# laptop CPU. Each process gets --devices-per-process fake CPU devices.
#
#   launch/local_two_processes.sh --config=configs/mnist.py --workdir=/tmp/two \
#       [--port=12355] [--devices-per-process=1] [--dry-run] [-- --config.num_train_steps=20]
#
# Process 1's output goes to WORKDIR/process_1.log; process 0 prints to the terminal. The script
# fails if either process fails. --dry-run prints both commands instead of running them.
set -euo pipefail

config="configs/mnist.py"
workdir=""
mode="train"
port=12355
devices=1
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
    --port=*) port="${1#*=}" ;;
    --devices-per-process=*) devices="${1#*=}" ;;
    --dry-run) dry_run=1 ;;
    -h | --help) usage 0 ;;
    --) shift; extra=("$@"); break ;;
    *) echo "local_two_processes.sh: unknown argument: $1" >&2; usage 2 ;;
  esac
  shift
done

if [[ -z "$workdir" ]]; then
  echo "local_two_processes.sh: --workdir is required" >&2
  exit 2
fi

repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo_root"

# shellcheck source=launch/lib.sh
source "$repo_root/launch/lib.sh"

# With several fake devices per process, XLA:CPU needs a pool thread per device program for its
# collectives; the pool has one thread per core unless PJRT_NPROC says otherwise.
threads=()
if ((devices > 1)); then
  cores="$(nproc)"
  threads=(PJRT_NPROC="$((cores > 2 * devices ? cores : 2 * devices))")
fi

command_for() {
  cmd=(env JAX_PLATFORMS=cpu XLA_FLAGS="--xla_force_host_platform_device_count=$devices"
    "${threads[@]}"
    python3 -m ssinfogan_jax.main --config="$config" --workdir="$workdir" --mode="$mode"
    --coordinator_address="127.0.0.1:$port" --num_processes=2 --process_id="$1" "${extra[@]}")
}

if ((dry_run)); then
  for id in 0 1; do
    command_for "$id"
    show "${cmd[@]}"
  done
  exit 0
fi

mkdir -p "$workdir"
command_for 1
"${cmd[@]}" >"$workdir/process_1.log" 2>&1 &
other=$!
trap 'kill "$other" 2>/dev/null || true' EXIT
command_for 0
status=0
"${cmd[@]}" || status=$?
wait "$other" || {
  status=$?
  echo "local_two_processes.sh: process 1 failed; see $workdir/process_1.log" >&2
}
exit "$status"
