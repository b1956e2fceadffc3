"""Decode what the exporters send with thriftpy2 and our own IDL (tests/idl), independently of the
generated code we encode with, and compare field by field with the package's decoder."""

from __future__ import annotations

from typing import Any

import pytest

from bench.jaeger_sinks import HttpCollectorSink, UdpAgentSink
from relay.exporters.agent import JaegerAgentExporter
from relay.exporters.collector import JaegerCollectorExporter
from tests.integration.test_jaeger_golden import CASES
from tests.jaeger_expectations import expected_batch
from tests.thriftpy_decode import as_plain, decode_body, decode_datagram, idl

WAIT = 10.0


@pytest.mark.parametrize("case", CASES, ids=[case.id for case in CASES])
def test_agent_datagrams_decode_the_same_independently(case: Any) -> None:
    with UdpAgentSink() as sink:
        exporter = JaegerAgentExporter("127.0.0.1", sink.port)
        for payload in exporter.encode(case.spans).payloads:
            exporter.send(payload)
        assert sink.wait_for_spans(len(case.spans), WAIT)
        exporter.shutdown()
        for data, package_batch in zip(sink.datagrams, sink.batches, strict=True):
            independent = as_plain(decode_datagram(data))
            assert independent == as_plain(package_batch)
            assert independent == as_plain(case.expected)


@pytest.mark.parametrize("case", CASES, ids=[case.id for case in CASES])
def test_collector_bodies_decode_the_same_independently(case: Any) -> None:
    with HttpCollectorSink() as sink:
        exporter = JaegerCollectorExporter(sink.url)
        for payload in exporter.encode(case.spans).payloads:
            exporter.send(payload)
        assert sink.wait_for_spans(len(case.spans), WAIT)
        exporter.shutdown()
        for request, package_batch in zip(sink.requests, sink.batches, strict=True):
            independent = as_plain(decode_body(request.body))
            assert independent == as_plain(package_batch)
            assert independent == as_plain(case.expected)


def test_as_plain_notices_a_difference() -> None:
    # The comparison can fail: a changed field is seen.
    jaeger, _agent = idl()
    one = jaeger.Tag(key="k", vType=0, vStr="a")
    other = jaeger.Tag(key="k", vType=0, vStr="b")
    assert as_plain(one) != as_plain(other)


@pytest.mark.parametrize("case", CASES, ids=[case.id for case in CASES])
def test_the_mapping_oracle_agrees_with_the_golden_table(case: Any) -> None:
    # The property tests' oracle (built from the mapping) and the hand-written golden batches are
    # two independent readings of JAEGER-MAPPING.md: they must agree on every row.
    assert as_plain(case.expected) == expected_batch(case.spans)
