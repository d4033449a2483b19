"""The public pod models check themselves at construction, hash, and encode as they always did."""

from __future__ import annotations

import copy
import inspect
import pickle
from collections.abc import Callable
from typing import Any

import msgspec
import pytest
from hypothesis import given
from hypothesis import strategies as st

import cni_async
from cni_async import (
    BandwidthConfig,
    IpRange,
    NetAttachment,
    NetResult,
    PodNetwork,
    PortMapping,
    Result040,
    Result100,
    RuntimeConfig,
)
from cni_async._testing import FrozenDict, capability_args

U: Any = cni_async  # the models, called with what their annotations refuse
R100 = Result100(cni_version="1.1.0")
R040 = Result040(cni_version="0.4.0")
POD = ("web", "default", "abc123", "uid-1", "/run/netns/pod1")


def pod(**kw: Any) -> PodNetwork:
    fields: dict[str, Any] = dict(
        zip(("name", "namespace", "id", "uid", "netns"), POD, strict=True)
    )
    fields.update(kw)
    return PodNetwork(**fields)


def full_runtime_config(**kw: Any) -> RuntimeConfig:
    fields: dict[str, Any] = {
        "ip": "10.1.2.3",
        "mac": "02:00:00:00:00:01",
        "port_mappings": [PortMapping(8080, 80), PortMapping(53, 53, "udp", "127.0.0.1")],
        "bandwidth": BandwidthConfig(ingress_rate=1000, ingress_burst=10),
        "ip_ranges": [[IpRange("10.5.0.0/16", range_start="10.5.0.10")], [IpRange("fd00::/64")]],
        "cgroup_path": "/kubepods/pod1",
        "pod_annotations": {"a": "1", "b": "2"},
    }
    fields.update(kw)
    return RuntimeConfig(**fields)


def full_pod() -> PodNetwork:
    return PodNetwork(
        *POD,
        [NetAttachment("neta"), NetAttachment("netb", "net1")],
        runtime_config={"neta": full_runtime_config(), "netb": RuntimeConfig()},
        aliases={"netb": ["web", "www"]},
    )


# -- wrong types name the field --------------------------------------------------------------

