"""What the reconciler reports. Kinds, severities and field names are part of
the outside contract (alert rules match on them), so they live here as
constants rather than as strings scattered through the code."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final, Literal

from cocoond.output import bounded, escape_controls

Severity = Literal["info", "warning", "error"]
SEVERITIES: Final[tuple[Severity, ...]] = ("info", "warning", "error")
RANK: Final[dict[str, int]] = {"info": 0, "warning": 1, "error": 2}

DB_UNREADABLE: Final = "db_unreadable"
PENDING: Final = "pending"
STALE_PENDING: Final = "stale_pending"
ORPHAN_DATA_DIR: Final = "orphan_data_dir"
MISSING_DATA_DIR: Final = "missing_data_dir"
INCOMPLETE_DATA_DIR: Final = "incomplete_data_dir"
DATA_DIR_MISMATCH: Final = "data_dir_mismatch"
MISSING_BLOB: Final = "missing_blob"
UNREFERENCED_BLOB: Final = "unreferenced_blob"
DANGLING_NAME: Final = "dangling_name"
NAME_MISMATCH: Final = "name_mismatch"
STALE_TEMP: Final = "stale_temp"
DIR_UNREADABLE: Final = "dir_unreadable"
ROOT_UNSEEN: Final = "root_unseen"
GC_BLOCKED: Final = "gc_blocked"
STALE_CREATING_VM: Final = "stale_creating_vm"
ORPHAN_VM_DIR: Final = "orphan_vm_dir"
CLONE_BLOCKED: Final = "clone_blocked"
RESTORE_BLOCKED: Final = "restore_blocked"
IMAGE_UNUSABLE: Final = "image_unusable"
VM_SNAPSHOT_GONE: Final = "vm_snapshot_gone"
VM_BASE_MISSING: Final = "vm_base_missing"
GC_DESTROYS: Final = "gc_destroys"

SEVERITY_OF: Final[dict[str, Severity]] = {
    DB_UNREADABLE: "error",
    PENDING: "info",
    STALE_PENDING: "warning",
    ORPHAN_DATA_DIR: "warning",
    MISSING_DATA_DIR: "error",
    INCOMPLETE_DATA_DIR: "error",
    DATA_DIR_MISMATCH: "warning",
    MISSING_BLOB: "error",
    UNREFERENCED_BLOB: "info",
    DANGLING_NAME: "error",
    NAME_MISMATCH: "warning",
    STALE_TEMP: "info",
    DIR_UNREADABLE: "warning",
    ROOT_UNSEEN: "error",
    GC_BLOCKED: "warning",
    STALE_CREATING_VM: "warning",
    ORPHAN_VM_DIR: "warning",
    CLONE_BLOCKED: "warning",
    RESTORE_BLOCKED: "error",
    IMAGE_UNUSABLE: "error",
    VM_SNAPSHOT_GONE: "info",
    VM_BASE_MISSING: "error",
    GC_DESTROYS: "error",
}
KINDS: Final[tuple[str, ...]] = tuple(SEVERITY_OF)

Key = tuple[str, str]
#: Longest message written; other string fields get output.FIELD_LIMIT.
MESSAGE_LIMIT: Final = 4096
_OPTIONAL = ("snapshot_id", "name", "path", "bytes", "age_seconds")

Operation = Literal["restore", "clone", "vm_create"]
#: The cocoon operations a finding can say will fail on its subject:
#: `cocoon vm restore` / `cocoon vm clone` of a snapshot, `cocoon vm run`
#: (create) of an image. One vocabulary for findings, `show` and metrics.
RESTORE: Final[Operation] = "restore"
CLONE: Final[Operation] = "clone"
VM_CREATE: Final[Operation] = "vm_create"
OPERATIONS: Final[tuple[Operation, ...]] = (RESTORE, CLONE, VM_CREATE)


@dataclass(frozen=True, slots=True)
class Finding:
    """One inconsistency. Identity is (kind, subject): the daemon opens and
    resolves findings by that key, so two findings never share it."""

    kind: str
    subject: str
    message: str
    snapshot_id: str | None = None
    name: str | None = None
    path: str | None = None
    bytes: int | None = None
    age_seconds: float | None = None
    #: `bytes` is a lower bound: the size walk was cut (see cocoond/sizes.py).
    bytes_partial: bool = False
    #: The operations on `subject` that fail while this finding holds (what
    #: cocoon's source does on this tree): `show` answers "would restore /
    #: clone / create work?" from these, never from a second reading.
    fails: tuple[Operation, ...] = ()

    def __post_init__(self) -> None:
        # The contract promises one line a person can act on; the message
        # quotes file names and DB strings, which may hold anything.
        if not self.message.isprintable():
            object.__setattr__(self, "message", escape_controls(self.message))

    @property
    def severity(self) -> Severity:
        return SEVERITY_OF[self.kind]

    @property
    def key(self) -> Key:
        return (self.kind, self.subject)

    def to_dict(self) -> dict[str, Any]:
        """The contract's field set; fields that do not apply are left out
        rather than written as null, so alert rules can test presence.
        Strings from the DB can be any length: each is cut (and says so) so
        a log line stays far below journald's 48 KiB line limit."""
        out: dict[str, Any] = {"kind": self.kind, "severity": self.severity, "subject": bounded(self.subject)}
        for field in _OPTIONAL:
            value = getattr(self, field)
            if value is not None:
                if field == "age_seconds":
                    value = round(value, 3)
                elif isinstance(value, str):
                    value = bounded(value)
                out[field] = value
        if self.bytes_partial:
            out["bytes_partial"] = True
        out["message"] = bounded(self.message, MESSAGE_LIMIT)
        return out


def sort_key(finding: Finding) -> tuple[int, str, str]:
    """Worst first, then by kind and subject, so output is stable."""
    return (-RANK[finding.severity], finding.kind, finding.subject)


def worst(findings: list[Finding]) -> int:
    """Rank of the worst severity present, -1 when there is none."""
    return max((RANK[f.severity] for f in findings), default=-1)
