"""A rewrite of snapshots.json absorbed at the cost of what it changed.

cocoon rewrites its whole snapshot DB for every `snapshot save` (twice),
`rm` and `import`, and Go's json.Marshal writes it the same way each time:
map keys sorted, struct fields in a fixed order, no white space. Two
successive files differ in a window or two (a record in `snapshots`, an
entry in `names`); every other record is byte for byte what it was.

After a full decode of a DB in that shape (`build_spans`), we keep, for
each run of entries of about CHUNK_BYTES (a chunk), its length, a SHA-256
of its bytes and the keys it held: no text, no copy of the file. On the
next write, `absorb` reads the new file a block at a time and matches the
old chunks in order. Where a chunk does not match, it decodes the new
entries one by one, with the same per-record code the full decode runs,
until the next entry is the first of an old chunk whose bytes match again.

Why this is exactly the full decode's result:
- The parser's state at a byte depends only on the bytes before it. Every
  chunk starts at an entry's key (after `{` or `,`) inside the same object,
  so where the bytes of an old chunk recur at such a position in the new
  file (same digest: the same bytes), they parse to the same entries, with
  the same records, as before. The new entries in between are decoded like
  the full decode decodes them. The rest (`{"snapshots":{`, `},"names":{`,
  the tail) is compared byte for byte.
- Go's decode is not per record in three ways, each checked: a key that
  repeats (a later occurrence replaces the first): any new key already held
  by a kept entry, or twice among the new ones, sends the file to the full
  decode; an error (the first one wins, a time.Time error stops the
  decode): any new entry with an error does the same, so errors are always
  worded by the full decode; the document's syntax: the kept bytes parsed
  before, the new entries parse, and the framing bytes are the old ones.
- Anything else (another shape, white space between entries, a foreign
  writer's indented file, an escape in `names`, a file that shrank while we
  read it, a change touching more than a quarter of the file) returns None:
  the caller decodes the whole file.
"""

from __future__ import annotations

import codecs
import hashlib
import itertools
import operator
import os
import re
import stat
from collections.abc import Callable, Container, Sequence
from dataclasses import dataclass
from typing import Any, Generic, NamedTuple, TypeVar

from cocoond.storage.godecode import Decoder, GoDecodeError
from cocoond.storage.gojson import text_go
from cocoond.storage.jsonwalk import JSONWalkError, key_at, scan_value, walk_object
from cocoond.storage.memory import own

#: Bytes of entries per chunk: what a one-record change re-decodes (about
#: 25 records of the simulator's size), and 4,000 digests per 100k records.
CHUNK_BYTES = 16 * 1024
#: How the Go-written document starts, and what sits between its two maps.
HEAD = '{"snapshots":{'
MID = '},"names":{'
#: Longest tail kept after the `names` map (Go writes "}\n").
MAX_TAIL = 64
#: The new file is read this much at a time.
_BLOCK = 1 << 20
#: First text window for walking changed entries (grown as needed).
_WINDOW = 64 * 1024
#: Past this share of the file re-decoded, the full decode is as cheap.
_MAX_CHANGED = 0.25
#: JSON's white space (Go's isSpace), as text and as bytes.
_SPACE = re.compile(r"[ \t\n\r]*")
_SPACE_BYTES = b" \t\n\r"
_SPACE_CHARS = frozenset(" \t\n\r")
_SPACE_RUN = re.compile(rb"[ \t\n\r]*")

R = TypeVar("R")


class Chunk(NamedTuple):
    """A run of consecutive entries of one map: from the first entry's key
    up to the next chunk's first key (so with the ',' after the last
    entry), or, for the map's last chunk, up to its closing '}'."""

    length: int  # bytes
    digest: bytes  # SHA-256 of those bytes
    keys: tuple[str, ...]  # the entries' keys, in order


@dataclass(slots=True)
class Spans:
    """Where a decoded snapshots.json's entries sat: enough to tell, for a
    new file, which bytes are still the same."""

    snapshots: list[Chunk]
    names: list[Chunk]
    tail: bytes  # after the `names` map's '}'