WRONG_TYPES: list[tuple[Callable[[], object], type[Exception], str]] = [
    # PodNetwork: every field, and the elements, keys and values of the containers
    (lambda: pod(name=1), TypeError, "PodNetwork.name must be str, not int"),
    (lambda: pod(namespace=None), TypeError, "PodNetwork.namespace must be str, not NoneType"),
    (lambda: pod(id=123), TypeError, "PodNetwork.id must be str, not int"),
    (lambda: pod(uid=b"u"), TypeError, "PodNetwork.uid must be str, not bytes"),
    (lambda: pod(netns=0), TypeError, "PodNetwork.netns must be str, not int"),
    (
        lambda: pod(networks=["net"]),
        TypeError,
        "PodNetwork.networks[0] must be NetAttachment, not str",
    ),
    (
        lambda: pod(networks=[U.NetAttachment("a"), {"name": "b"}]),
        TypeError,
        "PodNetwork.networks[1] must be NetAttachment, not dict",
    ),
    (
        lambda: pod(networks="net"),
        TypeError,
        "PodNetwork.networks must be a sequence of NetAttachment, not str",
    ),
    (
        lambda: pod(networks=U.NetAttachment("a")),
        TypeError,
        "PodNetwork.networks must be a sequence of NetAttachment, not NetAttachment",
    ),
    (
        lambda: pod(networks=(n for n in [U.NetAttachment("a")])),
        TypeError,
        "PodNetwork.networks must be a sequence of NetAttachment, not generator",
    ),
    (
        lambda: pod(runtime_config=[U.RuntimeConfig()]),
        TypeError,
        "PodNetwork.runtime_config must be a mapping, not list",
    ),
    (
        lambda: pod(runtime_config={"neta": {"ip": "10.0.0.1"}}),
        TypeError,
        "PodNetwork.runtime_config['neta'] must be RuntimeConfig, not dict",
    ),
    (
        lambda: pod(runtime_config={1: U.RuntimeConfig()}),
        TypeError,
        "PodNetwork.runtime_config keys must be str, not int",
    ),
    (lambda: pod(aliases=None), TypeError, "PodNetwork.aliases must be a mapping, not NoneType"),
    (
        lambda: pod(aliases={"neta": "web"}),
        TypeError,
        "PodNetwork.aliases['neta'] must be a sequence of str, not str",
    ),
    (
        lambda: pod(aliases={"neta": ["web", 1]}),
        TypeError,
        "PodNetwork.aliases['neta'][1] must be str, not int",
    ),
    (lambda: pod(aliases={None: ["x"]}), TypeError, "PodNetwork.aliases keys must be str"),
    # NetAttachment
    (lambda: U.NetAttachment(1), TypeError, "NetAttachment.name must be str, not int"),
    (
        lambda: U.NetAttachment("a", None),
        TypeError,
        "NetAttachment.ifname must be str, not NoneType",
    ),
    # RuntimeConfig
    (lambda: U.RuntimeConfig(ip=1), TypeError, "RuntimeConfig.ip must be str, not int"),
    (lambda: U.RuntimeConfig(mac=None), TypeError, "RuntimeConfig.mac must be str, not NoneType"),
    (
        lambda: U.RuntimeConfig(cgroup_path=["/x"]),
        TypeError,
        "RuntimeConfig.cgroup_path must be str, not list",
    ),
    (
        lambda: U.RuntimeConfig(port_mappings=[(8080, 80)]),
        TypeError,
        "RuntimeConfig.port_mappings[0] must be PortMapping, not tuple",
    ),
    (
        lambda: U.RuntimeConfig(port_mappings=U.PortMapping(8080, 80)),
        TypeError,
        "RuntimeConfig.port_mappings must be a sequence of PortMapping, not PortMapping",
    ),
    (
        lambda: U.RuntimeConfig(bandwidth={"ingressRate": 1}),
        TypeError,
        "RuntimeConfig.bandwidth must be BandwidthConfig or None, not dict",
    ),
    (
        lambda: U.RuntimeConfig(ip_ranges=[U.IpRange("10.0.0.0/8")]),
        TypeError,
        "RuntimeConfig.ip_ranges[0] must be a sequence of IpRange, not IpRange",
    ),
    (
        lambda: U.RuntimeConfig(ip_ranges=[[U.IpRange("10.0.0.0/8"), "10.1.0.0/16"]]),
        TypeError,
        "RuntimeConfig.ip_ranges[0][1] must be IpRange, not str",
    ),
    (
        lambda: U.RuntimeConfig(ip_ranges="10.0.0.0/8"),
        TypeError,
        "RuntimeConfig.ip_ranges must be a sequence of sequences of IpRange, not str",
    ),
    (
        lambda: U.RuntimeConfig(pod_annotations={"a": 1}),
        TypeError,
        "RuntimeConfig.pod_annotations['a'] must be str, not int",
    ),
    (
        lambda: U.RuntimeConfig(pod_annotations=[("a", "1")]),
        TypeError,
        "RuntimeConfig.pod_annotations must be a mapping, not list",
    ),
    # PortMapping
    (lambda: U.PortMapping("80", 80), TypeError, "PortMapping.host_port must be int, not str"),
    (
        lambda: U.PortMapping(80, 8.0),
        TypeError,
        "PortMapping.container_port must be int, not float",
    ),
    (lambda: U.PortMapping(True, 80), TypeError, "PortMapping.host_port must be int, not bool"),
    (lambda: U.PortMapping(80, 80, 6), TypeError, "PortMapping.protocol must be str, not int"),
    (lambda: U.PortMapping(80, 80, "tcp", None), TypeError, "PortMapping.host_ip must be str"),
    # IpRange
    (lambda: U.IpRange(None), TypeError, "IpRange.subnet must be str, not NoneType"),
    (lambda: U.IpRange("10.0.0.0/8", 1), TypeError, "IpRange.range_start must be str, not int"),
    (lambda: U.IpRange("10.0.0.0/8", range_end=1), TypeError, "IpRange.range_end must be str"),
    (lambda: U.IpRange("10.0.0.0/8", gateway=1), TypeError, "IpRange.gateway must be str"),
    # BandwidthConfig
    (
        lambda: U.BandwidthConfig(1.5),
        TypeError,
        "BandwidthConfig.ingress_rate must be int, not float",
    ),
    (
        lambda: U.BandwidthConfig(0, "1"),
        TypeError,
        "BandwidthConfig.ingress_burst must be int, not str",
    ),
    (
        lambda: U.BandwidthConfig(egress_rate=None),
        TypeError,
        "BandwidthConfig.egress_rate must be int",
    ),
    (
        lambda: U.BandwidthConfig(egress_burst=False),
        TypeError,
        "BandwidthConfig.egress_burst must be int, not bool",
    ),
    # NetResult
    (
        lambda: U.NetResult(name=1, ifname="eth0", result=R100, config_result=R100),
        TypeError,
        "NetResult.name must be str, not int",
    ),
    (
        lambda: U.NetResult(name="n", ifname=0, result=R100, config_result=R100),
        TypeError,
        "NetResult.ifname must be str, not int",
    ),
    (
        lambda: U.NetResult(name="n", ifname="eth0", result=R040, config_result=R100),
        TypeError,
        "NetResult.result must be Result100, not Result040",
    ),
    (
        lambda: U.NetResult(name="n", ifname="eth0", result=R100, config_result={}),
        TypeError,
        "NetResult.config_result must be Result020, Result040 or Result100, not dict",
    ),
]


