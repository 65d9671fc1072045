#!/usr/bin/env bash
# Accept received snapshots: rename Snapshots/**/<name>.received.txt to <name>.verified.txt.
#
#   ./accept-snapshots.sh              accept every received snapshot
#   ./accept-snapshots.sh NAME         accept only the snapshot NAME (as a failing test prints it,
#                                      e.g. invariants); NAME may be a bash glob, e.g. 'ptdump/*'
#
# Received files are written by Properties/Infra/Snapshot.cs when a test's output differs from
# the verified file. Review the diff first: accepting is approving. Without bash, run the
# failing tests with PS_ACCEPT_SNAPSHOTS=1 (dotnet test), which writes them as verified.
set -euo pipefail

if [[ "${1:-}" == "-h" || "${1:-}" == "--help" ]]; then
  sed -n '2,10p' "$0" | sed 's/^# \{0,1\}//'
  exit 0
fi
if (( $# > 1 )); then
  echo "usage: $0 [NAME-or-glob]" >&2
  exit 2
fi

filter="${1:-}"
root="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cd "$root"

accepted=0
if [[ -d Snapshots ]]; then
  while IFS= read -r -d '' received; do
    name="${received#Snapshots/}"
    name="${name%.received.txt}"
    # Unquoted right-hand side: the filter is matched as a glob pattern.
    if [[ -n "$filter" && "$name" != $filter ]]; then
      continue
    fi
    verified="${received%.received.txt}.verified.txt"
    mv -f -- "$received" "$verified"
    echo "accepted $verified"
    accepted=$((accepted + 1))
  done < <(find Snapshots -type f -name '*.received.txt' -print0 | LC_ALL=C sort -z)
fi

if (( accepted == 0 )); then
  if [[ -n "$filter" ]]; then
    echo "no received snapshot matches '$filter'" >&2
    exit 1
  fi
  echo "nothing to accept"
  exit 0
fi
echo "$accepted snapshot(s) accepted"
