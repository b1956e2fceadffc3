"""Side-by-side benchmark of trace-relay, the naive design, and a parse-only ceiling.

``python -m bench`` (full: medians of 3 runs) or ``python -m bench --smoke`` (CI: short, one run).
The pieces are importable on their own: :mod:`bench.load` (load generator), :mod:`bench.sinks`
(counting Jaeger sinks), :mod:`bench.servers` (servers under test as subprocesses).
"""
