from __future__ import annotations

import cni_async


def test_all_names_exist_and_are_unique() -> None:
    assert len(set(cni_async.__all__)) == len(cni_async.__all__)
    for name in cni_async.__all__:
        assert hasattr(cni_async, name), name


def test_public_classes_show_the_package_name() -> None:
    assert cni_async.CNIEngine.__module__ == "cni_async.libcni"
    assert cni_async.CNIPlugin.__module__ == "cni_async"
    assert repr(cni_async.CNIError("x")) == "CNIError('x', code=None)"


def test_every_error_derives_from_cnierror() -> None:
    for name in cni_async.__all__:
        obj = getattr(cni_async, name)
        if isinstance(obj, type) and issubclass(obj, BaseException):
            assert issubclass(obj, cni_async.CNIError), name
