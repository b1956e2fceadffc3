"""Test-only decoders of what the exporters put on the wire, with the pure-Python Thrift readers.

Kept out of ``relay/`` (which ships no test code) and self-contained apart from the generated Jaeger
types re-exported by ``relay.exporters.jaeger_compat``; ``bench/`` does not import it.
"""

from __future__ import annotations

from typing import Any

from thrift.protocol import TBinaryProtocol, TCompactProtocol
from thrift.Thrift import TMessageType, TType
from thrift.transport import TTransport

from relay.exporters.jaeger_compat import jaeger


def _read_emit_batch_args(protocol: Any) -> Any:
    """Read ``emitBatch_args`` into a canonical :class:`jaeger.Batch` (not the stray copy)."""
    batch = None
    protocol.readStructBegin()
    while True:
        _name, field_type, field_id = protocol.readFieldBegin()
        if field_type == TType.STOP:
            break
        if field_id == 1 and field_type == TType.STRUCT:
            batch = jaeger.Batch()
            batch.read(protocol)
        else:
            protocol.skip(field_type)
        protocol.readFieldEnd()
    protocol.readStructEnd()
    if batch is None:
        raise ValueError("emitBatch message without a batch")
    return batch


def decode_compact_message(data: bytes) -> Any:
    """Decode one ``Agent.emitBatch`` datagram with the pure-Python reader -> ``jaeger.Batch``.

    Raises ``ValueError`` if it is not an emitBatch oneway message or has trailing bytes.
    """
    buffer = TTransport.TMemoryBuffer(data)
    protocol = TCompactProtocol.TCompactProtocol(buffer)
    name, message_type, _seqid = protocol.readMessageBegin()
    if name != "emitBatch" or message_type != TMessageType.ONEWAY:
        raise ValueError(f"not an emitBatch oneway message: {name!r} type {message_type}")
    batch = _read_emit_batch_args(protocol)
    protocol.readMessageEnd()
    _check_consumed(buffer, len(data))
    return batch


def decode_binary_batch(data: bytes) -> Any:
    """Decode one binary-protocol ``Batch`` (an HTTP collector body) with the pure-Python reader."""
    buffer = TTransport.TMemoryBuffer(data)
    batch = jaeger.Batch()
    batch.read(TBinaryProtocol.TBinaryProtocol(buffer))
    _check_consumed(buffer, len(data))
    return batch


def _check_consumed(buffer: Any, size: int) -> None:
    if buffer._buffer.tell() != size:
        raise ValueError(f"trailing bytes: read {buffer._buffer.tell()} of {size}")
