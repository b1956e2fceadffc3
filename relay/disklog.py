"""The disk queue's storage: an append-only, checksummed segment log with group commit.

Pure file I/O: it stores opaque records (a request's accepted spans, serialized by the caller) and
knows nothing of OTLP or Jaeger. Layout of ``--queue-dir``::

    lock                    held with flock by the running relay (a second one refuses to start)
    cursor                  two checksummed slots, written alternately: what is done, what is taken
    seg-<16 hex digits>.log records, in order; a segment is deleted once every record of it is done

A record is a 32-byte header and its payload::

    magic u32 | header crc u32 | payload length u32 | spans u32 | accepted bytes u32 |
    unix time ns u64 | payload crc u32

:meth:`DiskLog.write` appends a record and :meth:`DiskLog.sync` returns once it is on stable
storage (``fdatasync``); records written at the same time share one sync (group commit). Positions are
``(segment, offset, skip)``: ``skip`` spans of the record at ``offset`` are already done, for a
record that the worker took in parts.
"""

from __future__ import annotations

import errno
import fcntl
import logging
import os
import struct
import threading
import time
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

logger = logging.getLogger(__name__)

MAGIC = 0x31515254  # b"TRQ1"
_HEADER = struct.Struct("<IIIIIQI")
HEADER_SIZE = _HEADER.size  # 32
_SLOT = struct.Struct("<QQQIQQII")  # seq, done seg/off/skip, taken seg/off/skip, crc
_SLOT_SIZE = 64
SEGMENT_BYTES = 32 * 1024 * 1024
ROTATE_DRAINED_BYTES = 256 * 1024  # a drained segment at least this big is replaced and freed
_SEGMENT_GLOB = "seg-*.log"


class DiskLogError(Exception):
    """The directory cannot be used (missing, unwritable, locked): the relay refuses to start."""


class DiskFull(Exception):
    """No room on the device for a record: refuse the request, retry later."""


@dataclass(frozen=True, order=True)
class Position:
    segment: int
    offset: int
    skip: int = 0


@dataclass(frozen=True)
class Record:
    """Where a record lives and what its header says."""

    segment: int
    offset: int
    length: int  # payload bytes
    spans: int
    nbytes: int  # the accepted spans' encoded size, for the byte bound
    written_ns: int

    @property
    def end(self) -> Position:
        return Position(self.segment, self.offset + HEADER_SIZE + self.length)

    @property
    def start(self) -> Position:
        return Position(self.segment, self.offset)


@dataclass
class Recovery:
    """What :meth:`DiskLog.open` found from an earlier run."""

    records: list[Record] = field(default_factory=list)
    skip: int = 0  # spans of records[0] done before the restart
    in_flight_spans: int = 0  # taken and not known done at the crash: possibly sent twice
    torn: int = 0  # torn or unreadable tails cut off
    corrupt: int = 0  # records whose payload checksum failed, skipped


def _crc(data: bytes | memoryview) -> int:
    return zlib.crc32(data) & 0xFFFFFFFF


def encode_header(length: int, spans: int, nbytes: int, written_ns: int, payload_crc: int) -> bytes:
    tail = _HEADER.pack(MAGIC, 0, length, spans, nbytes, written_ns, payload_crc)[8:]
    return _HEADER.pack(MAGIC, _crc(tail), length, spans, nbytes, written_ns, payload_crc)


