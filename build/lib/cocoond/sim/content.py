"""Stand-ins for the bytes cocoon's tools write: small, with the right magic
at the right offset, sparse where the real file is large and mostly holes.
The simulator never needs real disk images, only files whose names, sizes,
modes and first bytes look like cocoon's."""

from __future__ import annotations

import gzip
import os
import struct
from dataclasses import dataclass, field

QCOW2_MAGIC = b"QFI\xfb"
ELF_MAGIC = b"\x7fELF"


@dataclass
class FileSpec:
    """A file to write: `segments` of data at their offsets, holes elsewhere,
    `size` bytes long, created with `mode` (the umask applies, as in Go)."""

    name: str
    mode: int
    size: int
    segments: list[tuple[int, bytes]] = field(default_factory=list)

    @classmethod
    def of(cls, name: str, data: bytes, mode: int = 0o644) -> FileSpec:
        return cls(name, mode, len(data), [(0, data)] if data else [])

    @classmethod
    def sparse(cls, name: str, size: int, head: bytes = b"", mode: int = 0o644) -> FileSpec:
        return cls(name, mode, max(size, len(head)), [(0, head)] if head else [])

    @classmethod
    def read(cls, path: str, name: str | None = None, limit: int = 16 << 20) -> FileSpec:
        """What a sparse-aware tar (utils/tar.go) carries of a file: its data
        regions (at most `limit` bytes of them), its size and mode."""
        st = os.stat(path)
        segments: list[tuple[int, bytes]] = []
        fd = os.open(path, os.O_RDONLY)
        try:
            offset, budget = 0, limit
            while offset < st.st_size and budget > 0:
                try:
                    start = os.lseek(fd, offset, os.SEEK_DATA)
                except OSError:
                    break
                end = os.lseek(fd, start, os.SEEK_HOLE)
                data = os.pread(fd, min(end - start, budget), start)
                if data.strip(b"\0"):
                    segments.append((start, data))
                budget -= len(data)
                offset = end
        finally:
            os.close(fd)
        return cls(name or os.path.basename(path), st.st_mode & 0o777, st.st_size, segments)

    def write(self, directory: str) -> str:
        """extractFile / extractFileSparse: O_CREATE|O_WRONLY|O_TRUNC, data
        written, holes seeked over, truncated to size."""
        path = os.path.join(directory, self.name)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, self.mode)
        try:
            for offset, data in self.segments:
                os.pwrite(fd, data, offset)
            os.ftruncate(fd, self.size)
        finally:
            os.close(fd)
        return path

    @property
    def data(self) -> bytes:
        """The whole content (for small files)."""
        buf = bytearray(self.size)
        for offset, data in self.segments:
            buf[offset : offset + len(data)] = data
        return bytes(buf)


def qcow2(virtual_size: int, version: int = 3, backing: str = "", tag: bytes = b"") -> bytes:
    """A qcow2 header (images/cloudimg/inspect.go reads magic, version and the
    backing-file offset; hypervisor/cloudhypervisor/utils.go the size at 24)."""
    head = bytearray(512)
    head[0:4] = QCOW2_MAGIC
    struct.pack_into(">I", head, 4, version)
    if backing:
        name = backing.encode()
        struct.pack_into(">QI", head, 8, 512, len(name))
        head += name
    struct.pack_into(">I", head, 20, 16)  # cluster_bits
    struct.pack_into(">Q", head, 24, virtual_size)
    if version >= 3:
        struct.pack_into(">I", head, 100, 104)  # header_length
    return bytes(head) + tag


def raw_disk(size: int, tag: bytes) -> bytes:
    """A raw image as downloaded: an MBR-ish first sector and a tag that
    makes its digest unique."""
    return tag + b"\0" * (510 - len(tag)) + b"\x55\xaa" + b"\0" * max(0, size - 512)


def erofs(tag: bytes) -> bytes:
    """mkfs.erofs output: the superblock magic at 1024."""
    head = bytearray(1024) + struct.pack("<I", 0xE0F5E1E2) + tag
    return bytes(head)


def ext4_head() -> bytes:
    """What mkfs.ext4 leaves at the start of a COW or data disk: the
    superblock magic 0xEF53 at 1024 + 56."""
    head = bytearray(1024 + 64)
    struct.pack_into("<H", head, 1024 + 56, 0xEF53)
    return bytes(head)


def bzimage(tag: bytes) -> bytes:
    """A compressed kernel (not ELF: Firecracker's EnsureVmlinux decompresses
    it, hypervisor/firecracker/create.go:103-155)."""
    head = bytearray(0x240)
    head[0:2] = b"MZ"
    head[0x202:0x206] = b"HdrS"
    return bytes(head) + gzip.compress(ELF_MAGIC + b"\2\1\1" + tag, mtime=0)


def vmlinux(kernel: bytes) -> bytes:
    """The ELF kernel decompressed out of a bzImage stand-in."""
    start = kernel.find(b"\x1f\x8b\x08")
    return gzip.decompress(kernel[start:]) if start >= 0 else ELF_MAGIC


def initrd(tag: bytes) -> bytes:
    return gzip.compress(b"070701" + tag, mtime=0)


def cidata(tag: bytes) -> bytes:
    """metadata.Generate: a small FAT12 image labelled cidata."""
    head = bytearray(64 << 10)
    head[0:3] = b"\xeb\x3c\x90"
    head[3:11] = b"MSWIN4.1"
    head[43:54] = b"CIDATA     "
    head[510:512] = b"\x55\xaa"
    return bytes(head[:1024]) + tag


def write_specs(directory: str, specs: list[FileSpec]) -> None:
    for spec in specs:
        spec.write(directory)
