#!/bin/bash
# Usage: bench/profile_native.sh  (TRACE_RELAY_PURE=1 bench/profile_native.sh for the pure relay)
# Needs py-spy (pip install py-spy). Writes /tmp/np-pyspy.txt (raw folded stacks).
# relay (native) under a steady 10,000 spans/s, 32 calls in flight; py-spy for 12 s.
cd "$(dirname "$0")/.."
.venv/bin/python -c "
import socket,sys,time
s=socket.socket(socket.AF_INET,socket.SOCK_DGRAM); s.bind(('127.0.0.1',0)); print(s.getsockname()[1], flush=True)
s.settimeout(0.5); end=time.monotonic()+40
while time.monotonic()<end:
    try: s.recv(70000)
    except OSError: pass
" > /tmp/np-sink.port &
SINK=$!
sleep 1; PORT=$(cat /tmp/np-sink.port)
.venv/bin/trace-relay --otlp-grpc-endpoint 127.0.0.1:0 --admin-endpoint 127.0.0.1:0 --jaeger-agent 127.0.0.1:$PORT 2> /tmp/np-relay.log &
RELAY=$!
for i in $(seq 50); do grep -q "admin on port" /tmp/np-relay.log && break; sleep 0.2; done
OTLP=$(grep -o "(port [0-9]*)" /tmp/np-relay.log | grep -o "[0-9]*")
.venv/bin/python -m bench.load --target 127.0.0.1:$OTLP --profile standard --duration 16 --warmup 2 --concurrency 32 --rate 10000 > /tmp/np-load.json &
LOAD=$!
sleep 3
.venv/bin/py-spy record -p $RELAY -d 12 -r 200 -f raw -o /tmp/np-pyspy.txt --nonblocking ${NATIVE_FLAG} > /tmp/np-pyspy.log 2>&1
wait $LOAD
kill -TERM $RELAY; wait $RELAY
kill $SINK 2>/dev/null
cat /tmp/np-load.json
