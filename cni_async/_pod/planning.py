r"""Which networks a pod operation touches, under which names, with which parameters.

Pure planning, no I/O: resolving a pod's networks against a configuration snapshot, assigning
interface names, building each attachment's runtime parameters, and turning results into
[`NetResult`][cni_async.NetResult]s.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Final

from .._confdir.snapshot import ConfigSnapshot
from .._errors import ERR_INVALID_ENVIRONMENT_VARIABLES, CNIError, InvalidArgument, NetworkNotFound
from .._libcni.cache import CacheEntry
from .._libcni.runtime import RuntimeConf
from .._spec.netconf import NetworkConfigList
from .._spec.results import Result, Result100, convert_result
from .._spec.validation import (
    validate_capability_args,
    validate_cni_args,
    validate_ifname,
    validate_netns,
)
from .._spec.versions import CURRENT_VERSION
from .models import NetAttachment, PodNetwork, capability_args

DEFAULT_INTERFACE_NAME: Final = "eth0"
_MAC: Final = re.compile(r"[0-9a-fA-F]{2}([:-])[0-9a-fA-F]{2}(\1[0-9a-fA-F]{2}){4}")


@dataclass(frozen=True)
class Attachment:
    """One network of one operation: its configuration and runtime parameters."""

    network: NetworkConfigList
    rt: RuntimeConf


def runtime_conf(
    pod: PodNetwork, network: str, ifname: str, netns: str, extra_args: Sequence[tuple[str, str]]
) -> RuntimeConf:
    """The runtime parameters ocicni sends for ``network`` of ``pod``.

    CNI_ARGS: ``IgnoreUnknown=1``, the four ``K8S_POD_*`` keys, ``IP=``/``MAC=`` from the
    pod's runtime config (validated), then ``extra_args``; capability arguments as
    ``capability_args()`` builds them.

    :raises InvalidArgument: a static IP or MAC is malformed, or an argument cannot be sent
    """
    args = [
        ("IgnoreUnknown", "1"),
        ("K8S_POD_NAMESPACE", pod.namespace),
        ("K8S_POD_NAME", pod.name),
        ("K8S_POD_INFRA_CONTAINER_ID", pod.id),
        ("K8S_POD_UID", pod.uid),
    ]
    rc = pod.runtime_config.get(network)
    if rc is not None and rc.ip:
        try:
            if "%" in rc.ip:  # a zone: Python accepts fe80::1%eth0, the plugins' Go does not
                raise ValueError(rc.ip)
            ipaddress.ip_address(rc.ip)
        except ValueError:
            raise InvalidArgument(
                f"invalid static IP {rc.ip!r} for network {network!r}",
                code=ERR_INVALID_ENVIRONMENT_VARIABLES,
                network=network,
            ) from None
        args.append(("IP", rc.ip))
    if rc is not None and rc.mac:
        if not _MAC.fullmatch(rc.mac):
            raise InvalidArgument(
                f"invalid static MAC {rc.mac!r} for network {network!r}",
                code=ERR_INVALID_ENVIRONMENT_VARIABLES,
                network=network,
            )
        args.append(("MAC", rc.mac))
    args.extend(extra_args)
    validate_cni_args(args)
    validate_netns(netns)
    caps = capability_args(network, pod)
    validate_capability_args(caps)
    return RuntimeConf(
        container_id=pod.id, netns=netns, ifname=ifname, args=tuple(args), capability_args=caps
    )


def assign_ifnames(requests: Sequence[NetAttachment]) -> list[tuple[str, str]]:
    """Explicit names as given; the rest get the lowest free ``ethN``, in request order.

    :raises InvalidArgument: an explicit name is invalid or used twice
    """
    explicit = [r.ifname for r in requests if r.ifname]
    for ifname in explicit:
        validate_ifname(ifname)
    duplicates = sorted({n for n in explicit if explicit.count(n) > 1})
    if duplicates:
        raise InvalidArgument(
            f"interface name{'s' if len(duplicates) > 1 else ''} "
            f"{', '.join(duplicates)} requested more than once",
            code=ERR_INVALID_ENVIRONMENT_VARIABLES,
        )
    taken = set(explicit)
    assigned = []
    index = 0
    for request in requests:
        ifname = request.ifname
        if not ifname:
            while f"eth{index}" in taken:
                index += 1
            ifname = f"eth{index}"
            taken.add(ifname)
        assigned.append((request.name, ifname))
    return assigned


def plan_networks(
    snapshot: ConfigSnapshot, pod: PodNetwork, default_name: str | None
) -> list[tuple[NetworkConfigList, str]] | NetworkNotFound:
    """Resolve ``pod``'s networks against ``snapshot``; a NetworkNotFound (not raised) on a miss."""
    if not pod.networks:
        if snapshot.default is None:
            return snapshot.missing_default(default_name)
        return [(snapshot.default, DEFAULT_INTERFACE_NAME)]
    pairs = assign_ifnames(pod.networks)
    missing = [name for name, _ in pairs if snapshot.get(name) is None]
    if missing:
        names = ", ".join(repr(n) for n in dict.fromkeys(missing))
        return NetworkNotFound(
            f"no valid configuration for network{'s' if len(missing) > 1 else ''} {names}",
            path=snapshot.conf_dir,
            network=missing[0],
        )
    plan = []
    for name, ifname in pairs:
        network = snapshot.get(name)
        assert network is not None
        plan.append((network, ifname))
    return plan


def as_current(result: Result) -> Result100:
    current = convert_result(result, CURRENT_VERSION)
    assert isinstance(current, Result100)
    return current


def as_config_version(result: Result, network: NetworkConfigList) -> Result:
    try:
        return convert_result(result, network.cni_version)
    except CNIError:
        return result


def requested(
    pod: PodNetwork, cached: Mapping[tuple[str, str], CacheEntry]
) -> list[tuple[str, str]]:
    """The (network, ifname) pairs ``pod`` names, or with none named, every cached one.

    A request without an explicit ifname matches what the cache recorded for that network.
    """
    if not pod.networks:
        return list(cached)
    wanted: list[tuple[str, str]] = []
    assigned = assign_ifnames(pod.networks)
    for request, (name, ifname) in zip(pod.networks, assigned, strict=True):
        recorded = [key for key in cached if key[0] == name] if not request.ifname else []
        wanted.extend(recorded or [(name, ifname)])
    return list(dict.fromkeys(wanted))
