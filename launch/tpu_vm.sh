#!/usr/bin/env bash
# Train on a Cloud TPU VM or pod slice, and keep the run going through preemptions: create the
# VM (or reuse, start or recreate it), copy this checkout to every worker, give each worker its
# own Python 3.11 environment (uv, from PyPI) with the package at the tested versions, start the
# same command on all workers (detached, launch/tpu_worker.sh), then watch it.
#
#   launch/tpu_vm.sh --name=ssinfogan-v4-32 --zone=us-central2-b --accelerator-type=v4-32 \
#       --config=configs/celeba.py --workdir=gs://my-bucket/celeba-run1 [--spot] [--dry-run] \
#       [-- --config.batch_size=256 ...]
#
# Recovery: while the run exits with 75 (preempted) or the VM is PREEMPTED or gone, the script
# makes the VM again (a PREEMPTED one is deleted and created, a STOPPED one started) and starts
# the run again, which resumes from the work dir; at most --max-attempts runs (default 10). A
# capacity error on create is retried after 1, 2, 4, ... times --retry-wait seconds (default
# 60, at most 30 min), at most --max-attempts tries. It ends with the run's exit code (0
# finished, 2 bad input, 3 needs a person), or 75 at the limit (run the same command again).
# Worker 0's exit code and the VM's state are checked every --poll seconds (default 60);
# --detach starts the run and returns without watching.
#
# Shared locations, passed to every worker: tfds data in --data-dir (default
# gs://<workdir's bucket>/tensorflow_datasets), raw files from --raw-dir when given, the
# judge's cache in <data dir>/ssinfogan_classifiers, each worker's log in
# <workdir>/logs/worker_<i>.log (every attempt, appended). Only committed files are shipped:
# uncommitted changes are refused unless --ship-uncommitted (then the working tree is shipped).
# --mode (train|eval|sample) and --config (a file in this checkout, or a shipped name such as
# celeba or mnist:runlocal) are checked here before anything is created. --dry-run prints every
# command (the remote ones too) instead of running it. Flags after `--` go to main.py.
set -euo pipefail

name=""
zone=""
project=""
accelerator_type="v4-8"
version="tpu-ubuntu2204-base"
config="configs/mnist.py"
workdir=""
mode="train"
data_dir=""
raw_dir=""
spot=0
max_attempts=10
retry_wait=60
poll=60
detach=0
ship_uncommitted=0
dry_run=0
extra=()
invocation=("$0" "$@")

usage() {
  # The comment block at the top of this file, without the shebang.
  awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"
  exit "${1:-0}"
}

fail() {  # fail CODE MESSAGE...: one line on stderr, then exit with CODE.
  local code="$1"
  shift
  echo "tpu_vm.sh: $*" >&2
  exit "$code"
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
    --data-dir=*) data_dir="${1#*=}" ;;
    --raw-dir=*) raw_dir="${1#*=}" ;;
    --spot) spot=1 ;;
    --max-attempts=*) max_attempts="${1#*=}" ;;
    --retry-wait=*) retry_wait="${1#*=}" ;;
    --poll=*) poll="${1#*=}" ;;
    --detach) detach=1 ;;
    --ship-uncommitted) ship_uncommitted=1 ;;
    --dry-run) dry_run=1 ;;
    -h | --help) usage 0 ;;
    --) shift; extra=("$@"); break ;;
    *) echo "tpu_vm.sh: unknown argument: $1" >&2; usage 2 ;;
  esac
  shift
done

# Everything below is checked before any command runs, here or in the cloud.
for required in name zone workdir; do
  if [[ -z "${!required}" ]]; then
    fail 2 "--${required} is required"
  fi
done
workdir="${workdir%/}"
if [[ "$workdir" != gs://?* ]]; then
  fail 2 "--workdir must be a gs:// path that every worker can reach, not '$workdir'"
fi
case "$mode" in
  train | eval | sample) ;;
  *) fail 2 "--mode=$mode: not a mode; use train, eval or sample" ;;
esac
for number in max_attempts retry_wait poll; do
  if ! [[ "${!number}" =~ ^[0-9]+$ ]]; then
    fail 2 "--${number//_/-} must be a whole number, not '${!number}'"
  fi
done
if ((max_attempts < 1)); then
  fail 2 "--max-attempts must be at least 1"