@pytest.mark.parametrize(("make", "error", "message"), WRONG_TYPES)
def test_a_wrong_type_is_refused_at_construction_naming_the_field(
    make: Callable[[], object], error: type[Exception], message: str
) -> None:
    with pytest.raises(error) as info:
        make()
    assert type(info.value) is error  # TypeError for types, never a CNIError
    assert str(info.value).startswith(message)


# -- impossible values -----------------------------------------------------------------------

IMPOSSIBLE: list[tuple[Callable[[], object], str]] = [
    (lambda: pod(id=""), "PodNetwork.id must not be empty"),
    (lambda: NetAttachment(""), "NetAttachment.name must not be empty"),
    (lambda: PortMapping(70000, 80), "PortMapping.host_port must be 0..65535, got 70000"),
    (lambda: PortMapping(-1, 80), "PortMapping.host_port must be 0..65535, got -1"),
    (lambda: PortMapping(80, 0), "PortMapping.container_port must be 1..65535, got 0"),
    (lambda: PortMapping(80, 0), "PortMapping.container_port must be 1..65535, got 0"),
    (lambda: PortMapping(80, 65536), "PortMapping.container_port must be 1..65535, got 65536"),
    (lambda: PortMapping(80, 80, "icmp"), "PortMapping.protocol must be 'tcp', 'udp' or 'sctp'"),
    (lambda: PortMapping(80, 80, ""), "PortMapping.protocol must be"),
    (lambda: PortMapping(80, 80, host_ip="localhost"), "PortMapping.host_ip must be an IP"),
    (lambda: PortMapping(80, 80, host_ip="10.0.0.300"), "PortMapping.host_ip must be an IP"),
    (lambda: PortMapping(80, 80, host_ip="fe80::1%eth0"), "PortMapping.host_ip must be an IP"),
    (lambda: BandwidthConfig(-1), "BandwidthConfig.ingress_rate must be 0..2**64-1, got -1"),
    (lambda: BandwidthConfig(egress_burst=-5), "BandwidthConfig.egress_burst must be 0..2**64-1"),
    (lambda: BandwidthConfig(egress_rate=2**64), "BandwidthConfig.egress_rate must be 0..2**64-1"),
    (lambda: IpRange(""), "IpRange.subnet must not be empty"),
    (lambda: IpRange("10.0.0.0"), "IpRange.subnet must be a CIDR"),
    (lambda: IpRange("10.0.0.0/33"), "IpRange.subnet must be a CIDR"),
    (lambda: IpRange("10.0.0.0/255.0.0.0"), "IpRange.subnet must be a CIDR"),
    (lambda: IpRange("10.0.0.256/8"), "IpRange.subnet must be a CIDR"),
    (lambda: IpRange("fe80::%eth0/64"), "IpRange.subnet must be a CIDR"),
    (lambda: IpRange("not a subnet"), "IpRange.subnet must be a CIDR"),
    (lambda: IpRange("10.0.0.0/8", "10.0.0.x"), "IpRange.range_start must be an IP address"),
    (lambda: IpRange("10.0.0.0/8", range_end="::1"), "IpRange.range_end '::1' is not an IPv4"),
    (lambda: IpRange("fd00::/64", gateway="10.0.0.1"), "IpRange.gateway '10.0.0.1' is not an IPv6"),
    (lambda: IpRange("10.0.0.0/8", "11.0.0.1"), "IpRange.range_start '11.0.0.1' is not in subnet"),
    (
        lambda: IpRange("10.0.0.0/8", "10.0.0.9", "10.0.0.2"),
        "IpRange.range_start '10.0.0.9' is after range_end '10.0.0.2'",
    ),
    (lambda: RuntimeConfig(ip_ranges=[[]]), "RuntimeConfig.ip_ranges[0] must not be empty"),
]


