# shellcheck shell=bash
# Shared by the launch scripts (sourced, not run): printing and dry-running commands.
# The sourcing script sets `dry_run` (0 or 1).

# Prints a command as one shell line that can be pasted back (single quotes where needed).
show() {
  local out=() arg
  for arg in "$@"; do
    if [[ "$arg" =~ ^[A-Za-z0-9_./:=@%+,-]+$ ]]; then
      out+=("$arg")
    else
      out+=("'${arg//\'/\'\\\'\'}'")
    fi
  done
  echo "${out[*]}"
}

# Prints the command under --dry-run; runs it otherwise.
run() {
  if ((${dry_run:-0})); then
    show "$@"
  else
    "$@"
  fi
}

# How a run ends (ssinfogan_jax.main's exit codes): 0 finished, 2 bad config or input, 3 a fault
# that needs a person (corrupt checkpoint, NaN, disk), 75 stopped for a preemption: run the same
# command again and it resumes from the work dir's latest checkpoint.
EXIT_PREEMPTED=75

# Where the launchers put their own Python (uv, then a venv that uv makes) on a remote machine.
# shellcheck disable=SC2088  # expanded by the remote shell, not here
UV_DIR='~/.ssinfogan_uv'
# shellcheck disable=SC2088
VENV_DIR='~/ssinfogan_venv'

# Prints the one shell command that, run from the root of a checkout, gives the machine a Python
# 3.11 environment whatever its own python3 is, and installs the checkout into it at the tested
# versions: uv from PyPI (`pip --target` works with any python3 that has pip, in or out of a venv,
# and past PEP 668's "externally managed" guard), a venv made by uv with Python 3.11 (uv
# downloads a build when the machine has none; tpu-ubuntu2204-base has 3.10), then
# `-c constraints.txt -e .[EXTRA]`. $1 is the package's accelerator extra (setup.py): tpu,
# cuda12, cuda13 or cpu. Safe to run again (the venv is kept, the install updated).
install_command() {
  local uv="$UV_DIR/bin/uv"
  echo "python3 -m pip install -q --disable-pip-version-check --upgrade --target $UV_DIR uv" \
    "&& $uv venv -q --allow-existing --python 3.11 $VENV_DIR" \
    "&& $uv pip install -q --python $VENV_DIR/bin/python -c constraints.txt -e '.[$1]'"
}

# Waits until process $1 has exited and returns its exit code: a trapped signal interrupts
# `wait` without the process having exited, so wait again until it has.
wait_for_exit() {
  local child="$1" status
  while true; do
    status=0
    wait "$child" || status=$?
    if ! kill -0 "$child" 2>/dev/null; then  # exited; not a signal interrupting `wait`
      status=0
      wait "$child" || status=$?
      return "$status"
    fi
  done
}

# Runs a command again while it exits with EXIT_PREEMPTED, at most $1 times in all; returns its
# last exit code. SIGTERM or SIGINT to this script is passed on to the command (which then saves
# a checkpoint and exits with 75) and stops the retries: whoever stopped us will resume us.
retry_preempted() {
  local max_attempts="$1" attempt=1 status child
  shift
  stop=0
  trap 'stop=1; kill -TERM "$child" 2>/dev/null || true' TERM INT
  while true; do
    "$@" &
    child=$!
    status=0
    wait_for_exit "$child" || status=$?
    if ((status != EXIT_PREEMPTED || stop)); then
      break
    fi
    if ((attempt >= max_attempts)); then
      echo "launch: preempted $attempt times, the most allowed (--max-attempts); run the same" \
        "command again to resume" >&2
      break
    fi
    attempt=$((attempt + 1))
    echo "launch: stopped for a preemption (exit $EXIT_PREEMPTED); resuming, attempt" \
      "$attempt of $max_attempts" >&2
  done
  trap - TERM INT
  return "$status"
}