fi
bucket="${workdir#gs://}"
bucket="${bucket%%/*}"
data_dir="${data_dir:-gs://$bucket/tensorflow_datasets}"
data_dir="${data_dir%/}"
for shared in data_dir raw_dir; do
  if [[ -n "${!shared}" && "${!shared}" != gs://?* ]]; then
    fail 2 "--${shared//_/-} must be a gs:// path that every worker can read, not '${!shared}'"
  fi
done
classifier_dir="$data_dir/ssinfogan_classifiers"
logs="$workdir/logs"

# shellcheck source=launch/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
if ! git -C "$repo_root" rev-parse --git-dir >/dev/null 2>&1; then
  fail 2 "$repo_root is not a git checkout; the launcher ships a checkout's files"
fi

# The config as the workers see it: a path relative to the checkout's root (their working
# directory; a path relative to here is taken too, if it is in the checkout), or
# `configs/<name>.py` for a shipped name; `:<argument>` kept.
config_path="${config%%:*}"
config_arg="${config#"$config_path"}"
if [[ "$config_path" != /* && -f "$repo_root/$config_path" ]]; then
  :
elif [[ -f "$config_path" ]]; then
  config_path="$(cd "$(dirname "$config_path")" && pwd)/$(basename "$config_path")"
  if [[ "$config_path" != "$repo_root"/* ]]; then
    fail 2 "--config=$config: $config_path is outside $repo_root, so the workers would not" \
      "have it; copy it into the checkout's configs/"
  fi
  config_path="${config_path#"$repo_root"/}"
elif [[ "$config_path" =~ ^[A-Za-z_][A-Za-z0-9_]*(\.py)?$ ]] &&
  [[ -f "$repo_root/configs/${config_path%.py}.py" ]]; then
  config_path="configs/${config_path%.py}.py"
else
  shipped="$(find "$repo_root/configs" -maxdepth 1 -name '[!_]*.py' -exec basename {} .py \; \
    2>/dev/null | sort | paste -sd, - | sed 's/,/, /g' || true)"
  fail 2 "--config=$config: no such file here or in $repo_root, and no shipped config of that" \
    "name (shipped: ${shipped:-none}); pass a file in this checkout or a name such as celeba"
fi
config="$config_path$config_arg"

# What is shipped: HEAD, unless the working tree is asked for. Uncommitted changes (and new
# files) would silently stay behind, so they stop the launch.
changes="$(git -C "$repo_root" status --porcelain --untracked-files=normal)"
if ((!ship_uncommitted)); then
  if [[ -n "$changes" ]]; then
    count="$(wc -l <<<"$changes" | tr -d ' ')"
    first="$(head -n 1 <<<"$changes" | sed 's/^ *//')"
    fail 2 "$count uncommitted change(s) in $repo_root (e.g. '$first') would not reach the" \
      "workers; commit them, or pass --ship-uncommitted to ship the working tree as it is"
  fi
  if ! git -C "$repo_root" cat-file -e "HEAD:$config_path" 2>/dev/null; then
    fail 2 "--config=$config: $config_path is not committed; commit it or pass --ship-uncommitted"
  fi
elif git -C "$repo_root" check-ignore -q "$config_path"; then
  fail 2 "--config=$config: $config_path is ignored by git, so it would not be shipped"
fi

tpu=(gcloud compute tpus tpu-vm)
where=(--zone="$zone")
if [[ -n "$project" ]]; then
  where+=(--project="$project")
fi
rerun="$(show "${invocation[@]}")"
describe=("${tpu[@]}" describe "$name" "${where[@]}" --format='value(state)')
create=("${tpu[@]}" create "$name" "${where[@]}" --accelerator-type="$accelerator_type"
  --version="$version")
if ((spot)); then
  create+=(--spot)
fi
delete=("${tpu[@]}" delete "$name" "${where[@]}" --quiet)
start=("${tpu[@]}" start "$name" "${where[@]}")
stop_run=("${tpu[@]}" ssh "$name" "${where[@]}" --worker=all
  --command="pkill -TERM -f 'ssinfogan_jax[.]main'")
follow=("${tpu[@]}" ssh "$name" "${where[@]}" --worker=all
  --command='tail -n 100 -f ~/ssinfogan_logs/worker_*.log')
read_logs=(gcloud storage cat "$logs/worker_*.log")

# A fresh folder per launch for the archive (and gcloud's messages): concurrent launches do
# not meet, and every relaunch ships what the first one did.
if ((dry_run)); then
  launch_id="YYYYmmdd-HHMMSS"
  tmp="${TMPDIR:-/tmp}"
  tmp="${tmp%/}/ssinfogan_jax.XXXXXX"
else
  launch_id="$(date -u +%Y%m%d-%H%M%S)"
  tmp="$(mktemp -d "${TMPDIR:-/tmp}/ssinfogan_jax.XXXXXX")"
  trap 'rm -rf "$tmp"' EXIT
fi
archive="$tmp/src.tar.gz"

# Each capacity retry waits twice as long as the one before, from --retry-wait, at most 30 min.
backoff() {
  local doublings=$(($1 > 12 ? 11 : $1 - 1))
  local wait=$((retry_wait << doublings))
  echo $((wait > 1800 ? 1800 : wait))
}
# What gcloud says when a zone has no TPUs of the kind left (not a quota, which needs a person).
CAPACITY='no more capacity|insufficient (reserved )?capacity|out of capacity|stockout'
CAPACITY+='|ZONE_RESOURCE_POOL_EXHAUSTED|currently unavailable in the'

# How many times (--poll apart) a VM that is changing state is checked before giving up.
SETTLE_CHECKS=60

say() {  # One line per transition, on stderr.
  echo "tpu_vm.sh: $*" >&2
}

last_line() {  # The last non-blank line of a file (gcloud's error), or nothing.
  grep -v '^ *$' "$1" | tail -n 1 || true
}

# Sets `state` to the VM's state (READY, PREEMPTED, ...), ABSENT, or UNKNOWN with the reason in
# `state_error` (gcloud could not say: network, credentials).
read_state() {
  local out rc=0
  out="$("${describe[@]}" 2>"$tmp/describe.err")" || rc=$?
  state_error=""
  if ((rc == 0)); then
    state="${out:-ABSENT}"
  elif grep -qiE 'NOT_FOUND|not found' "$tmp/describe.err"; then
    state="ABSENT"
  else
    state="UNKNOWN"
    state_error="$(last_line "$tmp/describe.err")"
  fi
}

# Runs `create`, its output shown as it comes; returns 0 (created), 1 (no capacity: try again
# later) or exits 3 (any other error).
create_vm() {
  local rc=0
  { "${create[@]}" 2>&1 1>&3 3>&- | tee "$tmp/create.err" >&2; } 3>&1 || rc=$?
  if ((rc == 0)); then
    return 0
  fi
  if grep -qiE "$CAPACITY" "$tmp/create.err" && ! grep -qi quota "$tmp/create.err"; then
    return 1
  fi
  fail 3 "could not create $name ($(last_line "$tmp/create.err")); fix that, then run" \
    "again: $rerun"
}

# Makes the VM READY: create it if absent (capacity errors retried with backoff), delete and
# create it if PREEMPTED, start it if STOPPED, wait while it changes state. Exits 75 when no
# capacity came within --max-attempts tries, 3 for a state that needs a person.
# Why `tpu-vm create` and not queued resources: one resource whose states this script reads
# and acts on, a VM made by hand is reused or started as it is, and every wait for capacity
# is a line here; a queued request is a second resource (WAITING_FOR_RESOURCES, SUSPENDED, ...)
# that must be deleted and made again after each preemption too, and waits without a word.
ensure_vm() {
  local tries=0 waits=0 last="" pause
  while true; do
    read_state
    case "$state" in
      READY)
        if [[ -z "$last" ]]; then
          say "$name is READY: reusing it"
        fi
        return 0
        ;;
      ABSENT | PREEMPTED | TERMINATED)
        if [[ "$state" != ABSENT ]]; then
          say "$name is $state: deleting it and creating it again (the run resumes from $workdir)"
          run "${delete[@]}" || fail 3 "could not delete $name; delete it by hand" \
            "(\`$(show "${delete[@]}")\`), then run again: $rerun"
        fi
        tries=$((tries + 1))
        say "creating $name ($accelerator_type$( ((spot)) && echo ", spot")), try $tries of" \
          "$max_attempts"
        if create_vm; then
          return 0
        fi
        if ((tries >= max_attempts)); then
          fail "$EXIT_PREEMPTED" "no capacity for $accelerator_type in $zone after $tries" \
            "tries (--max-attempts); run the same command again later, or try another --zone"
        fi
        pause="$(backoff "$tries")"
        say "no capacity for $accelerator_type in $zone; trying again in $pause s"
        sleep "$pause"
        ;;
      STOPPED)
        say "$name is STOPPED: starting it"
        run "${start[@]}" || fail 3 "could not start $name; run again: $rerun"
        return 0
        ;;
      CREATING | STARTING | RESTARTING | REPAIRING | REIMAGING | STOPPING | DELETING)
        waits=$((waits + 1))
        if ((waits > SETTLE_CHECKS)); then
          fail 3 "$name is still $state after $SETTLE_CHECKS checks; when \`$(show "${describe[@]}")\`" \
            "says READY or STOPPED (or it is gone), run again: $rerun"
        fi
        if [[ "$state" != "$last" ]]; then
          say "$name is $state: waiting for it to settle (checking every $poll s)"
        fi
        sleep "$poll"
        ;;
      UNKNOWN)
        fail 3 "cannot read the state of $name ($state_error); fix that (gcloud auth login?)," \
          "then run again: $rerun"
        ;;
      *)
        fail 3 "$name is $state; delete it with \`$(show "${delete[@]}")\`, then run again:" \
          "$rerun"
        ;;
    esac
    last="$state"
  done
}