@pytest.mark.parametrize(("make", "message"), IMPOSSIBLE)
def test_an_impossible_value_is_refused_at_construction(
    make: Callable[[], object], message: str
) -> None:
    with pytest.raises(ValueError) as info:
        make()
    assert type(info.value) is ValueError
    assert str(info.value).startswith(message)


def test_possible_values_at_the_edges_are_accepted() -> None:
    assert PortMapping(1, 65535, "SCTP", "::").protocol == "SCTP"  # kept as given
    assert PortMapping(65535, 1, "UDP", "127.0.0.1").host_ip == "127.0.0.1"
    assert BandwidthConfig(2**64 - 1, 0, 0, 0).ingress_rate == 2**64 - 1
    assert IpRange("10.0.0.1/8").subnet == "10.0.0.1/8"  # host bits allowed, text kept
    assert IpRange("10.0.0.0/08").subnet == "10.0.0.0/08"  # Go accepts a leading zero
    r = IpRange("fd00::/64", "fd00::10", "fd00::10", "fd00::1")
    assert (r.range_start, r.range_end, r.gateway) == ("fd00::10", "fd00::10", "fd00::1")
    assert IpRange("10.0.0.0/24", gateway="192.168.0.1").gateway == "192.168.0.1"  # off-link
    assert pod(name="", namespace="", uid="", netns="").id == "abc123"


class Name(str):
    pass


def test_str_subclasses_are_accepted() -> None:
    p = PodNetwork(
        Name("n"), Name("ns"), Name("id"), Name("u"), Name("/x"), [NetAttachment(Name("a"))]
    )
    assert p.id == "id" and p.networks[0].name == "a"


def test_what_cni_constrains_is_left_to_the_operation() -> None:
    """The characters of IDs and interface names and the syntax of a static IP or MAC raise
    InvalidArgument from the pod operation (with its CNI code, seen by observers), not here."""
    p = pod(
        id="bad/id",
        networks=[NetAttachment("neta", "x/y"), NetAttachment("neta", "x/y")],
        runtime_config={"neta": RuntimeConfig(ip="10.0.0.300", mac="bogus")},
    )
    assert p.id == "bad/id"


def test_decoding_runs_the_same_checks() -> None:
    with pytest.raises(msgspec.ValidationError, match=r"PortMapping\.host_port must be 0\.\.65535"):
        msgspec.json.decode(b'{"hostPort": -1, "containerPort": 80}', type=PortMapping)
    with pytest.raises(msgspec.ValidationError, match=r"PodNetwork\.id must not be empty"):
        msgspec.json.decode(
            b'{"name": "n", "namespace": "ns", "id": "", "uid": "", "netns": ""}', type=PodNetwork
        )


# -- hashing ---------------------------------------------------------------------------------


