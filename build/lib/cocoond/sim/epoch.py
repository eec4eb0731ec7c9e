"""The epoch registry's first writer: a pulled snapshot's data files go
into snapshot/localfile/<ID>/, then snapshots.json is rewritten by the
registry itself, indented, through the fixed name snapshots.json.tmp and
without cocoon's lock (so a cocoon write at the same moment is lost, and a
crash leaves snapshots.json.tmp behind)."""

from __future__ import annotations

import json
import os
import random
from collections.abc import Sequence

from cocoond.sim import gojson, layout, schema
from cocoond.sim.content import write_specs
from cocoond.sim.datadir import snapshot_specs, stand_in_vm
from cocoond.sim.fsops import ensure_dirs, new_id
from cocoond.sim.layout import CH
from cocoond.sim.snapshots import snapshot_config
from cocoond.sim.stores import load_snapshots

EPOCH_TMP = "snapshots.json.tmp"


def epoch_import(
    root: str,
    name: str | None = None,
    blobs: Sequence[str] = (),
    *,
    hypervisor: str = CH.name,
    crash_at: str | None = None,
    rng: random.Random | None = None,
) -> str:
    """Pull one snapshot as the registry did; returns its ID. `crash_at="tmp"`:
    the process dies after writing snapshots.json.tmp."""
    hv = layout.hypervisor(hypervisor)
    sid = new_id(rng)
    name = name or "pulled-" + sid[:6].lower()
    data = layout.data_dir(root, sid)
    ensure_dirs(*layout.backend_dirs(root, snapshot=True), data)
    vm = stand_in_vm(root, hv, list(blobs), rng)
    write_specs(data, snapshot_specs(vm))
    cfg = snapshot_config(sid, vm, hv)
    cfg.update(name=name, description="pulled from the registry")
    record = schema.encode(
        schema.SNAPSHOT_RECORD.type, {**cfg, "created_at": gojson.go_time(), "data_dir": data}
    )
    idx = load_snapshots(root)
    idx["snapshots"][sid] = record
    idx["names"][name] = sid
    tmp = os.path.join(os.path.dirname(layout.snapshot_db(root)), EPOCH_TMP)
    with open(tmp, "w") as fh:
        json.dump(idx, fh, indent=2)
    if crash_at != "tmp":
        os.rename(tmp, layout.snapshot_db(root))
    return sid
