"""The bounded queue between the Export handlers and the one worker, in spans and in bytes.

Policy, explicit: a request's spans are queued whole or not at all, and the caller is told which
(:meth:`SpanQueue.reserve` room before converting, then :meth:`SpanQueue.commit`). Spans count
against both bounds from the moment their room is reserved until the worker settles them, so the
spans being converted and those in the worker's hands are bounded too. Bytes are the encoded
(protobuf) size of the accepted spans, which users can predict from what their clients send.

Without a disk log the queue holds converted spans in memory. With one (``--queue-dir``), commit
returns only once the request's record is durable; the queue then holds only the records' places,
and the worker's :meth:`take` converts one record at a time into a small window: memory stays
bounded whatever the backlog. The worker reports each span's fate through :meth:`exported` and
:meth:`dropped`, and :meth:`settle` hands a take back: on disk, that is what advances the cursor.

The queue owns the accounting: it updates the :class:`~relay.metrics.Ledger` under the ledger's
own lock, which is also the queue's lock, so that a scrape sees the queue's real content.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

from google.protobuf.message import DecodeError
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.sdk.trace import ReadableSpan

from relay.convert import Converted, convert_request
from relay.disklog import DiskFull, DiskLog, Position, Record
from relay.metrics import Ledger

logger = logging.getLogger(__name__)

SpanBatch = list[ReadableSpan]  # the spans of one resource from one request


@dataclass(frozen=True)
class Reservation:
    spans: int
    nbytes: int


@dataclass
class _Item:
    spans: SpanBatch
    nbytes: int
    queued_at: float  # time.time() of the commit (of the record, on disk)
    record: Record | None = None  # on disk: the record the spans come from
    first: int = 0  # on disk: the index of spans[0] among the record's spans
    record_spans: int = 0  # on disk: how many spans the record holds

    @property
    def end(self) -> Position | None:
        """On disk: the cursor once these spans (and all before them) are done."""
        if self.record is None:
            return None
        after = self.first + len(self.spans)
        if after >= self.record_spans:
            return self.record.end
        return Position(self.record.segment, self.record.offset, after)

    def split(self, count: int) -> tuple[_Item, _Item]:
        part_bytes = self.nbytes * count // max(1, len(self.spans))
        head = _Item(self.spans[:count], part_bytes, self.queued_at, self.record, self.first,
                     self.record_spans)
        tail = _Item(self.spans[count:], self.nbytes - part_bytes, self.queued_at, self.record,
                     self.first + count, self.record_spans)
        return head, tail


@dataclass
class Take:
    """What the worker takes at once. Falsy when nothing was waiting."""

    items: list[_Item] = field(default_factory=list)

    @property
    def batches(self) -> list[SpanBatch]:
        return [item.spans for item in self.items if item.spans]

    @property
    def spans(self) -> int:
        return sum(len(item.spans) for item in self.items)

    @property
    def nbytes(self) -> int:
        return sum(item.nbytes for item in self.items)

    def __bool__(self) -> bool:
        return bool(self.items)


class SpanQueue:
    def __init__(self, ledger: Ledger, *, max_spans: int, max_bytes: int, log: DiskLog | None = None,
                 clock: Callable[[], float] = time.time) -> None:
        self.capacity = max_spans
        self.max_bytes = max_bytes
        self._ledger = ledger
        self._log = log
        self._clock = clock
        self._cond = threading.Condition(ledger.lock)
        self._window: deque[_Item] = deque()  # converted, not yet taken
        self._window_spans = 0
        self._records: deque[tuple[Record, int]] = deque()  # on disk: (record, sequence), in log order
        self._durable = 0  # on disk: records up to this sequence are durable
        self._write_lock = threading.Lock()
        self._first_skip = 0  # spans of _records[0] done before a restart
        self._room_spans = 0  # reserved + queued + in the worker's hands
        self._room_bytes = 0
        self._held = 0  # spans accepted and not yet exported or dropped (the ledger's `queued`)
        self._resolved = 0  # spans of the current take whose fate is known
        self._keep = False  # on disk: the current take must stay on disk (shutdown)
        self._closed = False
        ledger.attach(self._held_locked)
        if log is not None:
            self._recover(log)

    # -- the receivers' side ------------------------------------------------------------------

    def reserve(self, spans: int, nbytes: int) -> Reservation | None:
        """Room for a request's spans, taken before they are converted. None when either bound
        is reached, or closed."""
        with self._cond:
            if self._closed or self._room_spans + spans > self.capacity \
                    or self._room_bytes + nbytes > self.max_bytes:
                return None
            self._room_spans += spans
            self._room_bytes += nbytes
            return Reservation(spans, nbytes)

    def fits(self, spans: int, nbytes: int) -> bool:
        """Whether a request of this size could ever be queued (when the queue is empty)."""
        return spans <= self.capacity and nbytes <= self.max_bytes

    def commit(self, reservation: Reservation, converted: Converted, record: bytes,
               transport: str = "grpc") -> str | None:
        """Queue a converted request in its reserved room; the reservation is used up either way.

        ``record`` is the request as received: the disk log stores it, and the worker converts
        it again when its turn comes. Returns None once queued (on disk: durably), else why not:
        ``shutting_down`` or ``disk_full`` (nothing queued), or ``not_durable`` (written but the
        sync failed: the spans stay queued and are counted accepted, yet the client must be told
        to retry, so they may arrive twice)."""
        spans, nbytes = converted.span_count, converted.nbytes
        if self._log is None or not spans:
            return self._commit_in_memory(reservation, converted, transport)
        with self._write_lock:  # records are registered in the order they are in the log
            try:
                written, sequence = self._log.write(record, spans, nbytes)
            except DiskFull:
                self.cancel(reservation)
                return "disk_full"
            except OSError as exc:
                self.cancel(reservation)
                logger.error("disk queue: cannot write a record: %s", exc)  # noqa: TRY400 - one line
                return "disk_error"
            with self._cond:
                self._accept_locked(reservation, spans, nbytes, transport)
                self._records.append((written, sequence))
        try:
            self._log.sync(sequence)
        except OSError as exc:
            logger.error("disk queue: sync failed: %s", exc)  # noqa: TRY400 - one line
            return "not_durable"
        with self._cond:
            self._durable = max(self._durable, sequence)
            self._cond.notify()
        return None

    def _commit_in_memory(self, reservation: Reservation, converted: Converted, transport: str) -> str | None:
        with self._cond:
            if self._closed:
                self._cancel_locked(reservation)
                return "shutting_down"
            self._accept_locked(reservation, converted.span_count, converted.nbytes, transport)
            now = self._clock()
            for batch, size in zip(converted.batches, converted.batch_bytes, strict=True):
                self._window.append(_Item(batch, size, now))
            self._window_spans += converted.span_count
            self._cond.notify()
            return None

    def _accept_locked(self, reservation: Reservation, spans: int, nbytes: int, transport: str) -> None:
        self._room_spans -= reservation.spans - spans
        self._room_bytes -= reservation.nbytes - nbytes
        self._held += spans
        self._ledger.accepted_locked(spans, transport)

    def cancel(self, reservation: Reservation) -> None:
        """Free a reservation that will not be committed."""
        with self._cond:
            self._cancel_locked(reservation)

    def _cancel_locked(self, reservation: Reservation) -> None:
        self._room_spans -= reservation.spans
        self._room_bytes -= reservation.nbytes

    # -- the worker's side --------------------------------------------------------------------

    def take(self, max_spans: int, linger: float, wait: float) -> Take | None:
        """Up to ``max_spans`` spans (a larger batch is split).

        Waits up to ``wait`` seconds for the first span, then up to ``linger`` more seconds for
        the take to fill. Returns an empty Take on a timeout and None once the queue is closed
        and (in memory) empty; on disk the backlog stays for the next start."""
        with self._cond:
            if not self._cond.wait_for(self._ready_locked, timeout=wait):
                return Take()
            if self._closed and (self._log is not None or not self._window):
                return None
        self._fill(max_spans)
        deadline = time.monotonic() + linger
        with self._cond:
            while self._window_spans < max_spans and not self._record_ready_locked() and not self._closed:
                remaining = deadline - time.monotonic()
                if remaining <= 0 or not self._cond.wait(timeout=remaining):
                    break
        self._fill(max_spans)
        with self._cond:
            take = self._pop_locked(max_spans)
        if self._log is not None and take:
            last = take.items[-1].end
            if last is not None:
                self._log.mark_taken(last)
        return take

    def exported(self, count: int) -> None:
        with self._cond:
            self._resolved += count
            self._ledger.exported_locked(count)

    def dropped(self, reason: str, count: int) -> None:
        if not count:
            return
        with self._cond:
            if reason == "shutdown" and self._log is not None:
                self._keep = True  # stays on disk for the next start: not dropped
                return
            self._resolved += count
            self._ledger.dropped_locked(reason, count)

    def settle(self, take: Take) -> None:
        """The worker is done with a take: its room is free; on disk, the cursor moves past it
        (unless shutdown cut it short: then it stays on disk, at least once)."""
        keep = False
        with self._cond:
            self._room_spans -= take.spans
            self._room_bytes -= take.nbytes
            self._held -= self._resolved
            self._resolved = 0
            keep, self._keep = self._keep, False
        if self._log is not None and take and not keep:
            last = take.items[-1].end
            if last is not None:
                self._log.mark_done(last)

    def close(self) -> None:
        """Refuse further requests; in memory the worker drains what is queued, then take()
        returns None; on disk it stops after the current take."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    def drain(self) -> int:
        """After the shutdown deadline: in memory, drop and count what is still queued; on disk
        the backlog stays. Returns the spans dropped."""
        with self._cond:
            if self._log is not None:
                return 0
            count = self._window_spans
            self._window.clear()
            self._window_spans = 0
            self._held -= count
            self._ledger.dropped_locked("shutdown", count)
            return count

    @property
    def closed(self) -> bool:
        with self._cond:
            return self._closed

    @property
    def held(self) -> int:
        """Spans accepted and not yet exported or dropped (queued, or in the worker's hands)."""
        with self._cond:
            return self._held_locked()

    @property
    def durable(self) -> bool:
        return self._log is not None

    def stats(self) -> QueueStats:
        with self._cond:
            oldest = self._window[0].queued_at if self._window else None
            if self._records and (oldest is None or self._records[0][0].written_ns / 1e9 < oldest):
                oldest = self._records[0][0].written_ns / 1e9
            return QueueStats(spans=self._held, room_bytes=self._room_bytes,
                              oldest_age=max(0.0, self._clock() - oldest) if oldest else 0.0,
                              disk_bytes=self._log.disk_bytes() if self._log is not None else 0)

    # -- inside -------------------------------------------------------------------------------

    def _held_locked(self) -> int:
        return self._held - self._resolved

    def _ready_locked(self) -> bool:
        return bool(self._window or self._closed or self._record_ready_locked())

    def _record_ready_locked(self) -> bool:
        """A record may be converted (and sent) only once it is durable, so the cursor never
        passes a record that a crash could still lose."""
        return bool(self._records) and self._records[0][1] <= self._durable

    def _fill(self, max_spans: int) -> None:
        """On disk: convert records into the window until it holds ``max_spans``. Only the
        worker calls this, so the records popped here are converted in order."""
        if self._log is None:
            return
        while True:
            with self._cond:
                if self._window_spans >= max_spans or not self._record_ready_locked() or self._closed:
                    return
                record = self._records.popleft()[0]
                skip, self._first_skip = self._first_skip, 0
            items = self._load(record, skip)
            with self._cond:
                self._window.extend(items)
                self._window_spans += sum(len(item.spans) for item in items)

    def _load(self, record: Record, skip: int) -> list[_Item]:
        converted = self._convert(record)
        queued_at = record.written_ns / 1e9
        if converted is None:  # unreadable now: dropped, its room freed, the cursor moves past it
            lost = record.spans - skip
            with self._cond:
                self._room_spans -= lost
                self._room_bytes -= record.nbytes
                self._held -= lost
                self._ledger.dropped_locked("corrupt", lost)
            return [_Item([], 0, queued_at, record, record.spans, record.spans)]
        total = converted.span_count
        items: list[_Item] = []
        index = 0
        for batch, size in zip(converted.batches, converted.batch_bytes, strict=True):
            start, index = index, index + len(batch)
            if index <= skip:
                continue
            item = _Item(batch, size, queued_at, record, start, total)
            if start < skip:
                item = item.split(skip - start)[1]
            items.append(item)
        return items

    def _convert(self, record: Record) -> Converted | None:
        payload = self._log.read(record) if self._log is not None else None
        if payload is None:
            logger.warning("disk queue: record at segment %d offset %d failed its checksum; dropped",
                           record.segment, record.offset)
            return None
        try:
            return convert_request(ExportTraceServiceRequest.FromString(payload))
        except DecodeError:
            logger.warning("disk queue: record at segment %d offset %d does not parse; dropped",
                           record.segment, record.offset)
            return None

    def _pop_locked(self, max_spans: int) -> Take:
        take = Take()
        room = max_spans
        while self._window and (room > 0 or not self._window[0].spans):
            item = self._window.popleft()
            if len(item.spans) > room:
                item, rest = item.split(room)
                self._window.appendleft(rest)
            take.items.append(item)
            room -= len(item.spans)
        self._window_spans -= max_spans - room
        return take

    def _recover(self, log: DiskLog) -> None:
        found = log.recovery
        spans = sum(record.spans for record in found.records) - found.skip
        nbytes = sum(record.nbytes for record in found.records)
        self._records.extend((record, 0) for record in found.records)
        self._first_skip = found.skip
        self._room_spans, self._room_bytes, self._held = spans, nbytes, spans
        self._ledger.recovered(spans, found.in_flight_spans, torn=found.torn, corrupt=found.corrupt)
        if found.records or found.torn or found.corrupt:
            logger.info("disk queue: recovered %d spans in %d records from %s (%d possibly sent "
                        "already; %d torn tails cut off, %d corrupt records skipped)",
                        spans, len(found.records), log.directory, found.in_flight_spans,
                        found.torn, found.corrupt)


@dataclass(frozen=True)
class QueueStats:
    spans: int
    room_bytes: int
    oldest_age: float
    disk_bytes: int