def test_every_model_hashes_and_equal_models_hash_equal() -> None:
    a, b = full_pod(), full_pod()
    assert a == b and a is not b
    assert hash(a) == hash(b)
    assert {a: 1}[b] == 1 and len({a, b}) == 1
    for model in (
        NetAttachment("a"),
        full_runtime_config(),
        RuntimeConfig(pod_annotations={}),
        PortMapping(80, 80),
        IpRange("10.0.0.0/8"),
        BandwidthConfig(1, 2, 3, 4),
        NetResult(name="n", ifname="eth0", result=R100, config_result=R040),
        pod(),
    ):
        assert hash(model) == hash(copy.copy(model))
    assert hash(a) != hash(pod())  # not a constant


def test_lists_and_tuples_make_the_same_model() -> None:
    from_lists = full_pod()
    from_tuples = PodNetwork(
        *POD,
        (NetAttachment("neta"), NetAttachment("netb", "net1")),
        runtime_config=FrozenDict(
            neta=full_runtime_config(
                port_mappings=(PortMapping(8080, 80), PortMapping(53, 53, "udp", "127.0.0.1")),
                ip_ranges=(
                    (IpRange("10.5.0.0/16", range_start="10.5.0.10"),),
                    (IpRange("fd00::/64"),),
                ),
                pod_annotations=FrozenDict(a="1", b="2"),
            ),
            netb=RuntimeConfig(),
        ),
        aliases={"netb": ("web", "www")},
    )
    assert from_lists == from_tuples and hash(from_lists) == hash(from_tuples)
    assert pod(networks=[]) == pod() == pod(networks=()) and hash(pod(networks=[])) == hash(pod())
    assert pod(aliases={}, runtime_config={}) == pod()
    # None and an empty mapping stay different: None sends no annotations at all
    assert RuntimeConfig(pod_annotations={}) != RuntimeConfig()


def test_the_stored_containers_are_immutable() -> None:
    p = full_pod()
    assert isinstance(p.networks, tuple)
    assert isinstance(p.aliases["netb"], tuple)
    rc = p.runtime_config["neta"]
    assert isinstance(rc.port_mappings, tuple)
    assert isinstance(rc.ip_ranges, tuple) and all(isinstance(s, tuple) for s in rc.ip_ranges)
    for mapping in (p.runtime_config, p.aliases, rc.pod_annotations):
        assert isinstance(mapping, dict) and type(mapping) is FrozenDict
    annotations: Any = rc.pod_annotations
    mutations: list[Callable[[], object]] = [
        lambda: annotations.__setitem__("c", "3"),
        lambda: annotations.__delitem__("a"),
        lambda: annotations.update(c="3"),
        lambda: annotations.setdefault("c", "3"),
        lambda: annotations.pop("a"),
        lambda: annotations.popitem(),
        lambda: annotations.clear(),
        lambda: annotations.__ior__({"c": "3"}),
    ]
    for mutate in mutations:
        with pytest.raises(TypeError, match="read-only"):
            mutate()
    assert annotations == {"a": "1", "b": "2"}
    with pytest.raises(AttributeError):
        p.id = "other"  # type: ignore[misc]


def test_the_callers_containers_are_not_kept() -> None:
    networks = [NetAttachment("a")]
    annotations = {"k": "v"}
    p = pod(networks=networks, runtime_config={"a": RuntimeConfig(pod_annotations=annotations)})
    before = hash(p)
    networks.append(NetAttachment("b"))
    annotations["k"] = "changed"
    assert [n.name for n in p.networks] == ["a"]
    assert p.runtime_config["a"].pod_annotations == {"k": "v"}
    assert hash(p) == before


# -- equality and encoding as before ---------------------------------------------------------


def test_mappings_still_compare_equal_to_dicts() -> None:
    p = full_pod()
    assert p.runtime_config == {"neta": full_runtime_config(), "netb": RuntimeConfig()}
    assert p.runtime_config["neta"].pod_annotations == {"a": "1", "b": "2"}
    assert p.aliases == {"netb": ("web", "www")}
    assert dict(p.runtime_config).keys() == {"neta", "netb"}


