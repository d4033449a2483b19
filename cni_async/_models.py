"""The pod-level types of the public API (ocicni's ``PodNetwork`` and friends).

All are ``msgspec.Struct``s whose JSON form uses the CNI conventions' names (``hostPort``,
``containerPort``, ``hostIP``, ``rangeStart``, ``ingressRate``, ...), so capability arguments are
encoded straight from them.
"""

from __future__ import annotations

from typing import Any

import msgspec

from ._results import Result, Result100

__all__ = [
    "BandwidthConfig",
    "IpRange",
    "NetAttachment",
    "NetResult",
    "PodNetwork",
    "PortMapping",
    "RuntimeConfig",
]


class PortMapping(msgspec.Struct, frozen=True, rename="camel"):
    """A host port mapped to a port of the pod (the ``portMappings`` capability).

    :ivar host_port: the port on the host
    :ivar container_port: the port inside the pod
    :ivar protocol: ``"tcp"``, ``"udp"`` or ``"sctp"``
    :ivar host_ip: the host address to bind, or ``""`` for all
    """

    host_port: int
    container_port: int
    protocol: str = "tcp"
    host_ip: str = msgspec.field(default="", name="hostIP")


class IpRange(msgspec.Struct, frozen=True, rename="camel", omit_defaults=True):
    """An address range for IPAM (an element of the ``ipRanges`` capability).

    :ivar subnet: the whole CIDR
    :ivar range_start: the first address to allocate, or ``""``
    :ivar range_end: the last address to allocate, or ``""``
    :ivar gateway: the gateway of the subnet, or ``""``
    """

    subnet: str
    range_start: str = ""
    range_end: str = ""
    gateway: str = ""


class BandwidthConfig(msgspec.Struct, frozen=True, rename="camel", omit_defaults=True):
    """Traffic shaping for the pod (the ``bandwidth`` capability); rates in bits per second.

    A zero value is left out, meaning no limit in that direction.
    """

    ingress_rate: int = 0
    ingress_burst: int = 0
    egress_rate: int = 0
    egress_burst: int = 0


class RuntimeConfig(msgspec.Struct, frozen=True, kw_only=True):
    """Pod-specific settings for one network.

    :ivar ip: a static IP, sent as ``IP=`` in CNI_ARGS (host-local honours it)
    :ivar mac: a static MAC, sent as ``MAC=`` in CNI_ARGS
    :ivar port_mappings: sent as the ``portMappings`` capability
    :ivar bandwidth: sent as the ``bandwidth`` capability
    :ivar ip_ranges: sent as the ``ipRanges`` capability (a list of range sets)
    :ivar cgroup_path: sent as the ``cgroupPath`` capability
    :ivar pod_annotations: sent as the ``io.kubernetes.cri.pod-annotations`` capability; never
        logged
    """

    ip: str = ""
    mac: str = ""
    port_mappings: list[PortMapping] = msgspec.field(default_factory=list)
    bandwidth: BandwidthConfig | None = None
    ip_ranges: list[list[IpRange]] = msgspec.field(default_factory=list)
    cgroup_path: str = ""
    pod_annotations: dict[str, str] | None = None


class NetAttachment(msgspec.Struct, frozen=True):
    """A network to attach a pod to, and optionally the interface name to use.

    :ivar name: the network (configuration list) name
    :ivar ifname: the interface name inside the pod, or ``""`` for the lowest free ``ethN``
    """

    name: str
    ifname: str = ""


class PodNetwork(msgspec.Struct, frozen=True):
    """A pod sandbox and the networks it should be on.

    :ivar name: the pod's name
    :ivar namespace: the pod's namespace
    :ivar id: the sandbox container ID (``CNI_CONTAINERID``)
    :ivar uid: the pod's UID
    :ivar netns: the path of the sandbox's network namespace
    :ivar networks: the networks to attach, in order; empty means the default network
    :ivar runtime_config: per-network settings, keyed by network name
    :ivar aliases: per-network name aliases, keyed by network name; each network is sent only
        its own (as ``{"<network>": [...]}`` in the ``aliases`` capability)
    """

    name: str
    namespace: str
    id: str
    uid: str
    netns: str
    networks: list[NetAttachment] = msgspec.field(default_factory=list)
    runtime_config: dict[str, RuntimeConfig] = msgspec.field(default_factory=dict)
    aliases: dict[str, list[str]] = msgspec.field(default_factory=dict)


class NetResult(msgspec.Struct, frozen=True, kw_only=True):
    """The outcome of one network of a pod.

    :ivar name: the network name
    :ivar ifname: the interface name inside the pod
    :ivar result: the result as a current (1.1.0) result, whatever version the plugin printed,
        so ``result.ips[0].address`` works for every network
    :ivar config_result: the same result in the network configuration's own ``cniVersion``
        (what ocicni returns)
    """

    name: str
    ifname: str
    result: Result100
    config_result: Result


def capability_args(network: str, pod: PodNetwork) -> dict[str, Any]:
    """The capability arguments ocicni sends for ``network`` of ``pod``.

    Only what is set is sent; each plugin then receives the subset it declares.
    """
    rc = pod.runtime_config.get(network)
    args: dict[str, Any] = {}
    if rc is not None:
        if rc.port_mappings:
            args["portMappings"] = msgspec.to_builtins(rc.port_mappings)
        if rc.bandwidth is not None:
            args["bandwidth"] = msgspec.to_builtins(rc.bandwidth)
        if rc.ip_ranges:
            args["ipRanges"] = msgspec.to_builtins(rc.ip_ranges)
        if rc.cgroup_path:
            args["cgroupPath"] = rc.cgroup_path
        if rc.pod_annotations is not None:
            args["io.kubernetes.cri.pod-annotations"] = dict(rc.pod_annotations)
    aliases = pod.aliases.get(network)
    if aliases:
        args["aliases"] = {network: list(aliases)}
    return args
