"""``python -m bench`` (full: 3 runs, medians) or ``python -m bench --smoke`` (CI: 1 short run).

Writes ``latest.md``, ``latest.json`` and ``delivered_vs_offered.png`` to bench/results/
(smoke: bench/results/smoke/) and prints the table. Asserts no timing: a full run's table says
which targets were met; a smoke run prints its figures labelled "smoke: not a measurement" and no
verdict.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from importlib import metadata
from pathlib import Path

from bench import report, scenarios
from bench.scenarios import PhaseResult, Timing

RESULTS = Path(__file__).parent / "results"
FULL = {"runs": 3, "saturation": Timing(2, 6), "fixed": Timing(2, 8), "queue": Timing(1, 6),
        "sweep": Timing(1, 3), "rates": (2_500.0, 5_000.0, 10_000.0, 20_000.0, 40_000.0, 80_000.0),
        "collector_servers": ("naive", "relay"), "sweep_servers": ("parse-only", "naive", "relay")}
SMOKE = {"runs": 1, "saturation": Timing(0.5, 1.5), "fixed": Timing(0.5, 1.5), "queue": Timing(0.5, 2),
         "sweep": Timing(0.3, 1), "rates": (5_000.0, 20_000.0),
         "collector_servers": ("relay",), "sweep_servers": ("relay",)}
# Native vs pure side by side, agent phases only, about a minute (bench/results/native.md).
COMPARE = {"runs": 1, "saturation": Timing(1, 3), "fixed": Timing(1, 4), "queue": None, "sweep": None,
           "rates": (), "collector_servers": (), "sweep_servers": ()}


def _machine() -> str:
    model = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{os.cpu_count()} cores ({model}), Python {platform.python_version()}"


def _versions() -> dict[str, str]:
    names = ("grpcio", "protobuf", "opentelemetry-sdk", "thrift", "opentelemetry-exporter-jaeger-thrift")
    return {name: metadata.version(name) for name in names}


def one_run(plan: dict, index: int, with_sweep: bool) -> tuple[list[PhaseResult], list[PhaseResult]]:
    results: list[PhaseResult] = []
    for kind in ("parse-only", "naive", "relay-pure", "relay"):
        print(f"run {index}: {kind} ...", file=sys.stderr, flush=True)
        results += scenarios.server_phases(kind, "agent", plan["saturation"], plan["fixed"])
    for kind in plan["collector_servers"]:
        print(f"run {index}: {kind} -> HTTP collector ...", file=sys.stderr, flush=True)
        results += scenarios.server_phases(kind, "collector", plan["saturation"], plan["fixed"])
    if plan["queue"] is not None:
        print(f"run {index}: relay with a full queue ...", file=sys.stderr, flush=True)
        results.append(scenarios.queue_full(plan["queue"]))
    sweeps: list[PhaseResult] = []
    if with_sweep:
        for kind in plan["sweep_servers"]:
            print(f"run {index}: {kind} sweep ...", file=sys.stderr, flush=True)
            sweeps += scenarios.sweep(kind, plan["rates"], plan["sweep"])
    return results, sweeps


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--smoke", action="store_true", help="one short run (CI)")
    parser.add_argument("--compare", action="store_true",
                        help="native vs pure vs naive vs parse-only, agent phases only (~1 min)")
    parser.add_argument("--runs", type=int, help="number of runs (default 3, smoke 1)")
    parser.add_argument("--out", type=Path, help="results directory")
    args = parser.parse_args(argv)
    plan = dict(COMPARE if args.compare else SMOKE if args.smoke else FULL)
    runs_wanted = args.runs or plan["runs"]
    out = args.out or (RESULTS / "smoke" if args.smoke else RESULTS / "compare" if args.compare else RESULTS)
    out.mkdir(parents=True, exist_ok=True)
    began = time.monotonic()
    runs, sweeps = [], []
    for index in range(1, runs_wanted + 1):
        results, swept = one_run(plan, index, with_sweep=index == 1)
        runs.append(results)
        sweeps += swept
    summary = report.summarize(runs)
    mode = "compare" if args.compare else "smoke" if args.smoke else "full"
    if args.smoke:
        del summary["targets"]  # a noisy 2-second run is no verdict
    meta = {"mode": mode, "runs": runs_wanted, "machine": _machine(),
            "versions": _versions(), "seconds": round(time.monotonic() - began, 1)}
    table = report.markdown(summary, meta)
    (out / "latest.md").write_text(table)
    document = {"meta": meta, "summary": summary, "runs": [[r.as_dict() for r in run] for run in runs],
                "sweep": [r.as_dict() for r in sweeps]}
    (out / "latest.json").write_text(json.dumps(document, indent=2) + "\n")
    report.plot(sweeps, out / "delivered_vs_offered.png")
    print(table)
    print(f"written to {out} in {meta['seconds']}s", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