@dataclass(slots=True)
class DBDelta(Generic[R]):
    """What a rewrite changed. `removed`: keys of old entries re-read (each
    may come back in `added`); `added`: the entries decoded from the new
    file (None for a JSON null record), likewise for `names`."""

    removed: list[str]
    added: dict[str, R | None]
    names_removed: list[str]
    names_added: dict[str, str]
    #: None: a whole load of a file not in Go's layout (white space between
    #: tokens): the next rewrite is loaded whole again.
    spans: Spans | None
    #: Bytes read and bytes decoded anew (for the bench and the log).
    size: int
    decoded_bytes: int
    #: The new file's bytes, when the caller compares by bytes (`absorb`'s
    #: `old`): kept for the next rewrite.
    data: bytes | None = None


#: Bytes decoded to text per call by `text_sliced`.
TEXT_SLICE = 8 << 20


def text_pieces(data: bytes) -> list[str]:
    """gojson.text_go(data) as pieces to join, decoded TEXT_SLICE bytes per
    call: one call over a 654 MB DB keeps the GIL for its whole duration
    (the loop's thread could neither ping nor see a SIGTERM). The
    incremental decoder carries a sequence cut by a slice over to the next,
    so each invalid byte is still one U+FFFD, as Go reads it. The caller
    lets go of `data` before it joins the pieces (a copy, no decode), so
    that no more than two copies of the DB are alive at once."""
    if len(data) <= TEXT_SLICE:
        return [text_go(data)]
    dec = codecs.getincrementaldecoder("utf-8")("cocoond-go-utf8")
    with memoryview(data) as view:
        pieces = [dec.decode(view[i : i + TEXT_SLICE]) for i in range(0, len(data), TEXT_SLICE)]
    pieces.append(dec.decode(b"", final=True))
    return pieces


def cut_short(data: bytes) -> bool:
    """Is `data` an object that does not end (the document's first token
    '{', its last not '}')? Then it is not JSON, whatever is in between."""
    first = _SPACE_RUN.match(data).end()  # type: ignore[union-attr]
    return data[first : first + 1] == b"{" and not data[-MAX_TAIL:].rstrip(_SPACE_BYTES).endswith(b"}")


def head_of(first: str) -> str:
    """How a Go-written DB whose first map is `first` starts."""
    return '{"' + first + '":{'


def walk_spans(
    text: str, first: str, count: int, names: dict[str, str], chunk_bytes: int | None = None
) -> tuple[Spans, list[str]] | None:
    """Spans of a document already decoded whole (a VM DB): `count` keys in
    its first map and `names` as the decode left them (a key that repeats
    makes the counts differ: None). Also the first map's keys, in order."""
    head = head_of(first)
    if not text.startswith(head):
        return None
    keys: list[str] = []
    starts: list[int] = []

    def on_entry(key: str, idx: int) -> int:
        _, end = scan_value(text, idx, 2)
        keys.append(key)
        starts.append(end + 1)
        return end

    try:
        end = walk_object(text, len(head) - 1, on_entry)
        named = end + len(MID) - 2
        if len(keys) != count or text[end - 1 : named + 1] != MID:
            return None
        _, names_end = scan_value(text, named, 1)
    except JSONWalkError:
        return None
    starts = [len(head), *starts[:-1]]
    if any(text[s - 1] != "," or text[s] != '"' for s in starts[1:]):
        return None
    name_starts = names_starts(text, named, names_end, names)
    tail = text[names_end:].encode("utf-8")
    if name_starts is None or len(tail) > MAX_TAIL or tail.strip(b" \t\r\n") != b"}":
        return None
    spans = Spans(
        chunk_entries(text, starts[: len(keys)], end - 1, keys, chunk_bytes),
        chunk_entries(text, name_starts, names_end - 1, list(names), chunk_bytes),
        tail,
    )
    return spans, keys


def digest(data: bytes | memoryview) -> bytes:
    return hashlib.sha256(data).digest()


