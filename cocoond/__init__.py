"""cocoond: watches a Cocoon root and reports where its snapshot DB and the
disk disagree; also the Python form of cocoon's storage API."""

from cocoond.errors import ConfigError, DBError, LockTimeout, SnapshotNotFound
from cocoond.storage.paths import DEFAULT_ROOT_DIR, Paths, snapshot_exists
from cocoond.storage.records import SnapshotDB, SnapshotRecord
from cocoond.storage.units import human_size

__version__ = "0.5.0"

__all__ = [
    "DEFAULT_ROOT_DIR",
    "ConfigError",
    "DBError",
    "LockTimeout",
    "Paths",
    "SnapshotDB",
    "SnapshotNotFound",
    "SnapshotRecord",
    "__version__",
    "human_size",
    "snapshot_exists",
]
