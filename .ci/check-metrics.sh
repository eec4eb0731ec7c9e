#!/usr/bin/env bash
# `promtool check metrics` on the textfile a real `cocoond run` writes.
#
#   .ci/check-metrics.sh [PATH-TO-COCOOND]     (default: .venv/bin/cocoond)
#
# Runs the daemon on an empty root with [metrics] textfile set, waits (at most
# 30 s) for the file, stops the daemon and lints the file. The tests check the
# file's content with findings open (tests/test_daemon_metrics.py).
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BIN="${1:-$REPO/.venv/bin/cocoond}"
say() { printf 'check-metrics: %s\n' "$*" >&2; }

tmp="$(mktemp -d)"
pid=""
cleanup() {
    [[ -z $pid ]] || kill "$pid" 2>/dev/null || true
    rm -rf -- "$tmp"
}
trap cleanup EXIT
mkdir "$tmp/root"
printf '[metrics]\ntextfile = "%s/cocoond.prom"\n' "$tmp" >"$tmp/config.toml"

"$BIN" run --config "$tmp/config.toml" --root "$tmp/root" >"$tmp/log" 2>&1 &
pid=$!
for _ in $(seq 300); do
    [[ -s $tmp/cocoond.prom ]] && break
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
done
kill "$pid" 2>/dev/null || true
wait "$pid" || true
pid=""
if [[ ! -s $tmp/cocoond.prom ]]; then
    say "FAIL: cocoond run wrote no $tmp/cocoond.prom; its log:"
    cat "$tmp/log" >&2
    exit 1
fi
promtool check metrics <"$tmp/cocoond.prom"
say "OK: $(grep -c '^cocoond_' "$tmp/cocoond.prom") samples pass promtool check metrics"