def test_json_encoding_is_unchanged() -> None:
    p = full_pod()
    expected = {
        "name": "web",
        "namespace": "default",
        "id": "abc123",
        "uid": "uid-1",
        "netns": "/run/netns/pod1",
        "networks": [{"name": "neta", "ifname": ""}, {"name": "netb", "ifname": "net1"}],
        "runtime_config": {
            "neta": {
                "ip": "10.1.2.3",
                "mac": "02:00:00:00:00:01",
                "port_mappings": [
                    {"hostPort": 8080, "containerPort": 80, "protocol": "tcp", "hostIP": ""},
                    {"hostPort": 53, "containerPort": 53, "protocol": "udp", "hostIP": "127.0.0.1"},
                ],
                "bandwidth": {"ingressRate": 1000, "ingressBurst": 10},
                "ip_ranges": [
                    [{"subnet": "10.5.0.0/16", "rangeStart": "10.5.0.10"}],
                    [{"subnet": "fd00::/64"}],
                ],
                "cgroup_path": "/kubepods/pod1",
                "pod_annotations": {"a": "1", "b": "2"},
            },
            "netb": {
                "ip": "",
                "mac": "",
                "port_mappings": [],
                "bandwidth": None,
                "ip_ranges": [],
                "cgroup_path": "",
                "pod_annotations": None,
            },
        },
        "aliases": {"netb": ["web", "www"]},
    }
    assert msgspec.json.decode(msgspec.json.encode(p)) == expected
    assert msgspec.json.decode(msgspec.json.encode(msgspec.to_builtins(p))) == expected
    assert msgspec.json.decode(msgspec.json.encode(p), type=PodNetwork) == p
    assert msgspec.convert(expected, PodNetwork) == p


def test_capability_args_are_plain_lists_and_dicts() -> None:
    p = full_pod()
    args = capability_args("neta", p)
    assert args == {
        "portMappings": [
            {"hostPort": 8080, "containerPort": 80, "protocol": "tcp", "hostIP": ""},
            {"hostPort": 53, "containerPort": 53, "protocol": "udp", "hostIP": "127.0.0.1"},
        ],
        "bandwidth": {"ingressRate": 1000, "ingressBurst": 10},
        "ipRanges": [
            [{"subnet": "10.5.0.0/16", "rangeStart": "10.5.0.10"}],
            [{"subnet": "fd00::/64"}],
        ],
        "cgroupPath": "/kubepods/pod1",
        "io.kubernetes.cri.pod-annotations": {"a": "1", "b": "2"},
    }
    assert type(args["portMappings"]) is list
    assert type(args["ipRanges"]) is list and type(args["ipRanges"][0]) is list
    assert type(args["io.kubernetes.cri.pod-annotations"]) is dict
    assert capability_args("netb", p) == {"aliases": {"netb": ["web", "www"]}}
    assert type(capability_args("netb", p)["aliases"]["netb"]) is list


def test_a_mapping_without_a_host_port_is_not_sent() -> None:
    """CRI's host_port 0 means no host port: cri-o and containerd leave such mappings out."""
    rc = RuntimeConfig(port_mappings=[PortMapping(0, 80), PortMapping(8080, 81)])
    p = pod(runtime_config={"neta": rc})
    assert capability_args("neta", p)["portMappings"] == [
        {"hostPort": 8080, "containerPort": 81, "protocol": "tcp", "hostIP": ""}
    ]
    only_unmapped = pod(runtime_config={"neta": RuntimeConfig(port_mappings=[PortMapping(0, 80)])})
    assert "portMappings" not in capability_args("neta", only_unmapped)


def test_pickle_and_copy_keep_the_model() -> None:
    p = full_pod()
    for clone in (pickle.loads(pickle.dumps(p)), copy.copy(p), copy.deepcopy(p)):
        assert clone == p and hash(clone) == hash(p)
        assert type(clone.runtime_config) is FrozenDict