class DiskLog:
    def __init__(self, directory: Path, *, segment_bytes: int = SEGMENT_BYTES) -> None:
        self.directory = directory
        self._segment_bytes = segment_bytes
        self._lock_fd = self._take_lock(directory)
        self._append_lock = threading.Lock()
        self._sync_lock = threading.Lock()
        self._cursor_lock = threading.Lock()
        self._written = 0  # records written (a sequence), under _append_lock
        self._synced = 0  # records known durable, under _sync_lock
        self._fd = -1
        self._segment = 0
        self._size = 0
        self._cursor_fd = os.open(directory / "cursor", os.O_RDWR | os.O_CREAT, 0o600)
        self._cursor_seq = 0
        self._done = Position(0, 0)
        self._read_fds: dict[int, int] = {}
        self.recovery = self._recover()
        self._open_segment(self._last_segment() + 1)

    # -- opening ------------------------------------------------------------------------------

    @staticmethod
    def _take_lock(directory: Path) -> int:
        if not directory.is_dir():
            raise DiskLogError(f"{directory} is not a directory (create it, or mount a volume there)")
        try:
            fd = os.open(directory / "lock", os.O_RDWR | os.O_CREAT, 0o600)
        except OSError as exc:
            raise DiskLogError(f"cannot write in {directory}: {exc.strerror}") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise DiskLogError(f"{directory} is in use by another running trace-relay") from None
        return fd

    def _segments(self) -> list[int]:
        return sorted(int(path.stem[4:], 16) for path in self.directory.glob(_SEGMENT_GLOB))

    def _last_segment(self) -> int:
        segments = self._segments()
        return segments[-1] if segments else 0

    def _path(self, segment: int) -> Path:
        return self.directory / f"seg-{segment:016x}.log"

    def _recover(self) -> Recovery:
        done, taken = self._read_cursor()
        self._done = done
        recovery = Recovery(skip=done.skip)
        for segment in self._segments():
            if segment < done.segment:
                self._path(segment).unlink(missing_ok=True)  # done before the crash
                continue
            start = done.offset if segment == done.segment else 0
            self._scan(segment, start, recovery)
        if recovery.records and recovery.records[0].start != Position(done.segment, done.offset):
            recovery.skip = 0  # the record the skip belonged to is gone
        recovery.in_flight_spans = self._spans_between(recovery, done, taken)
        return recovery

    def _scan(self, segment: int, offset: int, recovery: Recovery) -> None:
        path = self._path(segment)
        with path.open("r+b") as file:
            size = os.fstat(file.fileno()).st_size
            while offset < size:
                file.seek(offset)
                header = file.read(HEADER_SIZE)
                parsed = _parse_header(header)
                if parsed is None or offset + HEADER_SIZE + parsed[0] > size:
                    logger.warning("disk queue: torn or unreadable record at %s offset %d; "
                                   "cut off %d bytes", path.name, offset, size - offset)
                    file.truncate(offset)
                    recovery.torn += 1
                    return
                length, spans, nbytes, written_ns, payload_crc = parsed
                if _crc(file.read(length)) != payload_crc:
                    logger.warning("disk queue: corrupt record at %s offset %d (%d spans); skipped",
                                   path.name, offset, spans)
                    recovery.corrupt += 1
                else:
                    recovery.records.append(Record(segment, offset, length, spans, nbytes, written_ns))
                offset += HEADER_SIZE + length

    @staticmethod
    def _spans_between(recovery: Recovery, done: Position, taken: Position) -> int:
        if taken <= done:
            return 0
        count = 0
        for record in recovery.records:
            if record.start >= Position(taken.segment, taken.offset):
                if record.start == Position(taken.segment, taken.offset):
                    count += taken.skip
                break
            count += record.spans
        return max(0, count - recovery.skip)

    # -- appending ----------------------------------------------------------------------------

    def write(self, payload: bytes, spans: int, nbytes: int) -> tuple[Record, int]:
        """Write one record (not yet durable: see :meth:`sync`); returns it and its sequence
        number. Raises DiskFull (nothing of the record is left behind) or OSError."""
        written_ns = time.time_ns()
        header = encode_header(len(payload), spans, nbytes, written_ns, _crc(payload))
        with self._append_lock:
            if self._size + HEADER_SIZE + len(payload) > self._segment_bytes and self._size:
                self._rotate()
            offset = self._size
            self._write_all(header + payload, offset)
            self._size += HEADER_SIZE + len(payload)
            self._written += 1
            return Record(self._segment, offset, len(payload), spans, nbytes, written_ns), self._written

    def sync(self, sequence: int) -> None:
        """Return once the record of ``sequence`` (and every one before it) is durable.

        Group commit: the first caller syncs everything written so far; the callers queued
        behind it find their record already durable."""
        with self._sync_lock:
            if self._synced >= sequence:
                return
            with self._append_lock:
                target, fd = self._written, self._fd
            os.fdatasync(fd)
            self._synced = target

    def _write_all(self, data: bytes, offset: int) -> None:
        view = memoryview(data)
        done = 0
        try:
            while done < len(view):
                done += os.pwrite(self._fd, view[done:], offset + done)
        except OSError as exc:
            os.ftruncate(self._fd, offset)  # leave no partial record behind
            if exc.errno in (errno.ENOSPC, errno.EDQUOT):
                raise DiskFull(f"no space left in {self.directory}") from None
            raise

    def _rotate(self) -> None:
        os.fdatasync(self._fd)  # records of the old segment are durable before the switch
        self._open_segment(self._segment + 1)

    def _open_segment(self, segment: int) -> None:
        fd = os.open(self._path(segment), os.O_RDWR | os.O_CREAT, 0o600)  # pwrite: no O_APPEND
        dir_fd = os.open(self.directory, os.O_RDONLY)
        try:
            os.fsync(dir_fd)  # the new file's name is durable too
        finally:
            os.close(dir_fd)
        if self._fd >= 0:
            os.close(self._fd)
        self._fd, self._segment, self._size = fd, segment, os.fstat(fd).st_size

    # -- reading and the cursor ---------------------------------------------------------------

    def read(self, record: Record) -> bytes | None:
        """The record's payload, or None when its checksum no longer matches."""
        fd = self._read_fds.get(record.segment)
        if fd is None:
            for old in [s for s in self._read_fds if s < record.segment]:
                os.close(self._read_fds.pop(old))
            fd = self._read_fds[record.segment] = os.open(self._path(record.segment), os.O_RDONLY)
        data = os.pread(fd, HEADER_SIZE + record.length, record.offset)
        parsed = _parse_header(data[:HEADER_SIZE])
        payload = data[HEADER_SIZE:]
        if parsed is None or len(payload) != record.length or _crc(payload) != parsed[4]:
            return None
        return payload

    def mark_taken(self, taken: Position) -> None:
        """Before a send: what a crash now would leave possibly sent twice (no sync: it only
        matters after a process crash, when the page cache survives)."""
        self._write_cursor(self._done, taken, sync=False)

    def mark_done(self, done: Position) -> None:
        """Everything before ``done`` is exported or dropped: durable, and whole segments freed.

        Once the worker has caught up with the segment being written, a new one is started so
        that the drained one is freed too: a full disk recovers as soon as the worker catches up."""
        done = self._rotate_if_drained(done)
        self._write_cursor(done, done, sync=True)
        previous, self._done = self._done, done
        for segment in range(previous.segment, done.segment):
            fd = self._read_fds.pop(segment, None)
            if fd is not None:
                os.close(fd)
            self._path(segment).unlink(missing_ok=True)

    def _rotate_if_drained(self, done: Position) -> Position:
        """``done`` moved past a segment's last record: the start of the next segment instead, so
        that the drained one is deleted (a segment of an earlier run, or the one being written,
        which is then replaced by a new one)."""
        with self._append_lock:
            if done.segment < self._segment:
                size = os.stat(self._path(done.segment)).st_size if self._path(done.segment).exists() else 0
                return Position(done.segment + 1, 0) if done.offset >= size else done
            if done != Position(self._segment, self._size) or self._size < ROTATE_DRAINED_BYTES:
                return done
            self._rotate()
            return Position(self._segment, 0)

    def _write_cursor(self, done: Position, taken: Position, *, sync: bool) -> None:
        with self._cursor_lock:
            self._cursor_seq += 1
            body = _SLOT.pack(self._cursor_seq, done.segment, done.offset, done.skip,
                              taken.segment, taken.offset, taken.skip, 0)[:-4]
            slot = body + struct.pack("<I", _crc(body))
            os.pwrite(self._cursor_fd, slot.ljust(_SLOT_SIZE, b"\0"), (self._cursor_seq % 2) * _SLOT_SIZE)
            if sync:
                os.fdatasync(self._cursor_fd)

    def _read_cursor(self) -> tuple[Position, Position]:
        data = os.pread(self._cursor_fd, 2 * _SLOT_SIZE, 0)
        best: tuple[int, Position, Position] | None = None
        for start in (0, _SLOT_SIZE):
            slot = data[start:start + _SLOT.size]
            if len(slot) < _SLOT.size or _crc(slot[:-4]) != struct.unpack("<I", slot[-4:])[0]:
                continue
            seq, dseg, doff, dskip, tseg, toff, tskip, _ = _SLOT.unpack(slot)
            if best is None or seq > best[0]:
                best = (seq, Position(dseg, doff, dskip), Position(tseg, toff, tskip))
        if best is None:
            return Position(0, 0), Position(0, 0)
        self._cursor_seq = best[0]
        return best[1], best[2]

    def disk_bytes(self) -> int:
        return sum(path.stat().st_size for path in self._segment_paths())

    def _segment_paths(self) -> Iterator[Path]:
        for segment in self._segments():
            yield self._path(segment)

    def close(self) -> None:
        with self._append_lock:
            for fd in (*self._read_fds.values(), self._fd, self._cursor_fd, self._lock_fd):
                if fd >= 0:
                    os.close(fd)
            self._read_fds.clear()
            self._fd = self._cursor_fd = self._lock_fd = -1


def _parse_header(header: bytes) -> tuple[int, int, int, int, int] | None:
    """(length, spans, nbytes, written_ns, payload crc), or None when the header is not sound."""
    if len(header) < HEADER_SIZE:
        return None
    magic, header_crc, length, spans, nbytes, written_ns, payload_crc = _HEADER.unpack(header)
    if magic != MAGIC or _crc(header[8:]) != header_crc:
        return None
    return length, spans, nbytes, written_ns, payload_crc
