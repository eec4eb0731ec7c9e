"""Run a command without the power to bypass file permissions, for tests of
what cocoond does when it may not read something.

Tests run as root here, and root reads everything (CAP_DAC_OVERRIDE,
CAP_DAC_READ_SEARCH). Switching to another uid would need the interpreter
and the test's tmp_path to be reachable by that uid, and often neither is
(/root is 0700 when Python lives under pyenv; pytest's tmp dirs are 0700).
So the command keeps uid 0 but loses those capabilities (and CAP_FOWNER):
a small launcher drops them from its bounding set and then execs it, and
the kernel checks root's own files by their owner bits, exactly as it
checks any user's. Run as a non-root user, nothing needs dropping.

So a test denies access through the *owner* bits, which stop both this
capability-less root and a non-root owner: `chmod 0o000` (nothing),
`0o300` (no listing), `0o600` (listing, no search into it).

    require_unprivileged()                      # skips when it cannot be done
    subprocess.run(unprivileged([sys.executable, "-m", "cocoond", ...]))
"""

from __future__ import annotations

import functools
import os
import subprocess
import sys
import tempfile
from collections.abc import Sequence

import pytest

#: CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH, CAP_FOWNER (linux/capability.h).
DROPPED_CAPABILITIES = (1, 2, 3)
_PR_CAPBSET_DROP = 24

_LAUNCHER = f"""
import ctypes, os, sys
libc = ctypes.CDLL(None, use_errno=True)
for cap in {DROPPED_CAPABILITIES!r}:
    if libc.prctl({_PR_CAPBSET_DROP}, cap, 0, 0, 0) != 0:
        sys.exit(f"cannot drop capability {{cap}}: {{os.strerror(ctypes.get_errno())}}")
os.execv(sys.argv[1], sys.argv[1:])
"""


def unprivileged(argv: Sequence[str]) -> list[str]:
    """`argv` as a command that file modes apply to (see the module doc).
    argv[0] must be a path, as for os.execv."""
    if os.geteuid() != 0:
        return list(argv)
    return [sys.executable, "-c", _LAUNCHER, *argv]


@functools.cache
def why_not_unprivileged() -> str | None:
    """None when `unprivileged` works here, else why not: a directory with
    mode 0 must be unreadable to its command."""
    with tempfile.TemporaryDirectory() as tmp:
        closed = os.path.join(tmp, "closed")
        os.mkdir(closed, 0o000)
        try:
            done = subprocess.run(
                unprivileged([sys.executable, "-c", "import os, sys; os.listdir(sys.argv[1])", closed]),
                capture_output=True,
                text=True,
                timeout=60,
            )
        finally:
            os.chmod(closed, 0o700)
    if done.returncode == 0:
        return "a mode-0 directory stays readable: cannot drop the privilege to bypass file modes"
    if "PermissionError" not in done.stderr:
        return f"cannot run unprivileged: {done.stderr.strip()[-300:]}"
    return None


def require_unprivileged() -> None:
    """Skip the calling test when commands cannot be run unprivileged here."""
    reason = why_not_unprivileged()
    if reason is not None:
        pytest.skip(reason)
