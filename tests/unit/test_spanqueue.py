from __future__ import annotations

import threading
from pathlib import Path

from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan

from relay.disklog import DiskLog
from relay.metrics import Ledger
from relay.spanqueue import SpanQueue, Take
from tests.hostile.requests import request, span
from tests.queueing import SPAN_BYTES, offer, offer_request


def batch(count: int, name: str = "s") -> list[ReadableSpan]:
    resource = Resource({"service.name": name})
    return [ReadableSpan(name=f"{name}{i}", resource=resource) for i in range(count)]


def memory_queue(spans: int = 10, nbytes: int = 10**9) -> tuple[SpanQueue, Ledger]:
    ledger = Ledger(capacity=spans)
    return SpanQueue(ledger, max_spans=spans, max_bytes=nbytes), ledger


def names(take: Take | None) -> list[list[str]]:
    assert take is not None
    return [[s.name for s in b] for b in take.batches]


def test_offer_is_all_or_nothing() -> None:
    queue, ledger = memory_queue(spans=10)
    assert offer(queue, batch(4), batch(4))
    assert not offer(queue, batch(1), batch(2))  # 8 + 3 > 10: none of it is taken
    assert ledger.snapshot().queued == 8
    assert offer(queue, batch(2))
    assert ledger.snapshot().queued == 10


def test_bytes_bound_the_queue_too() -> None:
    queue, _ = memory_queue(spans=1000, nbytes=5 * SPAN_BYTES)
    assert offer(queue, batch(5))
    assert not offer(queue, batch(1))  # spans have room, bytes do not
    assert queue.fits(1000, 5 * SPAN_BYTES)
    assert not queue.fits(1, 5 * SPAN_BYTES + 1)


def test_room_is_freed_only_when_the_worker_settles() -> None:
    queue, _ = memory_queue(spans=5)
    assert offer(queue, batch(5))
    taken = queue.take(max_spans=5, linger=0, wait=0)
    assert taken is not None and taken.spans == 5
    assert not offer(queue, batch(1))  # spans in the worker's hands still count
    queue.exported(5)
    queue.settle(taken)
    assert offer(queue, batch(1))


def test_queued_is_what_the_queue_holds_until_each_span_has_a_fate() -> None:
    queue, ledger = memory_queue(spans=10)
    assert offer(queue, batch(6))
    taken = queue.take(max_spans=10, linger=0, wait=0)
    assert taken is not None
    queue.exported(4)
    assert ledger.snapshot().queued == 2  # two spans taken have no fate yet
    queue.dropped("retry_exhausted", 2)
    queue.settle(taken)
    snap = ledger.snapshot()
    assert (snap.queued, snap.exported, snap.dropped, snap.accepted) == (0, 4, {"retry_exhausted": 2}, 6)


def test_take_splits_a_large_batch_and_keeps_order() -> None:
    queue, _ = memory_queue(spans=100)
    offer(queue, batch(7, "a"), batch(3, "b"))
    first = queue.take(max_spans=5, linger=0, wait=0)
    second = queue.take(max_spans=5, linger=0, wait=0)
    assert names(first) == [["a0", "a1", "a2", "a3", "a4"]]
    assert names(second) == [["a5", "a6"], ["b0", "b1", "b2"]]


def test_take_times_out_empty_and_returns_none_once_closed_and_drained() -> None:
    queue, _ = memory_queue()
    assert not queue.take(max_spans=5, linger=0, wait=0.01)
    offer(queue, batch(2))
    queue.close()
    assert not offer(queue, batch(1))
    taken = queue.take(max_spans=5, linger=1, wait=0)
    assert taken is not None and taken.spans == 2
    assert queue.take(max_spans=5, linger=0, wait=0) is None


def test_take_wakes_when_a_batch_arrives() -> None:
    queue, _ = memory_queue()
    result: list[Take | None] = []
    taker = threading.Thread(target=lambda: result.append(queue.take(max_spans=1, linger=0, wait=10)))
    taker.start()
    offer(queue, batch(1))
    taker.join(10)
    assert not taker.is_alive()
    assert result and result[0] is not None and result[0].spans == 1