# The checkout, for every worker: HEAD, or with --ship-uncommitted the working tree (every
# file git does not ignore, through a throwaway index: deletions and new files included).
if ((ship_uncommitted)); then
  make_archive=(env GIT_INDEX_FILE="$tmp/index" git -C "$repo_root" add --all)
  tree_of=(env GIT_INDEX_FILE="$tmp/index" git -C "$repo_root" write-tree)
else
  tree_of=(echo HEAD)
fi
archive_from() {
  run git -C "$repo_root" archive --format=tar.gz --output="$archive" "$1"
}

# Unpack and install on every worker; a worker still training refuses (the rm -rf would pull
# the code from under it), after a minute's grace: on a relaunch after an exit 75, the other
# workers may still be finishing their save when worker 0 has reported.
busy="for _ in \$(seq 30); do pgrep -f 'ssinfogan_jax[.]main' >/dev/null || break; sleep 2; done"
busy+="; if pgrep -f 'ssinfogan_jax[.]main' >/dev/null; then echo \"\$(hostname): a training is"
busy+=" still running; stop it (pkill -f 'ssinfogan_jax[.]main') or wait\" >&2; exit 1; fi"
unpack="rm -rf ~/ssinfogan_jax && mkdir -p ~/ssinfogan_jax"
unpack+=" && tar -xzf ~/ssinfogan_jax-src.tar.gz -C ~/ssinfogan_jax && cd ~/ssinfogan_jax"
setup="$busy; $unpack && $(install_command tpu)"

