#!/usr/bin/env bash
# Merges the repros of several shards into one deduplicated list of findings, as Markdown (the
# nightly appends it to the run summary). Two repros are the same finding when their invariant
# (the `expect` line) and their shrunk scenario (every line that is not a comment or blank) are
# the same; the first file in path order stands for the others.
#
#   .ci/merge-findings.sh DIR...      e.g. .ci/merge-findings.sh repros-shard-*
#
# Exit 0 always when the directories can be read (no repro is "no findings"), 2 on bad usage.
set -euo pipefail
if (( $# == 0 )); then
  echo "usage: $0 DIR..." >&2
  exit 2
fi
declare -A seen=() count=() invariant=()
order=()
while IFS= read -r -d '' file; do
  body=$(grep -v -e '^[[:space:]]*#' -e '^[[:space:]]*$' -- "$file" || true)
  key=$(printf '%s' "$body" | sha256sum | cut -c1-16)
  inv=$(printf '%s\n' "$body" | sed -n 's/^expect \([A-Za-z0-9_]*\) at .*/\1/p' | tail -n1)
  if [[ -z "${seen[$key]:-}" ]]; then
    seen[$key]=$file
    count[$key]=0
    invariant[$key]=${inv:-none}
    order+=("$key")
  fi
  count[$key]=$(( ${count[$key]} + 1 ))
done < <(find "$@" -type f -name '*.repro' ! -name '.*' -print0 | LC_ALL=C sort -z)

echo "## Findings"
echo
if (( ${#order[@]} == 0 )); then
  echo "No repro was written: nothing found."
  exit 0
fi
echo "${#order[@]} distinct finding(s):"
echo
echo "| invariant | shards' copies | repro |"
echo "|---|---|---|"
for key in "${order[@]}"; do
  echo "| ${invariant[$key]} | ${count[$key]} | \`${seen[$key]}\` |"
done
