"""The error classes: codes, and errors that cross process boundaries."""

from __future__ import annotations

import pickle

import pytest

from cni_async import (
    CNIError,
    ContainerUnknown,
    LimitedConnectivity,
    NamespaceError,
    PluginError,
    PluginExecFailed,
    PluginNotAvailable,
    PodNetworkError,
    TryAgainLater,
)


@pytest.mark.parametrize(
    ("cls", "code"),
    [
        (PluginError, 0),
        (ContainerUnknown, 3),
        (TryAgainLater, 11),
        (PluginNotAvailable, 50),
        (LimitedConnectivity, 51),
    ],
)
def test_plugin_errors_built_by_hand_carry_their_code(cls: type[PluginError], code: int) -> None:
    assert cls("x").code == code
    assert cls("x", code=7).code == 7


@pytest.mark.parametrize(
    "error",
    [
        PluginNotAvailable("no addresses left", plugin="host-local", verb="STATUS"),
        PluginExecFailed("could not execute", errno=8, path="/opt/cni/bin/x"),
        NamespaceError("gone", netns="/run/netns/p"),
        PodNetworkError("ns/p", "set-up", [PluginError("boom", code=7, network="net1")]),
    ],
    ids=lambda e: type(e).__name__,
)
def test_errors_survive_pickling(error: CNIError) -> None:
    """multiprocessing sends exceptions pickled; keyword-only arguments must not break that."""
    error.add_note("a note")
    copy = pickle.loads(pickle.dumps(error))
    assert type(copy) is type(error)
    assert str(copy) == str(error) and copy.code == error.code
    assert (copy.plugin, copy.verb, copy.network) == (error.plugin, error.verb, error.network)
    assert [str(e) for e in getattr(copy, "errors", [])] == [
        str(e) for e in getattr(error, "errors", [])
    ]
    assert copy.__notes__ == ["a note"]
