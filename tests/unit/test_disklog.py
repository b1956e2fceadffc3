"""The segment log's crash safety: torn tails, flipped bytes, a second relay, a full disk."""

from __future__ import annotations

import os
import random
import struct
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from relay.disklog import HEADER_SIZE, DiskFull, DiskLog, DiskLogError


def fill(log: DiskLog, count: int, size: int = 200) -> list[bytes]:
    payloads = [bytes([i % 251]) * size for i in range(count)]
    for payload in payloads:
        _, sequence = log.write(payload, spans=1, nbytes=len(payload))
        log.sync(sequence)
    return payloads


def recovered_payloads(directory: Path) -> tuple[list[bytes], DiskLog]:
    log = DiskLog(directory)
    return [log.read(record) or b"?" for record in log.recovery.records], log


def segment(directory: Path) -> Path:
    (path,) = sorted(directory.glob("seg-*.log"))[:1]
    return path


@pytest.mark.parametrize("seed", range(8))
def test_a_torn_tail_is_cut_off_and_counted_never_a_crash(tmp_path: Path, seed: int) -> None:
    log = DiskLog(tmp_path)
    payloads = fill(log, 10)
    log.close()
    path = segment(tmp_path)
    size = path.stat().st_size
    record = size // 10
    cut = random.Random(seed).randrange(1, record)  # somewhere inside the last record
    os.truncate(path, size - cut)
    found, again = recovered_payloads(tmp_path)
    assert found == payloads[:9]
    assert (again.recovery.torn, again.recovery.corrupt) == (1, 0)
    assert path.stat().st_size == 9 * record  # the torn bytes are gone
    again.close()
    found_twice, third = recovered_payloads(tmp_path)  # and the next start is clean
    assert found_twice == payloads[:9] and third.recovery.torn == 0
    third.close()


@pytest.mark.parametrize("where", ["payload", "header"])
def test_a_flipped_byte_inside_is_skipped_or_cuts_the_rest(tmp_path: Path, where: str) -> None:
    log = DiskLog(tmp_path)
    payloads = fill(log, 5)
    log.close()
    path = segment(tmp_path)
    record = path.stat().st_size // 5
    offset = 2 * record + (HEADER_SIZE + 10 if where == "payload" else 12)
    data = bytearray(path.read_bytes())
    data[offset] ^= 0xFF
    path.write_bytes(bytes(data))
    found, again = recovered_payloads(tmp_path)
    if where == "payload":  # the header still frames the record: only it is lost
        assert found == payloads[:2] + payloads[3:]
        assert (again.recovery.corrupt, again.recovery.torn) == (1, 0)
    else:  # a bad header cannot be trusted to say where the next record starts
        assert found == payloads[:2]
        assert (again.recovery.corrupt, again.recovery.torn) == (0, 1)
    again.close()


def test_done_is_remembered_and_a_torn_cursor_slot_falls_back(tmp_path: Path) -> None:
    log = DiskLog(tmp_path)
    fill(log, 4)
    log.close()
    log = DiskLog(tmp_path)
    log.mark_done(log.recovery.records[1].end)
    log.mark_done(log.recovery.records[2].end)
    log.close()
    cursor = tmp_path / "cursor"
    data = bytearray(cursor.read_bytes())
    seqs = [struct.unpack_from("<Q", data, start)[0] for start in (0, 64)]
    newest = 0 if seqs[0] > seqs[1] else 64
    data[newest + 8] ^= 0xFF  # damage the newest slot: the older one still holds
    cursor.write_bytes(bytes(data))
    again = DiskLog(tmp_path)
    assert len(again.recovery.records) == 2  # the older slot: done through record 1, 2 remain
    again.close()


def test_a_second_relay_on_the_same_dir_is_refused(tmp_path: Path) -> None:
    first = DiskLog(tmp_path)
    with pytest.raises(DiskLogError, match="in use by another running trace-relay"):
        DiskLog(tmp_path)
    first.close()
    DiskLog(tmp_path).close()  # free again once the first one is gone


def test_a_missing_dir_is_refused(tmp_path: Path) -> None:
    with pytest.raises(DiskLogError, match="not a directory"):
        DiskLog(tmp_path / "absent")


def test_a_full_disk_refuses_cleanly_and_recovers_when_room_returns(small_tmpfs: Callable[[str], Path]) -> None:
    disk = small_tmpfs("1m")
    log = DiskLog(disk, segment_bytes=4 * 1024 * 1024)
    ballast = disk / "ballast"
    ballast.write_bytes(b"\0" * (1024 * 1024 - 64 * 1024))  # leave ~64 KiB
    kept = []
    refused: DiskFull | None = None
    for _ in range(100):
        try:
            record, sequence = log.write(b"x" * 8192, spans=1, nbytes=8192)
        except DiskFull as exc:
            refused = exc
            break
        log.sync(sequence)
        kept.append(record)
    assert refused is not None and kept, "the tmpfs never filled up"
    size_after_refusal = sum(p.stat().st_size for p in disk.glob("seg-*.log"))
    assert size_after_refusal == len(kept) * (HEADER_SIZE + 8192)  # no partial record left
    ballast.unlink()
    record, sequence = log.write(b"y" * 8192, spans=1, nbytes=8192)  # room again: it works
    log.sync(sequence)
    log.close()
    again = DiskLog(disk)
    assert len(again.recovery.records) == len(kept) + 1 and again.recovery.torn == 0
    again.close()


def test_a_read_only_dir_is_refused(small_tmpfs: Callable[[str], Path]) -> None:
    disk = small_tmpfs("1m")
    subprocess.run(["mount", "-o", "remount,ro", str(disk)], check=True)  # noqa: S607
    with pytest.raises(DiskLogError, match="cannot write in"):
        DiskLog(disk)


def test_a_drained_segment_is_replaced_and_freed_at_once(tmp_path: Path) -> None:
    """Without this, the segment being written only grows: a full disk would never recover."""
    log = DiskLog(tmp_path)
    records = []
    for _ in range(40):  # 40 x 8 KiB: past the size at which a drained segment is replaced
        record, sequence = log.write(b"z" * 8192, spans=1, nbytes=8192)
        log.sync(sequence)
        records.append(record)
    (before,) = tmp_path.glob("seg-*.log")
    log.mark_done(records[-1].end)
    assert not before.exists()
    assert sum(p.stat().st_size for p in tmp_path.glob("seg-*.log")) == 0
    record, sequence = log.write(b"after", spans=1, nbytes=5)  # the new segment takes writes
    log.sync(sequence)
    log.close()
    again = DiskLog(tmp_path)
    assert [again.read(r) for r in again.recovery.records] == [b"after"]
    again.close()


def test_a_segment_of_an_earlier_run_is_deleted_once_drained(tmp_path: Path) -> None:
    """After a restart the old segments are not the one being written: each is deleted as soon
    as its last record is done (a drained 1 GB backlog left its last segment behind before)."""
    log = DiskLog(tmp_path)
    fill(log, 3, size=100)
    log.close()
    again = DiskLog(tmp_path)  # writes to a new segment now
    (old,) = [p for p in tmp_path.glob("seg-*.log") if p.stat().st_size]
    again.mark_done(again.recovery.records[-1].end)
    assert not old.exists()
    again.close()
    third = DiskLog(tmp_path)
    assert third.recovery.records == [] and third.recovery.skip == 0
    third.close()
