"""Build insights: BuildKit-aware metrics and a build report, observed off the request path."""

from relay.insights.classify import Build, Export, Step, classify, instruction
from relay.insights.observer import BuildObserver, Record

__all__ = ["Build", "BuildObserver", "Export", "Record", "Step", "classify", "instruction"]
