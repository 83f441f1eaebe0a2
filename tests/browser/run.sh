#!/usr/bin/env bash
# Browser tests of the buyer's page: Debian's chromium driven by playwright-core, against the
# real `concert` binary (started once per scenario by the tests, in-memory store, short timings).
# Builds nothing: it tests the binary it is given. Needs `chromium` (apt) and `npm ci` done in
# tests/browser. Relative paths are taken from the current directory.
#
#   CONCERT_BIN      the binary to test                    ($CARGO_TARGET_DIR/debug/concert,
#                                                          else target/debug/concert)
#   CHROMIUM_BIN     the browser                           (/usr/bin/chromium)
#   SCREENSHOT_DIR   where screenshots go                  (target/browser-screenshots;
#                    docs/screenshots to refresh the committed ones)
#   PAGE_ASSETS_DIR  serve the page from this directory instead of the binary (working on it)
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"

abs() { case "$1" in /*) printf '%s\n' "$1" ;; *) printf '%s\n' "$PWD/$1" ;; esac; }

CONCERT_BIN="$(abs "${CONCERT_BIN:-${CARGO_TARGET_DIR:-target}/debug/concert}")"
CHROMIUM_BIN="${CHROMIUM_BIN:-/usr/bin/chromium}"
SCREENSHOT_DIR="$(abs "${SCREENSHOT_DIR:-$root/target/browser-screenshots}")"
export CONCERT_BIN CHROMIUM_BIN SCREENSHOT_DIR
if [[ -n "${PAGE_ASSETS_DIR:-}" ]]; then export PAGE_ASSETS_DIR="$(abs "$PAGE_ASSETS_DIR")"; fi

fail() { echo "tests/browser/run.sh: $*" >&2; exit 2; }
[[ -x "$CONCERT_BIN" ]] || fail "no executable at CONCERT_BIN=$CONCERT_BIN (build it: cargo build -p app --bin concert)"
[[ -x "$CHROMIUM_BIN" ]] || fail "no browser at CHROMIUM_BIN=$CHROMIUM_BIN (apt-get install -y chromium)"
command -v node >/dev/null || fail "node is missing (apt-get install -y nodejs npm)"
[[ -d "$here/node_modules/playwright-core" ]] || fail "playwright-core is missing (cd tests/browser && npm ci)"

cd "$here"
# One scenario at a time: each starts its own server and browser on a 2-core machine.
# Extra arguments go to node, e.g. --test-name-pattern=reload to run one scenario.
exec node --test --test-concurrency=1 --test-reporter=spec "$@" unit.test.mjs scenarios.test.mjs identity.test.mjs rooms.test.mjs console.test.mjs
