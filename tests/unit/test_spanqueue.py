from __future__ import annotations

import threading

from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan

from relay.spanqueue import SpanQueue


def batch(count: int, name: str = "s") -> list[ReadableSpan]:
    resource = Resource({"service.name": name})
    return [ReadableSpan(name=f"{name}{i}", resource=resource) for i in range(count)]


def test_offer_is_all_or_nothing() -> None:
    queue = SpanQueue(capacity=10)
    assert queue.offer([batch(4), batch(4)])
    assert not queue.offer([batch(1), batch(2)])  # 8 + 3 > 10: none of it is taken
    assert queue.outstanding == 8
    assert queue.offer([batch(2)])
    assert queue.outstanding == 10


def test_room_is_freed_only_when_the_worker_settles() -> None:
    queue = SpanQueue(capacity=5)
    assert queue.offer([batch(5)])
    taken = queue.take(max_spans=5, linger=0, wait=0)
    assert taken is not None and sum(map(len, taken)) == 5
    assert not queue.offer([batch(1)])  # spans in the worker's hands still count
    queue.settle(5)
    assert queue.offer([batch(1)])


def test_take_splits_a_large_batch_and_keeps_order() -> None:
    queue = SpanQueue(capacity=100)
    queue.offer([batch(7, "a"), batch(3, "b")])
    first = queue.take(max_spans=5, linger=0, wait=0)
    second = queue.take(max_spans=5, linger=0, wait=0)
    assert first is not None and second is not None
    assert [[s.name for s in b] for b in first] == [["a0", "a1", "a2", "a3", "a4"]]
    assert [[s.name for s in b] for b in second] == [["a5", "a6"], ["b0", "b1", "b2"]]


def test_take_times_out_empty_and_returns_none_once_closed_and_drained() -> None:
    queue = SpanQueue(capacity=10)
    assert queue.take(max_spans=5, linger=0, wait=0.01) == []
    queue.offer([batch(2)])
    queue.close()
    assert not queue.offer([batch(1)])
    taken = queue.take(max_spans=5, linger=1, wait=0)
    assert taken is not None and sum(map(len, taken)) == 2
    assert queue.take(max_spans=5, linger=0, wait=0) is None


def test_take_wakes_when_a_batch_arrives() -> None:
    queue = SpanQueue(capacity=10)
    result: list[object] = []
    taker = threading.Thread(target=lambda: result.append(queue.take(max_spans=1, linger=0, wait=10)))
    taker.start()
    queue.offer([batch(1)])
    taker.join(10)
    assert not taker.is_alive()
    assert result and result[0] and len(result[0][0]) == 1  # type: ignore[index,arg-type]


def test_a_reservation_is_freed_once_whether_committed_in_part_cancelled_or_refused() -> None:
    queue = SpanQueue(capacity=10)
    assert queue.reserve(6)
    assert queue.commit([batch(4)], reserved=6)  # 2 of the 6 were rejected spans: freed
    assert queue.outstanding == 4
    assert queue.reserve(3)
    queue.close()
    assert not queue.commit([batch(3)], reserved=3)  # closed for shutdown
    queue.cancel(3)  # the caller frees it, exactly once
    assert queue.outstanding == 4
