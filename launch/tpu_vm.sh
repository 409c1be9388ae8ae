#!/usr/bin/env bash
# Train on a Cloud TPU VM or pod slice: create it (or reuse it), copy this checkout to every
# worker, install the package, and run the same command on all workers (--worker=all). JAX finds
# the other workers by itself (ssinfogan_jax.main calls jax.distributed.initialize() on TPU).
#
#   launch/tpu_vm.sh --name=ssinfogan-v4-32 --zone=us-central2-b --accelerator-type=v4-32 \
#       --config=configs/celeba.py --workdir=gs://my-bucket/celeba-run1 [--dry-run] \
#       [-- --config.batch_size=256 ...]
#
# --dry-run prints every command instead of running it. Flags after `--` go to main.py.
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

usage() {
  sed -n '2,12p' "$0" | sed 's/^# \{0,1\}//'
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

# 1. Reuse the TPU VM if it exists, else create it.
create=("${tpu[@]}" create "$name" "${where[@]}" --accelerator-type="$accelerator_type"
  --version="$version")
if ((spot)); then
  create+=(--spot)
fi
if ((dry_run)); then
  run "${tpu[@]}" describe "$name" "${where[@]}"
  echo "# only if the describe above fails:"
  run "${create[@]}"
elif ! "${tpu[@]}" describe "$name" "${where[@]}" >/dev/null 2>&1; then
  run "${create[@]}"
fi

# 2. Ship this checkout (committed files) to every worker and install it there.
run git -C "$repo_root" archive --format=tar.gz --output="$archive" HEAD
run "${tpu[@]}" scp "$archive" "$name":ssinfogan_jax-src.tar.gz "${where[@]}" --worker=all
install="rm -rf ~/ssinfogan_jax && mkdir -p ~/ssinfogan_jax && tar -xzf ~/ssinfogan_jax-src.tar.gz -C ~/ssinfogan_jax && cd ~/ssinfogan_jax && python3 -m pip install -q -U \"jax[tpu]\" -e ."
run "${tpu[@]}" ssh "$name" "${where[@]}" --worker=all --command="$install"

# 3. The same training command on every worker, at the same time.
main=(python3 -m ssinfogan_jax.main --config="$config" --workdir="$workdir" --mode="$mode"
  "${extra[@]}")
printf -v main_line '%q ' "${main[@]}"
run "${tpu[@]}" ssh "$name" "${where[@]}" --worker=all \
  --command="cd ~/ssinfogan_jax && ${main_line% }"
