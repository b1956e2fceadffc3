# The Jaeger agent's UDP service (jaegertracing/jaeger-idl thrift/agent.thrift), emitBatch only.

include "jaeger.thrift"

namespace py jaeger.agent

service Agent {
  oneway void emitBatch(1: jaeger.Batch batch)
}
