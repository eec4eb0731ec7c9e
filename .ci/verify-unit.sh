#!/usr/bin/env bash
# Verify systemd/cocoond.service with `systemd-analyze verify`.
#
#   .ci/verify-unit.sh [PATH-TO-COCOOND]     (default: .venv/bin/cocoond)
#
# verify refuses an Exec*= binary that does not exist, and the unit names
# the installed one (/opt/cocoond/bin/cocoond), so a temporary copy of the unit
# with ExecStart= and ExecReload= pointed at PATH-TO-COCOOND is verified instead. verify only
# warns (exit status 0) about unknown keys or bad values, so any output naming
# the unit counts as a failure here. Installs systemd (Debian, as root) when
# systemd-analyze is missing; without apt-get it skips, saying so.
#
# Exit status: 0 clean (or skipped), 1 verify found a problem, 2 bad usage.
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
UNIT="$REPO/systemd/cocoond.service"
INSTALLED_BIN="/opt/cocoond/bin/cocoond"
BIN="${1:-$REPO/.venv/bin/cocoond}"

say() { printf 'verify-unit: %s\n' "$*" >&2; }

# --- tools ---------------------------------------------------------------------
missing=()
command -v systemd-analyze >/dev/null 2>&1 || missing+=(systemd)
# ExecReload= runs /bin/kill; verify checks that it exists too.
[[ -x /bin/kill ]] || missing+=(procps)
if ((${#missing[@]})); then
    if ! command -v apt-get >/dev/null 2>&1; then
        say "SKIP: ${missing[*]} missing and apt-get unavailable; the unit was NOT verified"
        exit 0
    fi
    if [[ $(id -u) -ne 0 ]]; then
        say "SKIP: ${missing[*]} missing and not root, cannot apt-get install; the unit was NOT verified"
        exit 0
    fi
    say "installing ${missing[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# --- the copy to verify --------------------------------------------------------
if [[ ! -f $BIN || ! -x $BIN ]]; then
    say "not an executable file: $BIN (pass the venv's cocoond, e.g. .venv/bin/cocoond)"
    exit 2
fi
BIN="$(cd "$(dirname "$BIN")" && pwd)/$(basename "$BIN")"
case $BIN in
*[\"\\]*)
    say "cannot put a path with a quote or backslash in ExecStart=: $BIN"
    exit 2
    ;;
esac
# Quoted for systemd's command-line syntax; '%' would start a specifier.
exec_path="\"${BIN//%/%%}\""

tmp="$(mktemp -d)"
trap 'rm -rf -- "$tmp"' EXIT
copy="$tmp/cocoond.service"

replaced=0
while IFS= read -r line || [[ -n $line ]]; do
    if [[ $line =~ ^(Exec[A-Za-z]+=)"$INSTALLED_BIN "(.*)$ ]]; then
        [[ ${BASH_REMATCH[1]} == ExecStart= ]] && replaced=$((replaced + 1))
        line="${BASH_REMATCH[1]}$exec_path ${BASH_REMATCH[2]}"
    fi
    printf '%s\n' "$line"
done <"$UNIT" >"$copy"
if [[ $replaced -ne 1 ]]; then
    say "FAIL: expected exactly one 'ExecStart=$INSTALLED_BIN ...' line in $UNIT, found $replaced"
    exit 1
fi

# --- verify ----------------------------------------------------------------------
opts=(--man=no)
# Newer systemd (>= 250): fail only on this unit, not on the host's other units.
if systemd-analyze --help 2>&1 | grep -q -- '--recursive-errors'; then
    opts+=(--recursive-errors=no)
fi

status=0
out="$(cd "$tmp" && SYSTEMD_COLORS=0 systemd-analyze verify "${opts[@]}" "$copy" 2>&1)" || status=$?
[[ -z $out ]] || printf '%s\n' "$out" >&2

if [[ $status -ne 0 ]]; then
    say "FAIL: systemd-analyze verify exited $status"
    exit 1
fi
if grep -qF -e "cocoond.service" -e "$tmp" <<<"$out"; then
    say "FAIL: systemd-analyze verify warned about the unit (above)"
    exit 1
fi

# --- for information only ----------------------------------------------------------
if systemd-analyze --help 2>&1 | grep -q -- '--offline'; then
    say "security review (informational):"
    SYSTEMD_COLORS=0 systemd-analyze security --offline=yes --no-pager "$copy" 2>&1 \
        | grep -E '^✗|Overall exposure' >&2 || true
fi

say "OK: $(basename "$UNIT") verified ($(systemd-analyze --version | head -n1))"
