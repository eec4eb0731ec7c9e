"""Exceptions of the public API, kept in one place so callers can import them
without pulling in the storage code."""

from __future__ import annotations

import os


class CocoondError(Exception):
    """Base of every error cocoond raises on purpose (as opposed to bugs)."""


class DBError(CocoondError, ValueError):
    """A DB file exists but is not a DB. The message always names the file,
    because an operator has several DBs under one root and must know which
    one to look at."""

    def __init__(self, path: str | os.PathLike[str], reason: str, *, errno: int | None = None) -> None:
        self.path = os.fspath(path)
        self.reason = reason
        #: The OS error that kept the file from being read, if one did: a
        #: permission error is the reader's problem, not the DB's.
        self.errno = errno
        super().__init__(f"{self.path}: {reason}")


class LockTimeout(CocoondError, TimeoutError):
    """Cocoon's lock stayed busy past the timeout; nothing was written."""

    def __init__(self, path: str | os.PathLike[str], timeout: float) -> None:
        self.path = os.fspath(path)
        self.timeout = timeout
        super().__init__(
            f"{self.path}: lock busy for {timeout:g}s (is a cocoon command running?); nothing was written"
        )


class SnapshotNotFound(CocoondError, LookupError):
    """A name, ID or ID prefix that does not pick exactly one snapshot."""

    def __init__(self, ref: str, *, ambiguous: list[str] | None = None) -> None:
        self.ref = ref
        self.ambiguous = sorted(ambiguous or [])
        if self.ambiguous:
            shown = ", ".join(self.ambiguous[:5]) + (", ..." if len(self.ambiguous) > 5 else "")
            msg = (
                f"snapshot '{ref}' not found in cocoon DB: prefix is ambiguous, "
                f"{len(self.ambiguous)} IDs match ({shown})"
            )
        else:
            msg = f"snapshot '{ref}' not found in cocoon DB"
        super().__init__(msg)


class ConfigError(CocoondError):
    """A config file cocoond cannot use; the message names the file and key."""
