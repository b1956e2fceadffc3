"""send-test-trace's build (relay.testtrace.buildkit_build) has what the /builds page needs."""

from __future__ import annotations

import random

from relay.convert import convert_request
from relay.insights import Build, Export, Step, classify

MS = 10**6


def test_the_test_build_is_a_whole_buildkit_build() -> None:
    from relay.testtrace import buildkit_build

    now = 1_800_000_000 * 10**9
    request = buildkit_build(random.Random(1), now, steps=10)
    spans = [span for batch in convert_request(request).batches for span in batch]
    items = [classify(span) for span in spans]
    (build,) = [i for i in items if isinstance(i, Build)]
    steps = [i for i in items if isinstance(i, Step)]
    assert not build.failed
    assert build.end_ns <= now
    assert {s.trace_id for s in steps} == {build.trace_id}
    assert sum(not s.cached for s in steps) == 10
    assert [s.instruction for s in steps if s.cached] == ["WORKDIR"]
    assert {"RUN", "COPY", "FROM", "internal"} <= {s.instruction for s in steps}
    assert any(span.name.startswith("cache request: ") for span in spans)
    assert sum(isinstance(i, Export) for i in items) == 1
    # an idle gap of a second or more between steps, from the timestamps alone
    intervals = sorted((s.start_ns, s.end_ns) for s in steps)
    gaps = [later[0] - max(end for _, end in intervals[:n + 1]) for n, later in enumerate(intervals[1:])]
    assert max(gaps) == 1500 * MS
    assert all(build.start_ns <= s.start_ns and s.end_ns <= build.end_ns for s in steps)
