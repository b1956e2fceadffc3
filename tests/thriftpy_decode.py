"""Wire bytes -> plain data, decoded by thriftpy2 from our own IDL (tests/idl), independently of the
generated ``jaeger`` package the exporters encode with and ``tests/thrift_decode.py`` reads with.

``as_plain`` turns a struct into nested dicts of its IDL fields (``{"_type": "Span", ...}``), the
form ``tests/jaeger_expectations.py`` builds expectations in, so that one ``==`` compares the two.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

import thriftpy2
from thriftpy2.protocol.binary import TBinaryProtocol
from thriftpy2.protocol.compact import TCompactProtocol
from thriftpy2.thrift import TMessageType
from thriftpy2.transport.memory import TMemoryBuffer

IDL = Path(__file__).resolve().parent / "idl"
FIELDS = {
    "Tag": ("key", "vType", "vStr", "vDouble", "vBool", "vLong", "vBinary"),
    "Log": ("timestamp", "fields"),
    "SpanRef": ("refType", "traceIdLow", "traceIdHigh", "spanId"),
    "Span": ("traceIdLow", "traceIdHigh", "spanId", "parentSpanId", "operationName",
             "references", "flags", "startTime", "duration", "tags", "logs"),
    "Process": ("serviceName", "tags"),
    "Batch": ("process", "spans"),
}


@functools.cache
def idl() -> tuple[Any, Any]:
    """The (jaeger, agent) modules thriftpy2 builds from tests/idl, loaded once."""
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


def decode_datagram(data: bytes) -> Any:
    """One compact ``Agent.emitBatch`` oneway datagram -> the thriftpy2 ``Batch``."""
    protocol = TCompactProtocol(TMemoryBuffer(data))
    name, message_type, _seqid = protocol.read_message_begin()
    if (name, message_type) != ("emitBatch", TMessageType.ONEWAY):
        raise ValueError(f"not an emitBatch oneway message: {name!r} type {message_type}")
    args = idl()[1].Agent.emitBatch_args()
    protocol.read_struct(args)
    protocol.read_message_end()
    return args.batch


def decode_body(data: bytes) -> Any:
    """One binary-protocol ``Batch`` (an HTTP collector body) -> the thriftpy2 ``Batch``."""
    batch = idl()[0].Batch()
    TBinaryProtocol(TMemoryBuffer(data)).read_struct(batch)
    return batch