# ------------------------------------------------------------ from a full decode
def chunk_entries(
    text: str, starts: Sequence[int], end: int, keys: Sequence[str], chunk_bytes: int | None = None
) -> list[Chunk]:
    """Chunks of a map's entries: `starts[i]` is where entry i's key starts
    in `text`, `end` where the map's '}' is; `keys` the keys to keep.
    `chunk_bytes`: the chunks' size (default CHUNK_BYTES)."""
    limit = chunk_bytes or CHUNK_BYTES
    chunks: list[Chunk] = []
    n = len(starts)
    first = 0
    size = 0
    for i in range(n):
        nxt = starts[i + 1] if i + 1 < n else end
        size += nxt - starts[i]
        if size >= limit or i + 1 == n:
            data = text[starts[first] : nxt].encode("utf-8")
            chunks.append(Chunk(len(data), digest(data), tuple(keys[first : i + 1])))
            first, size = i + 1, 0
    return chunks


def names_starts(text: str, idx: int, end: int, names: dict[str, str]) -> list[int] | None:
    """Where each entry of a `names` map at text[idx:end] starts, if the
    map is written as Go writes it ('"k":"v"' entries, no white space, no
    escapes: then their lengths add up to the map's); else None."""
    if text.find("\\", idx, end) != -1:
        return None
    starts = []
    pos = idx + 1
    for key, value in names.items():
        starts.append(pos)
        pos += len(key) + len(value) + 6  # "k":"v",
    expected = pos - 1 if names else idx + 1
    if expected != end - 1 or any(text[s] != '"' for s in starts[:1]):
        return None
    return starts


# ------------------------------------------------------------------ the new file
class _File:
    """The new file's bytes, a block at a time (never the whole file), or
    all of them at once with the old file's (`old`): then a kept chunk is
    told by comparing its bytes (memcmp, ten times SHA-256's speed)."""

    def __init__(self, fd: int, size: int, old: bytes | None = None) -> None:
        self.fd = fd
        self.size = size
        self.start = 0
        self.buf = b""
        self.old = old
        if old is not None:
            self.buf = _read_all(fd, size)
            if len(self.buf) != size:
                raise Bail  # it changed while we read it

    def get(self, pos: int, n: int) -> bytes | None:
        """Bytes [pos, pos+n), or None when the file is shorter."""
        if n < 0 or pos + n > self.size:
            return None
        if pos < self.start or pos + n > self.start + len(self.buf):
            want = max(n, _BLOCK)
            parts = []
            got = 0
            while got < want:
                part = os.pread(self.fd, want - got, pos + got)
                if not part:
                    break
                parts.append(part)
                got += len(part)
            self.buf = b"".join(parts)
            self.start = pos
            if len(self.buf) < n:
                return None
        off = pos - self.start
        return self.buf[off : off + n] if (off or n != len(self.buf)) else self.buf

    def same_run(self, pos: int, start: int, end: int) -> bool:
        """Are the new bytes at `pos` the old ones [start, end)? (`old` only)"""
        assert self.old is not None
        with memoryview(self.old) as view:
            return pos + end - start <= self.size and self.buf.startswith(view[start:end], pos)

    def same(self, pos: int, chunk: Chunk, at: int) -> bool:
        """Are the bytes at `pos` those of `chunk` (which sat at `at` in
        the old file)?"""
        if self.old is not None:
            return self.same_run(pos, at, at + chunk.length)
        outside = pos < self.start or pos + chunk.length > self.start + len(self.buf)
        if outside and self.get(pos, chunk.length) is None:
            return False
        off = pos - self.start
        view = memoryview(self.buf)[off : off + chunk.length]
        return len(view) == chunk.length and digest(view) == chunk.digest