# The run on every worker: main.py with the shared locations (before the user's flags, which
# win), detached from the ssh session (setsid -f, nohup, no fd left on the terminal).
main_flags=(--config="$config" --workdir="$workdir" --mode="$mode"
  --config.data.data_dir="$data_dir" --config.eval.judge_dir="$classifier_dir")
if [[ -n "$raw_dir" ]]; then
  main_flags+=(--config.data.raw_dir="$raw_dir")
fi
main_flags+=("${extra[@]}")
train_command() {  # train_command TAG
  echo "cd ~/ssinfogan_jax && setsid -f nohup bash launch/tpu_worker.sh" \
    "$(show --logs="$logs" --tag="$1") -- $VENV_DIR/bin/python -m ssinfogan_jax.main" \
    "$(show "${main_flags[@]}") >/dev/null 2>&1 </dev/null" \
    "&& echo \"\$(hostname): training started, log $logs/worker_<i>.log\""
}
ship=("${tpu[@]}" scp "$archive" "$name":ssinfogan_jax-src.tar.gz "${where[@]}" --worker=all)
install=("${tpu[@]}" ssh "$name" "${where[@]}" --worker=all --command="$setup")
start_run_of() {  # start_run_of TAG: the ssh that starts the run on every worker.
  start_run=("${tpu[@]}" ssh "$name" "${where[@]}" --worker=all --command="$(train_command "$1")")
}
exit_code_of() {  # exit_code_of TAG: what worker 0 wrote when the run ended.
  exit_code=(gcloud storage cat "$logs/exit_codes/$1/worker_0")
}

