#!/usr/bin/env bash
# Installs the npm clients of the MCP interop tests (tests/js) from the committed lockfile.
# `npm ci` only when node_modules does not match package-lock.json (a stamp holds its hash),
# so repeated `./run tests` cost nothing. Node itself comes from npm too (node-linux-*
# packages, pinned in the lockfile): the Inspector needs Node >= 22.19, newer than Debian's.
set -euo pipefail
cd "$(dirname "$0")"
stamp=node_modules/.context8-lock.sha256
want=$(sha256sum package-lock.json | cut -d' ' -f1)
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ] && [ -x node_modules/.bin/node ]; then
  exit 0
fi
command -v npm >/dev/null 2>&1 || { echo "npm not found: apt-get install nodejs npm (./run tests does)" >&2; exit 1; }
echo "installing the npm MCP clients (tests/js, npm ci)…" >&2
npm ci --no-audit --no-fund --loglevel=error >&2
echo "$want" >"$stamp"
