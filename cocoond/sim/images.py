"""Image backends: cloud images (images/cloudimg/) and OCI images
(images/oci/), as their pull, import and rm write the tree.

cloudimg pull (pull.go:58-114, commit.go): download to temp/pull-<n>.img;
a qcow2 v3 without a backing file is renamed to temp/.tmp-<hex>.qcow2
(fast path), anything else is converted there by qemu-img under the
convert lock temp/.tmp-<hex>.qcow2.lock (kept forever); then, under
images.lock, the temp blob is renamed to blobs/<hex>.qcow2, chmod 0444,
and the index entry written. The download is removed last.

OCI pull (pull.go:29-70, process.go, commit.go): the whole pull runs under
images.lock: a work dir temp/pull-<n>/ with layer-<i>/<hex>.erofs and the
boot files, then each erofs renamed to blobs/<hex>.erofs and the kernel and
initrd to boot/<hex>/, the work dir removed, and the index written.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import random
import shutil
from typing import Any

from cocoond.sim import content, gojson, layout
from cocoond.sim.fsops import SimError, create_temp, ensure_dirs, flock, mkdir_temp
from cocoond.sim.layout import CLOUDIMG, OCI, ImageBackend
from cocoond.sim.stores import image_store

_rand = random.SystemRandom()

#: Crash points, in the order a pull passes them.
CLOUDIMG_CRASH_POINTS = ("download", "tmp-blob", "blob")
OCI_CRASH_POINTS = ("workdir", "commit")


class Crash(Exception):
    """The process dies here: nothing after this point runs, no deferred
    cleanup either (locks go with the process)."""


def valid_file(path: str) -> bool:
    """utils.ValidFile: os.Stat (follows symlinks), regular, size > 0."""
    try:
        st = os.stat(path)
    except OSError:
        return False
    return (st.st_mode & 0o170000) == 0o100000 and st.st_size > 0


def digest_hex(digest: str) -> str:
    """images.Digest.Hex (go-digest's Encoded): what follows the ':'."""
    return digest.partition(":")[2]


def _remove(path: str) -> None:
    with contextlib.suppress(FileNotFoundError):
        os.remove(path)


# ------------------------------------------------------------------ lookups
def normalize_oci_ref(ref: str) -> str:
    """name.ParseReference(ref).String() (go-containerregistry v0.21.0,
    pkg/name/tag.go:63-65, digest.go:63-65): the reference as given, not a
    canonical form, so `ubuntu:24.04` is stored and looked up as typed
    (images/oci/fetch.go:21-25). Validation aside (pull of an invalid
    reference fails before anything is written), it changes nothing."""
    return ref


def _entry_id(backend: ImageBackend, entry: dict[str, Any]) -> str:
    return str(entry["manifest_digest"] if backend is OCI else entry["content_sum"])


def lookup_refs(backend: ImageBackend, images: dict[str, Any], ident: str) -> list[str]:
    """images.LookupRefs (images/index.go:59-95): exact key, then OCI's
    normalized reference, then every entry whose ID digest is `ident`, or
    has it as a prefix of at least 12 hex digits."""
    if images.get(ident) is not None:
        return [ident]
    if backend is OCI:
        norm = normalize_oci_ref(ident)
        if images.get(norm) is not None:
            return [norm]
    want = ident.removeprefix("sha256:")
    refs = []
    for ref, entry in images.items():
        if entry is None:
            continue
        d = _entry_id(backend, entry)
        d_hex = digest_hex(d)
        if d in (ident,) or d_hex == ident or (len(want) >= 12 and d_hex.startswith(want)):
            refs.append(ref)
    return refs


def lookup(backend: ImageBackend, images: dict[str, Any], ident: str) -> tuple[str, dict[str, Any]] | None:
    """imageIndex.Lookup (cloudimg/image.go:22, oci/image.go:32)."""
    entry = images.get(ident)
    if entry is not None:
        return ident, entry
    if backend is OCI:
        norm = normalize_oci_ref(ident)
        if images.get(norm) is not None:
            return norm, images[norm]
    for ref, entry in images.items():
        if entry is None:
            continue
        d = _entry_id(backend, entry)
        if d == ident or (backend is CLOUDIMG and digest_hex(d) == ident):
            return ref, entry
    return None


# ----------------------------------------------------------------- cloudimg
def _download(size: int, fmt: str, tag: bytes) -> bytes:
    if fmt == "qcow2":
        return content.qcow2(size, 3, tag=tag)
    if fmt == "qcow2-v2":
        return content.qcow2(size, 2, tag=tag)
    if fmt == "raw":
        return content.raw_disk(max(size, 1024), tag)
    raise SimError(f"unknown image format {fmt!r} (qcow2, qcow2-v2 or raw)")


def pull_image(
    root: str,
    size: int = 65536,
    url: str | None = None,
    fmt: str = "qcow2",
    crash_at: str | None = None,
    force: bool = False,
) -> str:
    """`cocoon image pull URL` for a cloud image; returns the blob hex."""
    init_images(root)
    store = image_store(root, CLOUDIMG)
    tag = os.urandom(16)
    url = url or f"https://images.example/{tag.hex()[:12]}.img"
    if not force:  # URL-level idempotency (pull.go:62-79)
        with store.with_() as idx:
            found = lookup(CLOUDIMG, idx["images"], url)
            if found and valid_file(CLOUDIMG.blob(root, digest_hex(found[1]["content_sum"]))):
                return digest_hex(found[1]["content_sum"])
    return _stage_and_commit(root, "pull-*.img", url, _download(size, fmt, tag), crash_at, sync=True)


def import_image(
    root: str, name: str, size: int = 65536, fmt: str = "qcow2", crash_at: str | None = None
) -> str:
    """`cocoon image import NAME FILE` for a qcow2/raw file (import.go:21-80):
    the source is hashed; a blob already there just gets the new ref,
    otherwise the file is copied to temp/import-<n>.img and committed."""
    init_images(root)
    body = _download(size, fmt, os.urandom(16))
    hex_ = hashlib.sha256(body).hexdigest()
    if valid_file(CLOUDIMG.blob(root, hex_)):
        with image_store(root, CLOUDIMG).update() as idx:
            _write_entry(root, idx, name, hex_)
        return hex_
    return _stage_and_commit(root, "import-*.img", name, body, crash_at, sync=False)


def _stage_and_commit(
    root: str, pattern: str, ref: str, body: bytes, crash_at: str | None, sync: bool
) -> str:
    """The bytes in temp/<pattern> (the download, pull.go:94-114, fsynced;
    or the import's copy, import.go:59-75), committed, then the temp file
    removed (a deferred os.Remove: a crash leaves it). Returns the hex."""
    fd, staged = create_temp(CLOUDIMG.temp(root), pattern)
    try:
        os.write(fd, body)
        if sync:
            os.fsync(fd)
    finally:
        os.close(fd)
    hex_ = hashlib.sha256(body).hexdigest()
    try:
        if crash_at == "download":
            raise Crash
        _commit(root, ref, staged, body, hex_, crash_at)
    except Crash:
        return hex_
    _remove(staged)
    return hex_


def _commit(root: str, ref: str, source: str, body: bytes, hex_: str, crash_at: str | None) -> None:
    """commit (commit.go:21-68) with prepareTmpBlob (commit.go:90-136)."""
    blob = CLOUDIMG.blob(root, hex_)
    tmp_blob = ""
    if not valid_file(blob):
        fast = body[:4] == content.QCOW2_MAGIC and body[4:8] == b"\0\0\0\3" and body[8:16] == bytes(8)
        if fast:
            tmp_blob = layout.tmp_blob_path(root, hex_)
            os.rename(source, tmp_blob)
        else:
            with flock(layout.tmp_blob_path(root, hex_) + ".lock"):  # the convert lock, never removed
                if not valid_file(blob):
                    tmp_blob = layout.tmp_blob_path(root, hex_)
                    converted = content.qcow2(len(body), 3, tag=body[:16])
                    fd = os.open(tmp_blob, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)  # qemu-img's file
                    try:
                        os.write(fd, converted)
                    finally:
                        os.close(fd)
    if crash_at == "tmp-blob":
        raise Crash
    with image_store(root, CLOUDIMG).update() as idx:
        if tmp_blob and not valid_file(blob):
            os.rename(tmp_blob, blob)
            os.chmod(blob, 0o444)
            if crash_at == "blob":
                raise Crash
        _write_entry(root, idx, ref, hex_)
    if tmp_blob:
        _remove(tmp_blob)  # deferred; gone already after the rename


def _write_entry(root: str, idx: dict[str, Any], ref: str, hex_: str) -> None:
    """writeIndexEntry (commit.go:150-163)."""
    try:
        size = os.stat(CLOUDIMG.blob(root, hex_)).st_size
    except OSError as exc:
        raise SimError(f"stat blob {CLOUDIMG.blob(root, hex_)}: {exc.strerror}") from None
    idx["images"][ref] = cloudimg_entry(ref, hex_, size, gojson.go_time())


def cloudimg_entry(ref: str, hex_: str, size: int, created_at: str) -> dict[str, Any]:
    """cloudimg.imageEntry (images/cloudimg/image.go:13-18)."""
    return {"ref": ref, "content_sum": "sha256:" + hex_, "size": size, "created_at": created_at}


def oci_entry(
    ref: str, manifest: str, layers: list[str], kernel: str, initrd: str, size: int, created_at: str
) -> dict[str, Any]:
    """oci.imageEntry (images/oci/image.go:16-24); digests as "sha256:<hex>"."""
    return {
        "ref": ref,
        "manifest_digest": manifest,
        "layers": [{"digest": "sha256:" + h} for h in layers],
        "kernel_layer": "sha256:" + kernel,
        "initrd_layer": "sha256:" + initrd,
        "size": size,
        "created_at": created_at,
    }


# ---------------------------------------------------------------------- OCI
def _layer_bytes(seed: str, i: int) -> bytes:
    return f"{seed}#layer-{i}".encode()


def pull_oci(
    root: str, ref: str, layers: int = 2, crash_at: str | None = None, seed: str | None = None
) -> dict[str, Any]:
    """`cocoon image pull REF` for an OCI image. The registry is simulated:
    a ref's manifest and layer digests follow from the ref (or `seed`), so
    pulling it again is a no-op and images pulled with one seed share
    layers. The last layer carries the kernel and initrd."""
    init_images(root)
    ref = normalize_oci_ref(ref)
    seed = seed if seed is not None else ref
    digests = [hashlib.sha256(_layer_bytes(seed, i)).hexdigest() for i in range(max(1, layers))]
    manifest = hashlib.sha256(f"{seed}#manifest#{layers}".encode()).hexdigest()
    store = image_store(root, OCI)
    try:
        with store.update() as idx:
            if _up_to_date(root, idx["images"].get(ref), manifest):
                return _summary(ref, idx["images"][ref])
            work = mkdir_temp(OCI.temp(root), "pull-*")
            results = [
                _process_layer(root, work, i, hex_, seed, boot=i == len(digests) - 1)
                for i, hex_ in enumerate(digests)
            ]
            if crash_at == "workdir":
                raise Crash
            _commit_and_record(root, idx, ref, "sha256:" + manifest, results, crash_at)
            shutil.rmtree(work, ignore_errors=True)  # deferred RemoveAll, before the index is written
    except Crash:
        return {"ref": ref, "manifest_digest": "sha256:" + manifest, "layers": digests, "crashed": crash_at}
    with store.with_() as idx:
        return _summary(ref, idx["images"][ref])


def import_oci(root: str, name: str, layers: int = 1, crash_at: str | None = None) -> dict[str, Any]:
    """`cocoon image import NAME LAYER.tar...` for OCI tar layers
    (oci/import.go:35-77): work dir temp/import-<n>/, each layer hashed as it
    is converted to layer-<i>/layer-<i>.erofs, the manifest digest the
    sha256 of the layer hexes."""
    init_images(root)
    seed = os.urandom(8).hex()
    digests = [hashlib.sha256(_layer_bytes(seed, i)).hexdigest() for i in range(max(1, layers))]
    manifest = hashlib.sha256("".join(digests).encode()).hexdigest()
    try:
        with image_store(root, OCI).update() as idx:
            work = mkdir_temp(OCI.temp(root), "import-*")
            results = [
                _process_layer(root, work, i, hex_, seed, boot=i == len(digests) - 1, imported=True)
                for i, hex_ in enumerate(digests)
            ]
            if crash_at == "workdir":
                raise Crash
            _commit_and_record(root, idx, name, "sha256:" + manifest, results, crash_at)
            shutil.rmtree(work, ignore_errors=True)
    except Crash:
        return {"ref": name, "manifest_digest": "sha256:" + manifest, "layers": digests, "crashed": crash_at}
    return {"ref": name, "manifest_digest": "sha256:" + manifest, "layers": digests}


def _up_to_date(root: str, entry: dict[str, Any] | None, manifest: str) -> bool:
    """isUpToDate (oci/fetch.go:60-75)."""
    if entry is None or entry["manifest_digest"] != "sha256:" + manifest:
        return False
    if not valid_file(layout.kernel_path(root, digest_hex(entry["kernel_layer"]))):
        return False
    if not valid_file(layout.initrd_path(root, digest_hex(entry["initrd_layer"]))):
        return False
    return all(valid_file(OCI.blob(root, digest_hex(la["digest"]))) for la in entry["layers"] or [])


def _process_layer(
    root: str, work: str, i: int, hex_: str, seed: str, boot: bool, imported: bool = False
) -> dict[str, str]:
    """processLayer (process.go:19-79) / processTarReader (import.go:119-182)."""
    res = {"digest": hex_, "erofs": "", "kernel": "", "initrd": ""}
    if valid_file(OCI.blob(root, hex_)):  # cached layer
        res["erofs"] = OCI.blob(root, hex_)
        for key, path in (
            ("kernel", layout.kernel_path(root, hex_)),
            ("initrd", layout.initrd_path(root, hex_)),
        ):
            if valid_file(path):
                res[key] = path
        if not imported:
            return res
    layer_dir = os.path.join(work, f"layer-{i}")
    os.makedirs(layer_dir, 0o750, exist_ok=True)
    tag = _layer_bytes(seed, i)
    erofs_path = os.path.join(layer_dir, f"layer-{i}.erofs" if imported else hex_ + ".erofs")
    content.FileSpec.sparse(os.path.basename(erofs_path), 16384, content.erofs(tag)).write(layer_dir)
    if not res["erofs"]:
        res["erofs"] = erofs_path
    if boot:
        label = f"import-{i}" if imported else hex_
        files = (("kernel", ".vmlinuz", content.bzimage(tag)), ("initrd", ".initrd.img", content.initrd(tag)))
        for key, suffix, data in files:
            path = os.path.join(layer_dir, label + suffix)
            content.FileSpec.of(os.path.basename(path), data).write(layer_dir)
            if imported and not res[key]:  # renameBootFiles (import.go:184-208)
                final = os.path.join(layer_dir, hex_ + suffix)
                os.rename(path, final)
                path = final
            if not res[key]:
                res[key] = path
    return res


def _commit_and_record(
    root: str,
    idx: dict[str, Any],
    ref: str,
    manifest: str,
    results: list[dict[str, str]],
    crash_at: str | None,
) -> None:
    """commitAndRecord (oci/commit.go:51-118)."""
    kernel_layer = initrd_layer = ""
    for i, r in enumerate(results):
        hex_ = r["digest"]
        if r["erofs"] != OCI.blob(root, hex_):
            os.rename(r["erofs"], OCI.blob(root, hex_))
        for key, dst in (
            ("kernel", layout.kernel_path(root, hex_)),
            ("initrd", layout.initrd_path(root, hex_)),
        ):
            src = r[key]
            if src and src != dst:
                try:
                    os.makedirs(layout.oci_boot_dir(root, hex_), 0o750, exist_ok=True)
                    os.rename(src, dst)
                except OSError as exc:
                    raise SimError(f"move layer {i} {key}: {exc.strerror}") from None
        if r["kernel"]:
            kernel_layer = "sha256:" + hex_
        if r["initrd"]:
            initrd_layer = "sha256:" + hex_
    if crash_at == "commit":
        raise Crash
    if not kernel_layer or not initrd_layer:
        raise SimError(f"image {ref} missing boot files (vmlinuz/initrd.img)")
    total = sum(os.stat(OCI.blob(root, r["digest"])).st_size for r in results)
    total += os.stat(layout.kernel_path(root, digest_hex(kernel_layer))).st_size
    total += os.stat(layout.initrd_path(root, digest_hex(initrd_layer))).st_size
    idx["images"][ref] = oci_entry(
        ref,
        manifest,
        [r["digest"] for r in results],
        digest_hex(kernel_layer),
        digest_hex(initrd_layer),
        total,
        gojson.go_time(),
    )


def _summary(ref: str, entry: dict[str, Any]) -> dict[str, Any]:
    return {
        "ref": ref,
        "manifest_digest": entry["manifest_digest"],
        "layers": [digest_hex(la["digest"]) for la in entry["layers"] or []],
    }


# ---------------------------------------------------------------------- rm
def rmi(root: str, ref: str) -> list[str]:
    """`cocoon image rm REF` (cmd/images/manage.go:54-94): the one backend
    whose Inspect knows REF deletes every ref LookupRefs finds. The blobs
    stay until gc."""
    init_images(root)
    owners = []
    for backend in layout.IMAGE_BACKENDS:
        with image_store(root, backend).with_() as idx:
            if lookup_refs(backend, idx["images"], ref):
                owners.append(backend)
    if not owners:
        raise SimError(f"image {ref!r}: not found in any backend")
    if len(owners) > 1:
        raise SimError(f"image {ref}: image ref resolves to multiple backends (backends: oci, cloudimg)")
    with image_store(root, owners[0]).update() as idx:
        gone = lookup_refs(owners[0], idx["images"], ref)
        for r in gone:
            del idx["images"][r]
    return gone


def list_images(root: str) -> dict[str, dict[str, Any]]:
    """Both indexes, read under their locks (for churn and tests)."""
    out: dict[str, dict[str, Any]] = {}
    for backend in layout.IMAGE_BACKENDS:
        with image_store(root, backend).with_() as idx:
            out[backend.type] = {k: v for k, v in idx["images"].items() if v is not None}
    return out


def blob_hexes(backend: ImageBackend, entry: dict[str, Any]) -> list[str]:
    """Entry.DigestHexes (cloudimg/image.go:52, oci/image.go:73)."""
    if backend is OCI:
        return [digest_hex(la["digest"]) for la in entry["layers"] or []]
    return [digest_hex(entry["content_sum"])]


def layout_init(root: str) -> None:
    """Every backend's dirs (EnsureDirs), and the UEFI firmware a Cloud
    Hypervisor host has installed."""
    ensure_dirs(*layout.all_backend_dirs(root))
    install_firmware(root)


def init_images(root: str) -> None:
    """The dirs `cocoon image ...` makes: both image backends' (cmd/core/helpers.go:95-113)."""
    ensure_dirs(*layout.backend_dirs(root, images=True))


def install_firmware(root: str) -> None:
    """CLOUDHV.fd, which a Cloud Hypervisor host has installed (not cocoon:
    cloudimg's Config only checks it, images/cloudimg/cloudimg.go:122-125)."""
    fw = layout.firmware_path(root)
    if not os.path.exists(fw):
        os.makedirs(os.path.dirname(fw), 0o755, exist_ok=True)
        content.FileSpec.of("CLOUDHV.fd", b"\x00EFI FIRMWARE VOLUME" + os.urandom(12)).write(
            os.path.dirname(fw)
        )


def random_url(rng: random.Random | None = None) -> str:
    return f"https://images.example/{(rng or _rand).getrandbits(48):012x}.img"