class _Cursor:
    """New entries as text, a window at a time, from a byte position."""

    def __init__(self, f: _File, pos: int) -> None:
        self.f = f
        self.size = _WINDOW
        self._load(pos)

    def _load(self, pos: int) -> None:
        n = min(self.size, self.f.size - pos)
        raw = self.f.get(pos, n) if n > 0 else b""
        self.base = pos
        self.text = text_go(raw or b"")
        self.t = 0
        self.eof = pos + n >= self.f.size
        self.ascii = self.text.isascii()
        self._mark = (0, pos)  # a text index and its byte position

    def byte(self, t: int) -> int:
        """The byte position of text index t (t only grows within a window)."""
        if self.ascii:
            return self.base + t
        mt, mb = self._mark
        if t < mt:
            mt, mb = 0, self.base
        b = mb + len(self.text[mt:t].encode("utf-8"))
        self._mark = (t, b)
        return b

    def more(self) -> bool:
        """The entry at the cursor runs past the window: reload from it,
        with a window twice as big if it was the window's first entry."""
        if self.eof:
            return False
        if self.t == 0:
            self.size *= 2
        self._load(self.byte(self.t))
        return True


#: (text, key, index of the key, index of the value, decoder) -> (value, end);
#: raises JSONWalkError when the value runs past the window, Bail (or
#: GoDecodeError) when only the full decode may judge it.
_Decode = Callable[[str, str, int, int, Decoder], "tuple[Any, int]"]


class Bail(Exception):
    """The fast route cannot vouch for the result: decode the whole file
    (also raised by a caller's entry decoder)."""