@pytest.mark.skipif(
    tuple(int(x) for x in msgspec.__version__.split(".")[:2]) < (0, 21),
    reason="msgspec.structs.replace calls __post_init__ from msgspec 0.21 on",
)
def test_replace_checks_and_freezes_too() -> None:
    p = full_pod()
    replaced = msgspec.structs.replace(p, networks=[NetAttachment("neta")])
    assert replaced.networks == (NetAttachment("neta"),)
    hash(replaced)
    with pytest.raises(TypeError, match=r"PodNetwork.networks\[0\] must be NetAttachment"):
        msgspec.structs.replace(p, networks=["neta"])


names = st.text(st.characters(codec="ascii", categories=["L", "N"]), min_size=1, max_size=8)


@given(
    networks=st.lists(st.tuples(names, st.sampled_from(["", "eth5", "net1"])), max_size=4),
    aliases=st.dictionaries(names, st.lists(names, max_size=3), max_size=3),
    ports=st.lists(st.tuples(st.integers(1, 65535), st.integers(1, 65535)), max_size=3),
)
def test_equal_inputs_make_equal_hashable_models(
    networks: list[tuple[str, str]], aliases: dict[str, list[str]], ports: list[tuple[int, int]]
) -> None:
    def make(seq: Callable[[Any], Any]) -> PodNetwork:
        return PodNetwork(
            *POD,
            seq(NetAttachment(n, i) for n, i in networks),
            runtime_config={"n": RuntimeConfig(port_mappings=seq(PortMapping(*p) for p in ports))},
            aliases={k: seq(v) for k, v in aliases.items()},
        )

    as_lists, as_tuples = make(list), make(tuple)
    assert as_lists == as_tuples and hash(as_lists) == hash(as_tuples)
    assert msgspec.json.encode(as_lists) == msgspec.json.encode(as_tuples)


# -- the constructors' shape -----------------------------------------------------------------

SIGNATURES = {
    "PodNetwork": (
        "name namespace id uid netns networks= runtime_config= aliases=",
        inspect.Parameter.POSITIONAL_OR_KEYWORD,
    ),
    "NetAttachment": ("name ifname=", inspect.Parameter.POSITIONAL_OR_KEYWORD),
    "RuntimeConfig": (
        "ip= mac= port_mappings= bandwidth= ip_ranges= cgroup_path= pod_annotations=",
        inspect.Parameter.KEYWORD_ONLY,
    ),
    "PortMapping": (
        "host_port container_port protocol= host_ip=",
        inspect.Parameter.POSITIONAL_OR_KEYWORD,
    ),
    "IpRange": ("subnet range_start= range_end= gateway=", inspect.Parameter.POSITIONAL_OR_KEYWORD),
    "BandwidthConfig": (
        "ingress_rate= ingress_burst= egress_rate= egress_burst=",
        inspect.Parameter.POSITIONAL_OR_KEYWORD,
    ),
    "NetResult": ("name ifname result config_result", inspect.Parameter.KEYWORD_ONLY),
}


@pytest.mark.parametrize("name", sorted(SIGNATURES))
def test_constructor_names_and_positions_are_unchanged(name: str) -> None:
    shape, kind = SIGNATURES[name]
    params = inspect.signature(getattr(cni_async, name)).parameters.values()
    assert " ".join(p.name + ("=" if p.default is not p.empty else "") for p in params) == shape
    assert {p.kind for p in params} == {kind}


def test_positional_construction_as_documented() -> None:
    p = PodNetwork("web", "default", "abc123", "uid-1", "/run/netns/pod1", [NetAttachment("a")])
    assert (p.name, p.namespace, p.id, p.uid, p.netns) == POD
    assert PortMapping(8080, 80, "udp", "::1") == PortMapping(
        host_port=8080, container_port=80, protocol="udp", host_ip="::1"
    )
    assert IpRange("10.0.0.0/8", "10.0.0.2", "10.0.0.9", "10.0.0.1").range_end == "10.0.0.9"
    assert BandwidthConfig(1, 2, 3, 4).egress_burst == 4
    assert NetAttachment("a", "eth1").ifname == "eth1"
