"""Evaluate a rendered NetworkPolicy the way Kubernetes does, for the chart tests.

Only what the chart's policies use: ingress rules whose peers are pod and namespace label
selectors (matchLabels, matchExpressions), and named or numbered ports. A peer with only a
podSelector means pods of the policy's own namespace; with only a namespaceSelector, every pod
of the matching namespaces; with both, the matching pods of the matching namespaces.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Pod:
    """A client pod: its labels, its namespace and that namespace's labels."""

    labels: Mapping[str, str]
    namespace: str
    namespace_labels: Mapping[str, str] = field(default_factory=dict)

    def all_namespace_labels(self) -> dict[str, str]:
        # The API server labels every namespace with its name (Kubernetes >= 1.22).
        return {**self.namespace_labels, "kubernetes.io/metadata.name": self.namespace}


def _expression_matches(expression: Mapping[str, Any], labels: Mapping[str, str]) -> bool:
    key, operator = expression["key"], expression["operator"]
    values = expression.get("values") or []
    if operator == "In":
        return key in labels and labels[key] in values
    if operator == "NotIn":
        return key not in labels or labels[key] not in values
    if operator == "Exists":
        return key in labels
    if operator == "DoesNotExist":
        return key not in labels
    raise ValueError(f"unknown selector operator {operator!r}")


def selector_matches(selector: Mapping[str, Any], labels: Mapping[str, str]) -> bool:
    """A LabelSelector: every matchLabels pair and every matchExpression must hold; {} matches all."""
    wanted = selector.get("matchLabels") or {}
    if any(labels.get(key) != value for key, value in wanted.items()):
        return False
    return all(_expression_matches(e, labels) for e in selector.get("matchExpressions") or [])


def peer_admits(peer: Mapping[str, Any], policy_namespace: str, pod: Pod) -> bool:
    if "ipBlock" in peer:
        return False
    pods, namespaces = peer.get("podSelector"), peer.get("namespaceSelector")
    if namespaces is None:
        in_namespace = pod.namespace == policy_namespace
    else:
        in_namespace = selector_matches(namespaces, pod.all_namespace_labels())
    return in_namespace and (pods is None or selector_matches(pods, pod.labels))


def _port_allowed(rule: Mapping[str, Any], port: int | str) -> bool:
    ports = rule.get("ports")
    return not ports or any(p.get("port") == port for p in ports)


def admits(policy: Mapping[str, Any], pod: Pod, port: int | str) -> bool:
    """True when the policy lets `pod` reach `port` (a number or a container port name)."""
    namespace = policy["metadata"]["namespace"]
    for rule in policy["spec"].get("ingress") or []:
        if not _port_allowed(rule, port):
            continue
        peers = rule.get("from")
        if not peers or any(peer_admits(peer, namespace, pod) for peer in peers):
            return True
    return False