class _Object:
    """One map's entries absorbed: its new chunks, the old keys re-read and
    the new entries."""

    def __init__(
        self,
        f: _File,
        chunks: list[Chunk],
        decode: _Decode,
        store: Callable[[str], str],
        chunk_bytes: int | None = None,
    ) -> None:
        self.f = f
        self.old = chunks
        self.chunk = chunk_bytes or CHUNK_BYTES
        #: Where each old chunk sat in the old file (its entries start at `start`).
        self.old_at = _offsets(chunks, 0)
        self.decode = decode
        self.store = store
        self.out: list[Chunk] = []
        self.removed: list[str] = []
        self.added: dict[str, Any] = {}
        #: Largest share of the file re-decoded before the full decode is
        #: cheaper (1.0: no limit, for a whole load).
        self.limit = _MAX_CHANGED
        #: White space allowed between tokens (a whole load of a foreign
        #: writer's layout), and whether any was met (then no chunks).
        self.spaced = False
        self.saw_space = False
        self.decoded = 0
        self.dec = Decoder()
        self._first: dict[str, int] | None = None

    def run(self, pos: int) -> int:
        """Absorb the map whose entries start at `pos` (just after its '{');
        returns the position after its '}'."""
        f, old = self.f, self.old
        i, n = 0, len(old)
        after_value = False  # at pos: right after the value of a kept last chunk
        while True:
            if not after_value and i < n and f.same(pos, old[i], self.old_at[i]):
                k = self._kept(pos, i) if f.old is not None else i + 1
                self.out.extend(old[i:k])
                pos += self.old_at[k - 1] + old[k - 1].length - self.old_at[i]
                i = k
                after_value = i == n
                continue
            if after_value:
                if f.get(pos, 1) == b"}":
                    return pos + 1
                # Entries follow what was the last chunk: read it again, so
                # that it ends with its ',' as every chunk but the last does.
                last = self.out.pop()
                pos -= last.length
                self.removed.extend(last.keys)
                after_value = False
            pos, i, done = self._walk(pos, i, at_open=not self.out and not self.removed and i == 0)
            if done:
                return pos

    def _kept(self, pos: int, i: int) -> int:
        """With the old bytes at hand, chunk i matching at `pos`: the end k
        of the longest run of old chunks i..k-1 whose bytes recur in one
        piece from `pos` (galloping, then halving: a few comparisons of
        whole runs instead of one call per chunk)."""
        old, at, f = self.old, self.old_at, self.f
        ok, step, n = i + 1, 1, len(old)
        bad = n + 1

        def more(k: int) -> bool:  # do chunks ok..k-1 match too? (only what is not yet known)
            start = at[ok]
            return f.same_run(pos + start - at[i], start, at[k - 1] + old[k - 1].length)

        while ok < n:
            k = min(ok + step, n)
            if not more(k):
                bad = k
                break
            ok, step = k, step * 2
        while bad - ok > 1:
            mid = (ok + bad) // 2
            if more(mid):
                ok = mid
            else:
                bad = mid
        return ok

    def _walk(self, pos: int, i: int, *, at_open: bool) -> tuple[int, int, bool]:
        """Decode new entries from `pos` (a key, or '}' of an empty map)
        until one is the first of an old chunk j >= i whose bytes match
        (returns its position, j, False) or the map ends (after '}', len,
        True). Old chunks i..j-1 are gone."""
        f, old = self.f, self.old
        if self._first is None:
            # {c.keys[0]: k for k, c in enumerate(old)}, at C speed
            self._first = dict(zip(map(_FIRST, map(_KEYS, old)), itertools.count()))
        cur = _Cursor(f, pos)
        entries: list[tuple[str, int]] = []  # (stored key, byte start)
        walked = False
        while True:
            text, t = cur.text, cur.t
            if self.spaced and text[t : t + 1] in _SPACE_CHARS:
                self.saw_space = True
                t = cur.t = _SPACE.match(text, t).end()  # type: ignore[union-attr]
                if t >= len(text):
                    if cur.more():
                        continue
                    raise Bail
            if at_open and not walked and text.startswith("}", t):
                self._gone(i, len(old))
                return cur.byte(t) + 1, len(old), True
            try:
                key, vidx = key_at(text, t)
            except JSONWalkError:
                if cur.more():
                    continue
                raise Bail from None
            if text.find("\\", t, vidx) != -1:
                raise Bail  # an escaped key: the full decode judges repeats (U+FFFD)
            j = self._first.get(key)
            at_j = self.old_at[j] if j is not None else 0
            if j is not None and (j > i or (j == i and walked)) and f.same(cur.byte(t), old[j], at_j):
                self._close(entries, cur.byte(t))
                self._gone(i, j)
                return cur.byte(t), j, False
            try:
                value, end = self.decode(text, key, t, vidx, self.dec)
            except JSONWalkError:
                if cur.more():
                    continue
                raise Bail from None
            except GoDecodeError:
                raise Bail from None
            if self.spaced and text[end : end + 1] in _SPACE_CHARS:
                self.saw_space = True
                end = _SPACE.match(text, end).end()  # type: ignore[union-attr]
            if end >= len(text):
                if cur.more():
                    continue
                raise Bail
            if not cur.ascii and "\ufffd" in text[t : end + 1]:
                raise Bail  # an invalid byte: no byte position to trust
            sep = text[end]
            stored = self.store(key)
            at = cur.byte(t)
            if entries and at - entries[0][1] >= self.chunk:
                self._close(entries, at)  # as they come: a whole load keeps no list of 1M
                entries = []
            entries.append((stored, at))
            if stored in self.added:
                raise Bail  # a key repeats: the full decode says what Go makes of it
            self.added[stored] = value
            walked = True
            if sep == ",":
                cur.t = end + 1
                if cur.base - pos > self.limit * f.size:
                    raise Bail
            elif sep == "}":
                close = cur.byte(end)
                self._close(entries, close)
                self._gone(i, len(old))
                return close + 1, len(old), True
            else:
                raise Bail  # white space between entries: not Go's writing

    def _gone(self, i: int, j: int) -> None:
        for c in self.old[i:j]:
            self.removed.extend(c.keys)

    def _close(self, entries: list[tuple[str, int]], end: int) -> None:
        """New chunks over the walked entries [entries[0] start, end)."""
        if not entries:
            return
        self.decoded += end - entries[0][1]
        if self.saw_space:
            return  # no spans are kept for this layout
        first = 0
        for k in range(len(entries)):
            nxt = entries[k + 1][1] if k + 1 < len(entries) else end
            if nxt - entries[first][1] >= self.chunk or k + 1 == len(entries):
                start = entries[first][1]
                data = self.f.get(start, nxt - start)
                if data is None:
                    raise Bail
                keys = tuple(e[0] for e in entries[first : k + 1])
                self.out.append(Chunk(len(data), digest(data), keys))
                first = k + 1