def test_a_reservation_is_freed_once_whether_committed_in_part_cancelled_or_refused() -> None:
    queue, _ = memory_queue(spans=10)
    first = queue.reserve(6, 600)
    assert first is not None
    from relay.convert import Converted
    assert queue.commit(first, Converted([batch(4)], [400]), b"") is None  # 2 rejected: freed
    assert queue.reserve(6, 600) is not None  # 4 + 6 = 10: exactly full
    assert queue.reserve(1, 100) is None
    ledger2 = Ledger(capacity=10)
    closing = SpanQueue(ledger2, max_spans=10, max_bytes=10**6)
    held = closing.reserve(3, 300)
    assert held is not None
    closing.close()
    assert closing.commit(held, Converted([batch(3)], [300]), b"") == "shutting_down"
    assert closing.reserve(0, 0) is None  # closed
    assert ledger2.snapshot().queued == 0


def test_drain_counts_what_was_left_as_shutdown() -> None:
    queue, ledger = memory_queue()
    offer(queue, batch(3))
    queue.close()
    assert queue.drain() == 3
    snap = ledger.snapshot()
    assert (snap.queued, snap.dropped) == (0, {"shutdown": 3})


# -- on disk -------------------------------------------------------------------------------------


def disk_queue(directory: Path, spans: int = 1000) -> tuple[SpanQueue, Ledger, DiskLog]:
    ledger = Ledger(capacity=spans)
    log = DiskLog(directory)
    return SpanQueue(ledger, max_spans=spans, max_bytes=10**9, log=log), ledger, log


def test_a_restart_delivers_what_was_committed_and_not_done(tmp_path: Path) -> None:
    queue, _, log = disk_queue(tmp_path)
    for tag in "abc":
        assert offer_request(queue, request(*(span(f"{tag}{i}", span_id=bytes([i + 1]) * 8)
                                               for i in range(3)))) is None
    first = queue.take(max_spans=4, linger=0, wait=1)  # a0..a2 and b0: b is split
    assert names(first) == [["a0", "a1", "a2"], ["b0"]]
    assert first is not None
    queue.exported(4)
    queue.settle(first)
    second = queue.take(max_spans=2, linger=0, wait=1)  # taken, then the process "dies"
    assert names(second) == [["b1", "b2"]]
    log.close()

    again, ledger, log2 = disk_queue(tmp_path)
    snap = ledger.snapshot()
    assert (snap.recovered, snap.queued, snap.possible_duplicates) == (5, 5, 2)
    rest = again.take(max_spans=100, linger=0, wait=1)
    assert names(rest) == [["b1", "b2"], ["c0", "c1", "c2"]]
    log2.close()


def test_done_records_are_gone_and_their_segments_deleted(tmp_path: Path) -> None:
    ledger = Ledger(capacity=1000)
    log = DiskLog(tmp_path, segment_bytes=600)  # about two records a segment
    queue = SpanQueue(ledger, max_spans=1000, max_bytes=10**9, log=log)
    for tag in "abcdef":
        assert offer_request(queue, request(*(span(f"{tag}{i}", span_id=bytes([i + 1]) * 8)
                                               for i in range(3)))) is None
    segments = len(list(tmp_path.glob("seg-*.log")))
    assert segments >= 3
    take = queue.take(max_spans=100, linger=0, wait=1)
    assert take is not None and take.spans == 18
    queue.exported(18)
    queue.settle(take)
    assert len(list(tmp_path.glob("seg-*.log"))) == 1  # only the one still being written
    log.close()
    again, ledger2, log2 = disk_queue(tmp_path)
    assert ledger2.snapshot().recovered == 0
    assert not again.take(max_spans=100, linger=0, wait=0.01)
    log2.close()


def test_shutdown_on_disk_keeps_the_take_for_the_next_start(tmp_path: Path) -> None:
    queue, ledger, log = disk_queue(tmp_path)
    assert offer_request(queue, request(span("x", span_id=b"\x05" * 8))) is None
    take = queue.take(max_spans=10, linger=0, wait=1)
    assert take is not None
    queue.dropped("shutdown", 1)  # the worker's deadline passed while Jaeger was down
    queue.settle(take)
    queue.close()
    assert queue.drain() == 0
    snap = ledger.snapshot()
    assert (snap.dropped, snap.queued) == ({}, 1)
    log.close()
    _, ledger2, log2 = disk_queue(tmp_path)
    assert ledger2.snapshot().recovered == 1
    log2.close()