if ((dry_run)); then
  shipped_as="no uncommitted changes"
  if ((ship_uncommitted)); then
    shipped_as="the working tree shipped as it is"
  fi
  echo "# Checked: --mode=$mode, --config=$config (in this checkout), $shipped_as"
  echo "# Every worker gets: --config.data.data_dir=$data_dir" \
    "--config.eval.judge_dir=$classifier_dir${raw_dir:+ --config.data.raw_dir=$raw_dir};" \
    "its log goes to $logs/worker_<i>.log"
  run "${describe[@]}"
  echo "# if it does not exist:"
  run "${create[@]}"
  echo "# no capacity: the create again after $(backoff 1) s, then twice as long each time" \
    "(at most 30 min), at most $max_attempts tries in all"
  echo "# if it is PREEMPTED: delete it, then the create above:"
  run "${delete[@]}"
  echo "# if it is STOPPED:"
  run "${start[@]}"
  echo "# if it is READY: reuse it; while it changes state: wait; in any other state: stop"
  if ((ship_uncommitted)); then
    run "${make_archive[@]}"
    run "${tree_of[@]}"
    archive_from '<the tree above>'
  else
    archive_from HEAD
  fi
  run "${ship[@]}"
  run "${install[@]}"
  start_run_of "$launch_id-1"
  run "${start_run[@]}"
  if ((detach)); then
    echo "# --detach: no watching, no relaunch"
  else
    echo "# Then every $poll s, until worker 0 has written its exit code:"
    exit_code_of "$launch_id-1"
    run "${exit_code[@]}"
    run "${describe[@]}"
    echo "# 0: done. 75, or the VM PREEMPTED or gone: all of the above again (run 2, ...)," \
      "at most $max_attempts runs. Any other code: stop with it."
  fi
  echo "# Every worker's log (all attempts), copied every 30 s:"
  echo "#   $(show "${read_logs[@]}")"
  echo "# or live:"
  echo "#   $(show "${follow[@]}")"
  exit 0
fi

if ((ship_uncommitted)); then
  run "${make_archive[@]}"
fi
archive_from "$("${tree_of[@]}")"

trap 'say "stopped (Ctrl-C); what was started on $name goes on (logs:" \
  "$(show "${read_logs[@]}")); stop a run with \`$(show "${stop_run[@]}")\`"; exit 130' INT

attempt=1
while true; do
  tag="$launch_id-$attempt"
  ensure_vm
  # A failure from here on is checked against the VM's state: a preemption mid-way is retried.
  interrupted=""
  start_run_of "$tag"
  if ! run "${ship[@]}" || ! run "${install[@]}" || ! run "${start_run[@]}"; then
    read_state
    if [[ "$state" == READY || "$state" == UNKNOWN ]]; then
      fail 3 "could not ship, install or start the run on $name (see above); fix that, then" \
        "run again: $rerun"
    fi
    interrupted="$name became $state while starting the run"
  fi
  if ((detach)) && [[ -z "$interrupted" ]]; then
    say "started the run (tag $tag); not watching (--detach). Logs: $(show "${read_logs[@]}")"
    exit 0
  fi

  # Watch: worker 0's exit code, else the VM's state.
  exit_code_of "$tag"
  code=""
  warned=0
  while [[ -z "$interrupted" ]]; do
    sleep "$poll"
    rc=0
    out="$("${exit_code[@]}" 2>"$tmp/cat.err")" || rc=$?
    if ((rc == 0)) && [[ "$out" =~ ^[0-9]+$ ]]; then
      code="$out"
      break
    fi
    if ((rc != 0)) && ! grep -qiE 'matched no objects|not found|No URLs matched|404' \
      "$tmp/cat.err" && ((!warned)); then
      say "cannot read $logs/exit_codes/$tag/worker_0 ($(last_line "$tmp/cat.err")); still" \
        "watching"
      warned=1
    fi
    read_state
    case "$state" in
      READY | UNKNOWN) ;;
      *) interrupted="$name is $state" ;;
    esac
  done

  if [[ -n "$code" ]] && ((code != EXIT_PREEMPTED)); then
    if ((code == 0)); then
      say "the run finished (run $attempt): exit code 0; $name is still up: delete it with" \
        "\`$(show "${delete[@]}")\` when done"
    else
      say "the run ended with exit code $code (run $attempt); not relaunching. Logs:" \
        "$(show "${read_logs[@]}")"
    fi
    exit "$code"
  fi
  reason="${interrupted:-the run stopped for a preemption (exit code $EXIT_PREEMPTED)}"
  if ((attempt >= max_attempts)); then
    fail "$EXIT_PREEMPTED" "$reason; that was run $attempt of $max_attempts (--max-attempts)," \
      "so no more; run the same command again to resume from $workdir"
  fi
  attempt=$((attempt + 1))
  say "$reason; relaunching, run $attempt of $max_attempts (it resumes from $workdir)"
done
