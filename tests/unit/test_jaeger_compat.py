"""relay.exporters.jaeger_compat: importability, fastbinary specs, fresh buffers."""

from __future__ import annotations

import importlib
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from thrift.protocol import fastbinary

from bench import thrift_decode
from relay.exporters import jaeger_compat as compat
from relay.exporters.jaeger_compat import jaeger

# Only importable after the shim above has run.
AgentClientUDP = importlib.import_module("opentelemetry.exporter.jaeger.thrift.send").AgentClientUDP

REPO = Path(__file__).resolve().parents[2]
I64_MAX = 2**63 - 1
I64_MIN = -(2**63)


def rich_batch() -> Any:
    tags = [
        jaeger.Tag(key="s", vType=jaeger.TagType.STRING, vStr="héllo ☃"),
        jaeger.Tag(key="d", vType=jaeger.TagType.DOUBLE, vDouble=-1.25e300),
        jaeger.Tag(key="t", vType=jaeger.TagType.BOOL, vBool=True),
        jaeger.Tag(key="f", vType=jaeger.TagType.BOOL, vBool=False),
        jaeger.Tag(key="l", vType=jaeger.TagType.LONG, vLong=I64_MIN),
        jaeger.Tag(key="L", vType=jaeger.TagType.LONG, vLong=I64_MAX),
        jaeger.Tag(key="b", vType=jaeger.TagType.BINARY, vBinary=bytes(range(256))),
        jaeger.Tag(key="", vType=jaeger.TagType.STRING, vStr=""),
    ]
    spans = [
        jaeger.Span(
            traceIdLow=I64_MIN + i, traceIdHigh=I64_MAX - i, spanId=-1 - i, parentSpanId=i,
            operationName=f"op{i}", flags=i % 2, startTime=1_700_000_000_000_000 + i, duration=i,
            tags=tags[: i % 9] or None,
            logs=[jaeger.Log(timestamp=i, fields=tags[:3])] * (i % 3),
            references=[jaeger.SpanRef(refType=i % 2, traceIdLow=1, traceIdHigh=2, spanId=3)],
        )
        for i in range(40)
    ]
    return jaeger.Batch(process=jaeger.Process(serviceName="svc", tags=tags), spans=spans)


def test_package_imports_on_installed_sdk() -> None:
    # A fresh interpreter, with warnings as errors, importing only through the shim.
    code = (
        "import warnings; warnings.simplefilter('error');"
        "import relay.exporters.jaeger_compat as c;"
        "import opentelemetry.exporter.jaeger.thrift as p;"
        "import opentelemetry.sdk.environment_variables as e;"
        "assert e.OTEL_EXPORTER_JAEGER_ENDPOINT == 'OTEL_EXPORTER_JAEGER_ENDPOINT';"
        "assert c.jaeger.Batch.__module__.startswith('opentelemetry.exporter.jaeger');"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            timeout=60, check=False, cwd=REPO)
    assert result.returncode == 0, result.stderr


def test_missing_names_are_defined_only_when_missing(monkeypatch: pytest.MonkeyPatch) -> None:
    env = importlib.import_module("opentelemetry.sdk.environment_variables")
    monkeypatch.setattr(env, "OTEL_EXPORTER_JAEGER_USER", "kept", raising=False)
    monkeypatch.delattr(env, "OTEL_EXPORTER_JAEGER_TIMEOUT", raising=False)
    importlib.reload(compat)
    assert env.OTEL_EXPORTER_JAEGER_USER == "kept"
    assert env.OTEL_EXPORTER_JAEGER_TIMEOUT == "OTEL_EXPORTER_JAEGER_TIMEOUT"


def test_fastbinary_is_available() -> None:
    assert compat.ACCELERATED


def test_generated_specs_are_rejected_by_fastbinary_as_is() -> None:
    # The trap the shim exists for: the Thrift 0.10 tuple form does not work with fastbinary.
    batch = rich_batch()
    with pytest.raises(TypeError):
        fastbinary.encode_compact(batch, [jaeger.Batch, jaeger.Batch.thrift_spec])


def test_specs_cover_every_struct_and_package_classes_are_untouched() -> None:
    for cls in (jaeger.Tag, jaeger.Log, jaeger.SpanRef, jaeger.Span, jaeger.Process, jaeger.Batch,
                compat.agent.emitBatch_args):
        assert cls in compat.SPECS
    field = jaeger.Batch.thrift_spec[1]
    assert isinstance(field[3], tuple)  # still the generated form
    assert isinstance(compat.SPECS[jaeger.Batch][1][3], list)


@pytest.mark.parametrize("struct", ["batch", "span", "process", "tag"])
def test_accelerated_equals_pure_python(struct: str) -> None:
    batch = rich_batch()
    obj = {"batch": batch, "span": batch.spans[8], "process": batch.process,
           "tag": batch.process.tags[6]}[struct]
    assert compat.encode_compact(obj) == compat.encode_compact_pure(obj)
    assert compat.encode_binary(obj) == compat.encode_binary_pure(obj)


def test_emit_batch_message_is_what_agent_client_udp_writes() -> None:
    batch = rich_batch()
    client = AgentClientUDP("127.0.0.1", 9, max_packet_size=10)  # too small: it never sends
    client.emit(batch)
    assert compat.emit_batch_message(batch) == client.buffer.getvalue()


def test_decoders_round_trip() -> None:
    batch = rich_batch()
    assert thrift_decode.decode_compact_message(compat.emit_batch_message(batch)) == batch
    assert thrift_decode.decode_binary_batch(compat.encode_binary(batch)) == batch


def test_decoder_rejects_trailing_bytes_and_other_messages() -> None:
    batch = rich_batch()
    with pytest.raises(ValueError, match="trailing"):
        thrift_decode.decode_compact_message(compat.emit_batch_message(batch) + b"\x00")
    other = compat.EMIT_BATCH_HEADER.replace(b"emitBatch", b"emitBatcX")
    with pytest.raises(ValueError, match="emitBatch"):
        thrift_decode.decode_compact_message(other + b"\x00")


def _bad_batch(value: int) -> Any:
    tag = jaeger.Tag(key="n", vType=jaeger.TagType.LONG, vLong=value)
    span = jaeger.Span(traceIdLow=1, traceIdHigh=2, spanId=3, parentSpanId=0, operationName="x",
                       flags=1, startTime=1, duration=1, tags=[tag])
    return jaeger.Batch(process=jaeger.Process(serviceName="s"), spans=[span])


@pytest.mark.parametrize("value", [2**63, I64_MIN - 1, 2**70])
@pytest.mark.parametrize("encode", [compat.encode_compact, compat.encode_binary,
                                    compat.encode_compact_pure, compat.encode_binary_pure,
                                    compat.emit_batch_message])
def test_out_of_range_raises_an_encode_error(encode: Any, value: int) -> None:
    with pytest.raises(compat.ENCODE_ERRORS):
        encode(_bad_batch(value))


def test_stock_client_is_poisoned_but_our_path_recovers() -> None:
    good = rich_batch()
    client = AgentClientUDP("127.0.0.1", 9, max_packet_size=10)
    with pytest.raises(compat.ENCODE_ERRORS):
        client.emit(_bad_batch(2**63))
    with pytest.raises(AssertionError):  # the stock trap: every later call fails
        client.emit(good)

    with pytest.raises(compat.ENCODE_ERRORS):
        compat.emit_batch_message(_bad_batch(2**63))
    message = compat.emit_batch_message(good)
    assert thrift_decode.decode_compact_message(message) == good
    assert compat.encode_compact_pure(good) == compat.encode_compact(good)
