"""The one compatibility shim for ``opentelemetry-exporter-jaeger-thrift`` 1.21.0, its last release.

We use only the package's generated Thrift types (Thrift 0.10 output); never its exporter, its
translator or its transports. Three problems are handled here and nowhere else:

1. **Import trap.** The package's ``__init__`` imports seven ``OTEL_EXPORTER_JAEGER_*`` names from
   ``opentelemetry.sdk.environment_variables``; opentelemetry-sdk 1.40 removed them, so even
   ``import opentelemetry.exporter.jaeger.thrift.gen.jaeger`` fails. We define each missing name
   (its value is its own name, as the SDK did) before the first import; existing names are kept.
   The package's ``JaegerExporter`` class is ``@deprecated``; we never instantiate it, so no
   DeprecationWarning is emitted.
2. **fastbinary specs.** Thrift 0.10 wrote struct type arguments as tuples
   ``(Cls, Cls.thrift_spec)``; the C-accelerated ``thrift.protocol.fastbinary`` of current
   Thrift wants a two-item *list* ``[Cls, spec]`` and otherwise raises
   ``TypeError: expecting list of size 2 for struct args``. :data:`SPECS` holds adapted copies
   of the specs, built once at import; the package's classes are not modified, so their
   pure-Python ``read``/``write`` keep working.
3. **Shared buffer.** The package's ``AgentClientUDP`` reuses one ``TMemoryBuffer`` and
   protocol; after one failed encode (e.g. an i64 out of range) the protocol is left mid-struct
   and every later call raises ``AssertionError``. :func:`emit_batch_message` encodes into
   fresh bytes on every call.

Also note: the package's ``gen/__init__.py`` appends its ``gen`` directory to ``sys.path`` and
``gen/agent/ttypes.py`` does ``import jaeger.ttypes``, so a second copy of every Jaeger class
exists (``jaeger.ttypes.Batch is not gen.jaeger.ttypes.Batch``; instances of the two never
compare equal). ``agent.emitBatch_args`` refers to that copy. Our specs and decoders use only
the canonical classes re-exported here as :data:`jaeger`, so what we encode and decode compares.
"""

from __future__ import annotations

import struct
from typing import Any

import opentelemetry.sdk.environment_variables as _sdk_env
from thrift.protocol import TBinaryProtocol, TCompactProtocol
from thrift.protocol.TProtocol import TProtocolException
from thrift.Thrift import TMessageType, TType
from thrift.transport import TTransport

_REMOVED_SDK_NAMES = (
    "OTEL_EXPORTER_JAEGER_AGENT_HOST",
    "OTEL_EXPORTER_JAEGER_AGENT_PORT",
    "OTEL_EXPORTER_JAEGER_AGENT_SPLIT_OVERSIZED_BATCHES",
    "OTEL_EXPORTER_JAEGER_ENDPOINT",
    "OTEL_EXPORTER_JAEGER_PASSWORD",
    "OTEL_EXPORTER_JAEGER_TIMEOUT",
    "OTEL_EXPORTER_JAEGER_USER",
)
for _name in _REMOVED_SDK_NAMES:
    if not hasattr(_sdk_env, _name):
        setattr(_sdk_env, _name, _name)

# These imports must follow the patch above.
from opentelemetry.exporter.jaeger.thrift.gen.agent import Agent as _agent  # noqa: E402
from opentelemetry.exporter.jaeger.thrift.gen.jaeger import ttypes as _jaeger  # noqa: E402

# The generated modules are untyped; expose them as Any so strict typing stays quiet downstream.
jaeger: Any = _jaeger  # Tag, TagType, Log, SpanRef, SpanRefType, Span, Process, Batch
agent: Any = _agent  # emitBatch_args, Client

try:
    from thrift.protocol import fastbinary as _fastbinary
except ImportError:  # pragma: no cover - depends on how thrift was built
    _fastbinary = None

ACCELERATED = _fastbinary is not None

# Exceptions that mean "this object cannot be encoded" (a value out of range, a wrong type, a string
# that is not valid UTF-8), whichever encoder is used.
ENCODE_ERRORS: tuple[type[Exception], ...] = (
    OverflowError, TypeError, ValueError, struct.error, TProtocolException,
)

