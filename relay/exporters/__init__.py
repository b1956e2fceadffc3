"""Jaeger outputs. Only the worker thread ever calls an exporter (see relay/worker.py)."""
