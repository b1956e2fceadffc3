"""Build insights: BuildKit-aware metrics and a build report, observed off the request path."""

from relay.insights.classify import Build, Step, classify, instruction
from relay.insights.observer import BuildObserver

__all__ = ["Build", "BuildObserver", "Step", "classify", "instruction"]
