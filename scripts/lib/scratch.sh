# Sourced by the scripts that need a scratch engine directory (main.sh, server_bench.sh).
# claim_scratch DIR [OWNED]: makes DIR an empty directory carrying the marker `.strata-scratch`,
# the same rule as the `strata` benchmark tools (tools/scratch_dir.h): DIR is cleared only when
# it does not exist, is empty, carries the marker, or OWNED=1 (the script's own default under
# build/); a directory whose LOCK is held by a running engine or strata-server is never touched.
claim_scratch() {
  local dir="$1" owned="${2:-0}"
  if [[ -e "$dir" && ! -d "$dir" ]]; then
    echo "$dir: exists and is not a directory; refusing to touch it" >&2
    return 2
  fi
  if [[ -f "$dir/LOCK" ]] && ! flock -n "$dir/LOCK" true; then
    echo "$dir: its LOCK is held (a running engine or strata-server); refusing to touch it" >&2
    return 2
  fi
  if [[ -d "$dir" && ! -f "$dir/.strata-scratch" && "$owned" != 1 ]] &&
     [[ -n "$(ls -A "$dir")" ]]; then
    echo "$dir: is not empty and was not created by Strata's scripts (no .strata-scratch marker);" \
         "refusing to clear it — give a new or empty directory" >&2
    return 2
  fi
  rm -rf "$dir"
  mkdir -p "$dir"
  echo "scratch directory created by $(basename "$0"); Strata's scripts may clear it" >"$dir/.strata-scratch"
}
