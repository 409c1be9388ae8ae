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