def absorb(
    path: str,
    spans: Spans,
    decode_record: _Decode,
    *,
    records: Container[str],
    names: Container[str],
    copy_keys: bool,
    max_bytes: int | None = None,
    first: str = "snapshots",
    old: bytes | None = None,
    chunk_bytes: int | None = None,
) -> DBDelta[Any] | None:
    """The new snapshots.json at `path` as a change to the DB `spans`
    describes (whose record keys, null ones included, are `records`, whose
    names `names`), or None when only the full decode may say what it is
    (including every error, and a file that is missing or not regular).
    `first`: the first map's key (a VM DB: "vms", then "names" too).
    `old`: the bytes `spans` describes, if the caller kept them (a small
    file): chunks are then compared by bytes, the new file is read whole
    and comes back in the delta's `data`."""

    def read(f: _File) -> DBDelta[Any]:
        delta = _absorb(f, spans, decode_record, records, names, copy_keys, first, chunk_bytes=chunk_bytes)
        if old is not None:
            delta.data = f.buf
        return delta

    return _read_regular(path, max_bytes, old, read)


def _read_regular(
    path: str, max_bytes: int | None, old: bytes | None, read: Callable[[_File], DBDelta[Any]]
) -> DBDelta[Any] | None:
    """`read` of the file at `path`, or None where only the full decode may
    say what it is: the file missing, not regular, over `max_bytes`, or
    `read` bailing out (the same rules for a rewrite and a whole load)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode) or (max_bytes is not None and st.st_size > max_bytes):
            return None
        return read(_File(fd, st.st_size, old))
    except (Bail, OSError):
        return None
    finally:
        os.close(fd)


def load(
    path: str,
    decode_record: _Decode,
    *,
    copy_keys: bool,
    max_bytes: int | None = None,
    first: str = "snapshots",
) -> DBDelta[Any] | None:
    """The whole file at `path` read like a rewrite of an empty DB: every
    entry decoded from a window of text at a time, never the whole file as
    text (at 1M records that text is 665 MB beside the bytes); the entries
    come in `added`. None where only the full decode may judge (the same
    rules as `absorb`)."""
    empty = Spans([], [], b"")
    return _read_regular(
        path,
        max_bytes,
        None,
        lambda f: _absorb(f, empty, decode_record, (), (), copy_keys, first, whole=True),
    )


def _absorb(
    f: _File,
    spans: Spans,
    decode_record: _Decode,
    records: Container[str],
    names: Container[str],
    copy_keys: bool,
    first: str,
    *,
    whole: bool = False,
    chunk_bytes: int | None = None,
) -> DBDelta[Any]:
    store: Callable[[str], str] = own if copy_keys else _same_key
    # A file cut short (a writer that died, a full disk) would be decoded up
    # to its end before the walk found out, for nothing: at 1M records that
    # is half a million records built and dropped. It must end with '}'.
    end = f.get(max(0, f.size - MAX_TAIL), min(f.size, MAX_TAIL))
    if end is None or not end.rstrip(_SPACE_BYTES).endswith(b"}"):
        raise Bail
    snaps = _Object(f, spans.snapshots, decode_record, store, chunk_bytes)
    named = _Object(f, spans.names, _decode_name, store, chunk_bytes)
    if whole:
        return _whole(f, snaps, named, first)
    head = head_of(first).encode()
    if f.get(0, len(head)) != head:
        raise Bail
    if f.old is not None:
        snaps.old_at = _offsets(spans.snapshots, len(head))
        names_at = len(head) + sum(map(_LENGTH, spans.snapshots)) + len(MID)
        named.old_at = _offsets(spans.names, names_at)
    pos = snaps.run(len(head))
    if f.get(pos - 1, len(MID)) != MID.encode():
        raise Bail
    pos = named.run(pos - 1 + len(MID))
    tail = f.get(pos, f.size - pos)
    if tail != spans.tail:
        raise Bail
    added = _unique(snaps.added, records, snaps.removed)
    names_added = _unique(named.added, names, named.removed)
    return DBDelta(
        snaps.removed,
        added,
        named.removed,
        names_added,
        Spans(snaps.out, named.out, spans.tail),
        f.size,
        snaps.decoded + named.decoded,
    )


def _whole(f: _File, snaps: _Object, named: _Object, first: str) -> DBDelta[Any]:
    """A whole file as `{"<first>":{...},"names":{...}}` with JSON white
    space allowed between any two tokens (a foreign writer's indented file
    is decoded a window at a time too, never as one text: at 1M records that
    text is 654 MB beside the bytes, and decoding it is one C call that
    keeps the GIL for a second). The members must be those two, in that
    order, spelled so (anything else, as any error, is the full decode's
    to judge: Bail). Spans only when the file is in Go's layout."""
    snaps.limit = named.limit = 1.0
    snaps.spaced = named.spaced = True
    pos = _token(f, 0, b"{")
    pos = _token(f, pos, b'"' + first.encode() + b'"')
    pos = _token(f, pos, b":")
    snaps_at = pos = _token(f, pos, b"{")
    pos = snaps.run(pos)
    snaps_end = pos
    pos = _token(f, pos, b",")
    pos = _token(f, pos, b'"names"')
    pos = _token(f, pos, b":")
    names_at = pos = _token(f, pos, b"{")
    pos = named.run(pos)
    tail = f.get(pos, f.size - pos) if f.size - pos <= MAX_TAIL else None
    if _space(f, _token(f, pos, b"}")) != f.size:
        raise Bail
    go_layout = (
        snaps_at == len(head_of(first))
        and names_at == snaps_end - 1 + len(MID)
        and not (snaps.saw_space or named.saw_space)
        and tail is not None
    )
    spans = Spans(snaps.out, named.out, tail) if go_layout and tail is not None else None
    return DBDelta([], snaps.added, [], named.added, spans, f.size, snaps.decoded + named.decoded)


