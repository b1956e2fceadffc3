"""Decode what the exporters send with thriftpy2 and our own IDL (tests/idl), independently of the
generated code we encode with, and compare field by field with the package's decoder."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import thriftpy2
from thriftpy2.protocol.binary import TBinaryProtocol
from thriftpy2.protocol.compact import TCompactProtocol
from thriftpy2.thrift import TMessageType
from thriftpy2.transport.memory import TMemoryBuffer

from relay.exporters.agent import JaegerAgentExporter
from relay.exporters.collector import JaegerCollectorExporter
from tests.integration.test_jaeger_golden import CASES
from tests.jaeger_sinks import HttpCollectorSink, UdpAgentSink

IDL = Path(__file__).resolve().parents[1] / "idl"
WAIT = 10.0
FIELDS = {
    "Tag": ("key", "vType", "vStr", "vDouble", "vBool", "vLong", "vBinary"),
    "Log": ("timestamp", "fields"),
    "SpanRef": ("refType", "traceIdLow", "traceIdHigh", "spanId"),
    "Span": ("traceIdLow", "traceIdHigh", "spanId", "parentSpanId", "operationName",
             "references", "flags", "startTime", "duration", "tags", "logs"),
    "Process": ("serviceName", "tags"),
    "Batch": ("process", "spans"),
}


@pytest.fixture(scope="module")
def idl() -> Any:
    jaeger = thriftpy2.load(str(IDL / "jaeger.thrift"), module_name="idl_jaeger_thrift")
    agent = thriftpy2.load(str(IDL / "agent.thrift"), module_name="idl_agent_thrift",
                           include_dirs=[str(IDL)])
    return jaeger, agent


def as_plain(obj: Any) -> Any:
    """A thrift struct (either implementation) -> nested dicts/lists of its IDL fields."""
    if isinstance(obj, list):
        return [as_plain(item) for item in obj]
    name = type(obj).__name__
    if name in FIELDS:
        return {"_type": name, **{f: as_plain(getattr(obj, f)) for f in FIELDS[name]}}
    return obj


def decode_datagram(agent: Any, data: bytes) -> Any:
    protocol = TCompactProtocol(TMemoryBuffer(data))
    name, message_type, _seqid = protocol.read_message_begin()
    assert (name, message_type) == ("emitBatch", TMessageType.ONEWAY)
    args = agent.Agent.emitBatch_args()
    protocol.read_struct(args)
    protocol.read_message_end()
    return args.batch


def decode_body(jaeger: Any, data: bytes) -> Any:
    batch = jaeger.Batch()
    TBinaryProtocol(TMemoryBuffer(data)).read_struct(batch)
    return batch


@pytest.mark.parametrize("case", CASES, ids=[case.id for case in CASES])
def test_agent_datagrams_decode_the_same_independently(case: Any, idl: Any) -> None:
    _jaeger, agent = idl
    with UdpAgentSink() as sink:
        exporter = JaegerAgentExporter("127.0.0.1", sink.port)
        for payload in exporter.encode(case.spans).payloads:
            exporter.send(payload)
        assert sink.wait_for_spans(len(case.spans), WAIT)
        exporter.shutdown()
        for data, package_batch in zip(sink.datagrams, sink.batches, strict=True):
            independent = as_plain(decode_datagram(agent, data))
            assert independent == as_plain(package_batch)
            assert independent == as_plain(case.expected)


@pytest.mark.parametrize("case", CASES, ids=[case.id for case in CASES])
def test_collector_bodies_decode_the_same_independently(case: Any, idl: Any) -> None:
    jaeger, _agent = idl
    with HttpCollectorSink() as sink:
        exporter = JaegerCollectorExporter(sink.url)
        for payload in exporter.encode(case.spans).payloads:
            exporter.send(payload)
        assert sink.wait_for_spans(len(case.spans), WAIT)
        exporter.shutdown()
        for request, package_batch in zip(sink.requests, sink.batches, strict=True):
            independent = as_plain(decode_body(jaeger, request.body))
            assert independent == as_plain(package_batch)
            assert independent == as_plain(case.expected)


def test_as_plain_notices_a_difference(idl: Any) -> None:
    # The comparison can fail: a changed field is seen.
    jaeger, _agent = idl
    one = jaeger.Tag(key="k", vType=0, vStr="a")
    other = jaeger.Tag(key="k", vType=0, vStr="b")
    assert as_plain(one) != as_plain(other)