STRUCTS: tuple[type[Any], ...] = (
    jaeger.Tag, jaeger.Log, jaeger.SpanRef, jaeger.Span, jaeger.Process, jaeger.Batch,
    jaeger.BatchSubmitResponse, agent.emitBatch_args,
)


def _canonical(cls: type[Any]) -> type[Any]:
    """Map the stray ``jaeger.ttypes`` copy of a class to the canonical one (see module doc)."""
    if cls.__module__ == "jaeger.ttypes":
        return getattr(jaeger, cls.__name__)  # type: ignore[no-any-return]
    return cls


def _adapt_args(ttype: int, args: Any, specs: dict[type[Any], Any]) -> Any:
    if ttype == TType.STRUCT:
        cls = _canonical(args[0])
        return [cls, _adapt_struct(cls, specs)]
    if ttype in (TType.LIST, TType.SET):
        elem_type, elem_args, *rest = args
        return (elem_type, _adapt_args(elem_type, elem_args, specs), *rest)
    if ttype == TType.MAP:
        ktype, kargs, vtype, vargs, *rest = args
        return (ktype, _adapt_args(ktype, kargs, specs), vtype, _adapt_args(vtype, vargs, specs),
                *rest)
    return args


def _adapt_struct(cls: type[Any], specs: dict[type[Any], Any]) -> Any:
    if cls not in specs:
        specs[cls] = tuple(
            None if field is None
            else (*field[:3], _adapt_args(field[1], field[3], specs), *field[4:])
            for field in cls.thrift_spec
        )
    return specs[cls]


def _adapted_specs() -> dict[type[Any], Any]:
    specs: dict[type[Any], Any] = {}
    for cls in STRUCTS:
        _adapt_struct(cls, specs)
    return specs


# class -> its thrift_spec in the form fastbinary accepts. Built once; never mutated afterwards.
SPECS = _adapted_specs()


def _pure(obj: Any, protocol_class: Any) -> bytes:
    buffer = TTransport.TMemoryBuffer()
    obj.write(protocol_class(buffer))
    return bytes(buffer.getvalue())


def encode_compact_pure(obj: Any) -> bytes:
    """Compact-protocol bytes of one struct, pure-Python encoder, fresh buffer."""
    return _pure(obj, TCompactProtocol.TCompactProtocol)


def encode_binary_pure(obj: Any) -> bytes:
    """Binary-protocol bytes of one struct, pure-Python encoder, fresh buffer."""
    return _pure(obj, TBinaryProtocol.TBinaryProtocol)


def encode_compact(obj: Any) -> bytes:
    """Compact-protocol bytes of one struct; raises one of :data:`ENCODE_ERRORS` on bad values."""
    if _fastbinary is None:  # pragma: no cover - depends on how thrift was built
        return encode_compact_pure(obj)
    cls = type(obj)
    return bytes(_fastbinary.encode_compact(obj, [cls, SPECS[cls]]))


def encode_binary(obj: Any) -> bytes:
    """Binary-protocol bytes of one struct; raises one of :data:`ENCODE_ERRORS` on bad values."""
    if _fastbinary is None:  # pragma: no cover - depends on how thrift was built
        return encode_binary_pure(obj)
    cls = type(obj)
    return bytes(_fastbinary.encode_binary(obj, [cls, SPECS[cls]]))


def _emit_batch_header() -> bytes:
    buffer = TTransport.TMemoryBuffer()
    protocol = TCompactProtocol.TCompactProtocol(buffer)
    protocol.writeMessageBegin("emitBatch", TMessageType.ONEWAY, 0)
    return bytes(buffer.getvalue())


# The compact message header the package's agent.Client writes for emitBatch (seqid 0).
EMIT_BATCH_HEADER = _emit_batch_header()


def emit_batch_message(batch: Any) -> bytes:
    """The UDP datagram ``AgentClientUDP.emit`` would send for ``batch``, built in fresh bytes."""
    return EMIT_BATCH_HEADER + encode_compact(agent.emitBatch_args(batch=batch))