def _space(f: _File, pos: int) -> int:
    """The position after the white space at `pos`."""
    while (b := f.get(pos, 1)) is not None and b in _SPACE_BYTES:
        pos += 1
    return pos


def _token(f: _File, pos: int, token: bytes) -> int:
    """After `token`, which must come next (white space before it allowed)."""
    pos = _space(f, pos)
    if f.get(pos, len(token)) != token:
        raise Bail
    return pos + len(token)


_LENGTH = operator.attrgetter("length")


_KEYS = operator.attrgetter("keys")
_FIRST = operator.itemgetter(0)


def _offsets(chunks: list[Chunk], start: int) -> list[int]:
    """Where each chunk starts, the first at `start` (C-speed: 1,300 chunks
    per 5 MB VM DB, every rewrite)."""
    return list(itertools.accumulate(map(_LENGTH, chunks[:-1]), initial=start))


def _read_all(fd: int, size: int) -> bytes:
    parts = []
    got = 0
    while got < size:
        part = os.pread(fd, size - got, got)
        if not part:
            break
        parts.append(part)
        got += len(part)
    return b"".join(parts)


def _same_key(key: str) -> str:
    return key


def _unique(added: dict[str, Any], held: Container[str], removed: list[str]) -> dict[str, Any]:
    """The new entries, unless one's key is also a kept entry's: Go would
    decode both occurrences; the full decode says what that makes."""
    gone: set[str] | None = None
    for key in added:
        if key in held:
            if gone is None:
                gone = set(removed)
            if key not in gone:
                raise Bail
    return added


def _decode_name(text: str, key: str, start: int, idx: int, dec: Decoder) -> tuple[str, int]:
    """A `names` entry as the full decode reads a Go-written map: a plain
    string, no escape in the entry (the full decode reads such a map with
    json's own scanner, see records.decode_records)."""
    value, end = scan_value(text, idx, 2)
    if end >= len(text):
        raise JSONWalkError("past the window")
    if type(value) is not str or text.find("\\", start, end) != -1:
        raise Bail
    return value, end
