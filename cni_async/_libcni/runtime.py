"""The parameters of one plugin call, as libcni names them, and what the engine defaults to.

``RuntimeConf`` is libcni's per-attachment parameters (not to be confused with ocicni's
per-network ``RuntimeConfig`` of the pod API); ``PluginInfo`` is a plugin's VERSION answer.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

import msgspec

from .._spec.validation import (
    validate_attachment,
    validate_capability_args,
    validate_cni_args,
    validate_netns,
)

__all__ = ["DEFAULT_TIMEOUTS", "PluginInfo", "RuntimeConf", "validate_request", "version_decoder"]

DEFAULT_TIMEOUTS: Final[Mapping[str, float | None]] = {
    "ADD": 120.0,
    "CHECK": 60.0,
    "DEL": 120.0,
    "VERSION": 10.0,
    "STATUS": 30.0,
    "GC": 120.0,
}
"""Default limits on one plugin run per verb, in seconds (libcni has none: a hung plugin
hangs the runtime)."""


class RuntimeConf(msgspec.Struct, frozen=True, kw_only=True):
    """The per-attachment parameters of one operation (libcni's ``RuntimeConf``).

    :ivar container_id: the container (sandbox) ID, sent as ``CNI_CONTAINERID``
    :ivar netns: the network namespace path, sent as ``CNI_NETNS`` (may be empty on DEL)
    :ivar ifname: the interface name inside the namespace, sent as ``CNI_IFNAME``
    :ivar args: ``CNI_ARGS`` pairs, in order
    :ivar capability_args: capability arguments; each plugin gets, as ``runtimeConfig``, only
        those its configuration declares in ``capabilities``
    """

    container_id: str
    netns: str = ""
    ifname: str = "eth0"
    args: tuple[tuple[str, str], ...] = ()
    capability_args: Mapping[str, Any] = msgspec.field(default_factory=dict)


class PluginInfo(msgspec.Struct, frozen=True):
    """A plugin's answer to VERSION."""

    cni_version: str = msgspec.field(name="cniVersion")
    supported_versions: tuple[str, ...] = msgspec.field(default=(), name="supportedVersions")


class _VersionAnswer(msgspec.Struct):
    """VERSION's output as plugins print it (fields may be missing)."""

    cni_version: str = msgspec.field(default="", name="cniVersion")
    supported_versions: list[str] | None = msgspec.field(default=None, name="supportedVersions")


version_decoder: Final = msgspec.json.Decoder(_VersionAnswer)
"""Decodes a VERSION answer (``decode_like_go`` with it, for untrusted output)."""


def validate_request(network: str, rt: RuntimeConf) -> None:
    """:raises InvalidArgument: if ``rt`` could not be sent to the plugins of ``network`` as it
    is (checked before any plugin runs, so nothing is half-done)."""
    validate_attachment(rt.container_id, network, rt.ifname)
    validate_cni_args(rt.args)
    validate_netns(rt.netns)
    validate_capability_args(rt.capability_args)
