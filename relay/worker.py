"""The one exporter worker: the only thread that ever calls the exporter.

The exporter is built before the thread starts and is then used, and shut down, only here; no
lock is needed because no second thread exists. The loop cannot die: every export is wrapped and
every failure is counted by reason. Waits are ``Event.wait`` so shutdown can cut them short.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan

from relay.exporters.base import Exporter, ExportError, Payload
from relay.metrics import Metrics
from relay.spanqueue import SpanBatch, SpanQueue, Take

logger = logging.getLogger(__name__)

THREAD_NAME = "trace-relay-exporter"
ABORT_GRACE = 1.0  # seconds past the shutdown deadline for the worker to notice the abort
LOOP_ERROR_PAUSE = 1.0  # seconds the loop rests after an unexpected error, so a bug cannot spin


@dataclass(frozen=True)
class RetryPolicy:
    """Exponential backoff with jitter, bounded in total time (as the Collector's retry_on_failure)."""

    max_elapsed: float = 60.0
    initial: float = 0.5
    multiplier: float = 1.5
    max_interval: float = 10.0
    jitter: float = 0.5

    @property
    def forever(self) -> bool:
        """``--retry-max-elapsed 0``: retry until Jaeger takes it (the Collector's convention)."""
        return self.max_elapsed == 0

    @property
    def longest_delay(self) -> float:
        """The longest wait between two attempts."""
        return self.max_interval * (1 + self.jitter)

    def delay(self, attempt: int, rng: random.Random) -> float:
        base = min(self.initial * self.multiplier**attempt, self.max_interval)
        return base * (1 + self.jitter * (2 * rng.random() - 1))


class _RateLimitedLog:
    """At most one warning per key per interval, with a count of what was suppressed."""

    def __init__(self, interval: float = 10.0) -> None:
        self._interval = interval
        self._last: dict[str, float] = {}
        self._suppressed: dict[str, int] = {}

    def warning(self, key: str, msg: str, *args: object) -> None:
        now = time.monotonic()
        if now - self._last.get(key, -self._interval) < self._interval:
            self._suppressed[key] = self._suppressed.get(key, 0) + 1
            return
        suppressed = self._suppressed.pop(key, 0)
        self._last[key] = now
        if suppressed:
            logger.warning("%s (%d similar messages suppressed)", msg % args, suppressed)
        else:
            logger.warning(msg, *args)


class Worker:
    def __init__(self, queue: SpanQueue, exporter: Exporter, metrics: Metrics, *,
                 max_batch_size: int, batch_timeout: float, retry: RetryPolicy,
                 rng: random.Random | None = None,
                 observers: Sequence[Callable[[Sequence[ReadableSpan]], None]] = ()) -> None:
        self._observers = tuple(observers)
        self._queue = queue
        self._exporter = exporter
        self._metrics = metrics
        self._ledger = metrics.ledger
        self._max_batch_size = max_batch_size
        self._batch_timeout = batch_timeout
        self._retry = retry
        self._rng = rng or random.Random()  # noqa: S311 - jitter, not security
        self._abort = threading.Event()
        self._deadline = float("inf")
        self._log = _RateLimitedLog()
        self._progress = time.monotonic()
        self._thread = threading.Thread(target=self._run, name=THREAD_NAME, daemon=True)

    def start(self) -> None:
        self._thread.start()

    def is_alive(self) -> bool:
        return self._thread.is_alive()

    def idle_for(self) -> float:
        """Seconds since the worker last made progress (a loop turn, a send attempt, a retry)."""
        return time.monotonic() - self._progress

    def _beat(self) -> None:
        self._progress = time.monotonic()  # one float store: safe to read from any thread

    def stop(self, timeout: float) -> bool:
        """Close the queue and let the worker drain for up to ``timeout`` seconds.

        Past the deadline, retries are cut short and what remains is dropped and counted as
        ``shutdown``. Returns True when the worker finished (and shut the exporter down).
        """
        self._deadline = time.monotonic() + timeout
        self._queue.close()
        self._thread.join(timeout)
        if self._thread.is_alive():
            self._abort.set()
            # Retries stop at once; a send in progress may take up to the exporter's own
            # timeout, and the process does not wait for it beyond this short grace.
            self._thread.join(ABORT_GRACE)
        return not self._thread.is_alive()

    # -- the worker thread ------------------------------------------------------------------

    def _run(self) -> None:
        try:
            while self._turn():
                pass
        finally:
            self._shutdown_exporter()

    def _turn(self) -> bool:
        """One guarded loop turn; False once the queue is closed and drained."""
        self._beat()
        try:
            take = self._queue.take(self._max_batch_size, self._batch_timeout, wait=1.0)
            if take is None:
                return False
            if take:
                self._beat()  # spans just arrived to an idle worker: that is not a stall
                self._process(take)
        except Exception:  # the loop must not die
            logger.exception("unexpected error in the exporter worker loop")
            self._metrics.worker_errors.inc()
            if self._abort.wait(LOOP_ERROR_PAUSE):
                return False
        return True

    def _process(self, take: Take) -> None:
        try:
            try:
                groups = _group_by_resource(take.batches)
            except Exception:  # the loop must not die, and the spans are counted
                logger.exception("could not group %d spans by resource; dropped", take.spans)
                self._queue.dropped("export_error", take.spans)
                return
            for spans in groups:
                try:
                    if self._abort.is_set():
                        self._queue.dropped("shutdown", len(spans))
                    else:
                        self._export(spans)
                except Exception:  # the loop must not die
                    logger.exception("unexpected error exporting %d spans; dropped", len(spans))
                    self._queue.dropped("export_error", len(spans))
        finally:
            self._queue.settle(take)

    def _export(self, spans: list[ReadableSpan]) -> None:
        self._metrics.batch_size.observe(len(spans))
        self._observe(spans)
        try:
            encoded = self._exporter.encode(spans)
        except Exception:
            logger.exception("could not encode %d spans; dropped", len(spans))
            self._queue.dropped("encode_error", len(spans))
            return
        for reason, count in encoded.dropped.items():
            self._log.warning(f"drop-{reason}", "dropped %d spans: %s", count, reason)
            self._queue.dropped(reason, count)
        for payload in encoded.payloads:
            self._deliver(payload)

    def _observe(self, spans: list[ReadableSpan]) -> None:
        for observer in self._observers:
            try:
                observer(spans)
            except Exception:  # noqa: BLE001 - an insight error never costs a span
                self._log.warning("observer", "observer %r failed on %d spans", observer, len(spans))

    def _deliver(self, payload: Payload) -> None:
        give_up_at = float("inf") if self._retry.forever else time.monotonic() + self._retry.max_elapsed
        attempt = 0
        while True:
            error = self._send_once(payload)
            if error is None:
                self._queue.exported(payload.span_count)
                return
            delay = self._retry.delay(attempt, self._rng)
            reason = self._give_up_reason(error, time.monotonic() + delay, give_up_at)
            self._ledger.send_failed(error.reason, payload.span_count, retrying=reason is None)
            if reason is not None:
                self._log.warning(f"give-up-{reason}", "dropped %d spans (%s) after: %s",
                                  payload.span_count, reason, error)
                self._queue.dropped(reason, payload.span_count)
                return
            self._log.warning(f"retry-{error.reason}", "export failed (%s); retrying in %.1fs",
                              error, delay)
            attempt += 1
            self._beat()
            if self._abort.wait(delay):
                self._queue.dropped("shutdown", payload.span_count)
                return

    def _send_once(self, payload: Payload) -> ExportError | None:
        self._beat()
        begin = time.perf_counter()
        try:
            self._exporter.send(payload)
        except ExportError as exc:
            return exc
        except Exception as exc:  # an exporter bug must not kill the worker
            logger.exception("unexpected error from exporter %s", self._exporter.name)
            return ExportError("unexpected", repr(exc), retryable=False)
        finally:
            self._metrics.send_duration.observe(time.perf_counter() - begin)
            self._beat()
        return None

    def _give_up_reason(self, error: ExportError, next_try: float, give_up_at: float) -> str | None:
        """The drop reason when the payload must be given up, None to retry it."""
        if not error.retryable:
            return "not_retryable"
        if self._abort.is_set() or next_try > self._deadline:
            return "shutdown"
        if next_try > give_up_at:
            return "retry_exhausted"
        return None

    def _shutdown_exporter(self) -> None:
        try:
            self._exporter.shutdown()
        except Exception:
            logger.exception("exporter shutdown failed")


def _group_by_resource(batches: Iterable[SpanBatch]) -> list[list[ReadableSpan]]:
    """Merge batches whose resources are the same; never mix two resources in one export.

    "The same" includes each value's type: Python's ``1 == True == 1.0`` must not merge an int
    attribute with a bool one (Resource.__eq__ would)."""
    groups: dict[tuple[object, ...], list[ReadableSpan]] = {}
    for batch in batches:
        groups.setdefault(_resource_key(batch[0].resource), []).extend(batch)
    return list(groups.values())


def _resource_key(resource: Resource) -> tuple[object, ...]:
    attributes = resource.attributes
    return (resource.schema_url, *sorted((key, type(value).__name__, repr(value))
                                         for key, value in attributes.items()))
