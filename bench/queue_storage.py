"""The disk queue's storage engine, on evidence: the segment log (relay/disklog.py) against SQLite
in WAL mode (the standard library's sqlite3, synchronous=FULL), side by side in one run.

For each: the cost of one durable commit per Export request with 8 request threads at once (group
commit for the log; SQLite serialises its writers), the drain rate of a backlog read in order and
deleted as it goes, the process RSS while draining, and the bytes on disk after the drain.

    .venv/bin/python -m bench.queue_storage --backlog-mib 1024 --out bench/results/queue-storage.md
"""

from __future__ import annotations

import argparse
import resource
import shutil
import sqlite3
import statistics
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

from relay.disklog import DiskLog

RECORD = 64 * 1024  # a typical BuildKit export request: ~100 spans


def _rss_mib() -> float:
    text = Path("/proc/self/status").read_text()
    return int(text.split("VmRSS:")[1].split()[0]) / 1024


class LogEngine:
    name = "segment log (relay/disklog.py)"

    def __init__(self, directory: Path) -> None:
        self.log = DiskLog(directory)
        self.directory = directory

    def commit(self, payload: bytes) -> None:
        _, sequence = self.log.write(payload, 100, len(payload))
        self.log.sync(sequence)

    def drain(self, on_record: Callable[[bytes], None]) -> None:
        self.log.close()
        self.log = DiskLog(self.directory)
        records = self.log.recovery.records
        for index, record in enumerate(records):
            on_record(self.log.read(record) or b"")
            if index % 16 == 15 or index == len(records) - 1:  # a take of ~1,600 spans
                self.log.mark_done(record.end)

    def disk_bytes(self) -> int:
        return sum(p.stat().st_size for p in self.directory.iterdir())

    def close(self) -> None:
        self.log.close()


class SqliteEngine:
    name = "SQLite WAL, synchronous=FULL"

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.path = directory / "queue.db"
        self._lock = threading.Lock()
        self.db = self._connect()
        self.db.execute("CREATE TABLE IF NOT EXISTS records (id INTEGER PRIMARY KEY, spans INT, body BLOB)")

    def _connect(self) -> sqlite3.Connection:
        db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        db.execute("PRAGMA auto_vacuum=INCREMENTAL")  # first: only an empty database takes it
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=FULL")
        return db

    def commit(self, payload: bytes) -> None:
        with self._lock:  # one connection: sqlite3 serialises writers anyway
            self.db.execute("INSERT INTO records (spans, body) VALUES (100, ?)", (payload,))

    def drain(self, on_record: Callable[[bytes], None]) -> None:
        last = 0
        while True:
            rows = self.db.execute("SELECT id, body FROM records WHERE id > ? ORDER BY id LIMIT 16",
                                   (last,)).fetchall()
            if not rows:
                break
            for row_id, body in rows:
                on_record(body)
                last = row_id
            self.db.execute("DELETE FROM records WHERE id <= ?", (last,))
        self.db.execute("PRAGMA incremental_vacuum").fetchall()  # it frees pages as rows are stepped
        self.db.execute("PRAGMA wal_checkpoint(TRUNCATE)")

    def disk_bytes(self) -> int:
        return sum(p.stat().st_size for p in self.directory.iterdir())

    def close(self) -> None:
        self.db.close()


def measure(engine_class: type[LogEngine] | type[SqliteEngine], backlog_mib: int, base: Path) -> dict[str, float]:
    directory = base / "last"
    shutil.rmtree(directory, ignore_errors=True)
    directory.mkdir(parents=True)
    engine = engine_class(directory)
    payload = bytes(range(256)) * (RECORD // 256)
    latencies: list[float] = []
    lock = threading.Lock()

    def writer(count: int) -> None:
        mine = []
        for _ in range(count):
            begin = time.perf_counter()
            engine.commit(payload)
            mine.append(time.perf_counter() - begin)
        with lock:
            latencies.extend(mine)

    threads = [threading.Thread(target=writer, args=(250,)) for _ in range(8)]
    begin = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    commit_seconds = time.perf_counter() - begin
    remaining = backlog_mib * 1024 * 1024 // RECORD - 2000
    for _ in range(max(0, remaining)):  # the rest of the backlog, one writer
        engine.commit(payload)
    before = engine.disk_bytes()
    peak = [_rss_mib()]
    drained = [0]

    def on_record(body: bytes) -> None:
        drained[0] += len(body)
        if drained[0] % (64 * RECORD) == 0:
            peak[0] = max(peak[0], _rss_mib())

    begin = time.perf_counter()
    engine.drain(on_record)
    drain_seconds = time.perf_counter() - begin
    after = engine.disk_bytes()
    engine.close()
    latencies.sort()
    return {
        "commits_per_s": 2000 / commit_seconds,
        "commit_p50_ms": statistics.median(latencies) * 1000,
        "commit_p99_ms": latencies[int(len(latencies) * 0.99)] * 1000,
        "disk_mib_before": before / 2**20,
        "drain_mib_per_s": drained[0] / 2**20 / drain_seconds,
        "rss_while_draining_mib": peak[0],
        "disk_mib_after_drain": after / 2**20,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backlog-mib", type=int, default=1024)
    parser.add_argument("--dir", type=Path, default=None, help="where to write (default: a temp dir)")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    base = args.dir or Path(tempfile.mkdtemp(prefix="queue-storage-"))
    rows = []
    for engine in (LogEngine, SqliteEngine):
        result = measure(engine, args.backlog_mib, base)
        shutil.rmtree(base / "last", ignore_errors=True)
        rows.append((engine.name, result))
        print(engine.name, {k: round(v, 2) for k, v in result.items()}, flush=True)
    keys = list(rows[0][1])
    lines = [f"# Disk queue storage: {args.backlog_mib} MiB backlog of {RECORD // 1024} KiB records, "
             f"8 writer threads (maxrss {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024} MiB)", "",
             "| engine | " + " | ".join(keys) + " |", "|---" * (len(keys) + 1) + "|"]
    lines += [f"| {name} | " + " | ".join(f"{r[k]:.2f}" for k in keys) + " |" for name, r in rows]
    text = "\n".join(lines) + "\n"
    print(text)
    if args.out:
        args.out.write_text(text)


if __name__ == "__main__":
    main()
