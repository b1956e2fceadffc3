# syntax=docker/dockerfile:1
# trace-relay: OTLP/gRPC (4317) and OTLP/HTTP (4318) in, Jaeger thrift out; admin HTTP (8888): /metrics /healthz /readyz.
# Build:  docker build -t trace-relay:0.1.0 .
# Runs as uid 10001 and needs nothing writable (readOnlyRootFilesystem works; /tmp is optional).

ARG PYTHON_VERSION=3.12

FROM python:${PYTHON_VERSION}-slim AS build
# The native accelerator (relay/native/*.c) is compiled here; the slim image has the Python
# headers but no C compiler. Only this stage gets one: the runtime stage installs the built wheel.
RUN if ! command -v gcc >/dev/null; then \
        apt-get update \
        && apt-get install --yes --no-install-recommends gcc libc6-dev \
        && rm -rf /var/lib/apt/lists/*; \
    fi
WORKDIR /src
COPY pyproject.toml README.md ./
COPY relay ./relay
# The relay's wheel and every dependency's wheel, so the runtime stage installs offline.
RUN python -m pip wheel --no-cache-dir --wheel-dir /wheels .
# The extensions are optional for `pip install .` on odd machines, never for the image: fail the
# build if the wheel came out without them.
RUN python -c "import glob, sys, zipfile; names = zipfile.ZipFile(glob.glob('/wheels/trace_relay-*.whl')[0]).namelist(); sys.exit(not all(any(n.startswith(f'relay/native/{m}') and n.endswith('.so') for n in names) for m in ('_thrift', '_otlp')))"

FROM python:${PYTHON_VERSION}-slim AS runtime
ARG VERSION=0.1.0
LABEL org.opencontainers.image.title="trace-relay" \
      org.opencontainers.image.description="OTLP/gRPC receiver forwarding BuildKit traces to Jaeger through one exporter thread" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.licenses="Apache-2.0"
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PATH=/opt/trace-relay/bin:$PATH
RUN --mount=type=bind,from=build,source=/wheels,target=/wheels \
    python -m venv /opt/trace-relay \
    && /opt/trace-relay/bin/python -m pip install --no-cache-dir --no-index --find-links=/wheels trace-relay \
    && /opt/trace-relay/bin/python -m pip uninstall --yes pip
USER 10001:10001
WORKDIR /
EXPOSE 4317 4318 8888
ENTRYPOINT ["trace-relay"]
