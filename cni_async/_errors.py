"""The exception hierarchy of cni_async.

Every error the library raises derives from [`CNIError`][cni_async.CNIError]. Each carries the CNI
error code (where one applies), the plugin type, the verb (``ADD``, ``DEL``, ...) and the network it
concerns, as attributes, so callers never have to parse messages. Cancellation is never turned into
one of these: a cancelled call re-raises the backend's cancellation exception unchanged.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

__all__ = [
    "CNIError",
    "CacheError",
    "CheckNotSupported",
    "ConfigError",
    "ContainerUnknown",
    "IncompatibleCNIVersion",
    "InvalidArgument",
    "LimitedConnectivity",
    "MultipleErrors",
    "NamespaceError",
    "NetworkNotFound",
    "PodNetworkError",
    "PluginError",
    "PluginExecFailed",
    "PluginNotAvailable",
    "PluginNotFound",
    "PluginTimeout",
    "ProtocolError",
    "TryAgainLater",
    "VersionError",
]

# Well-known CNI error codes (SPEC "Error" section, plus libcni's additions).
ERR_UNKNOWN = 0
ERR_INCOMPATIBLE_CNI_VERSION = 1
ERR_UNSUPPORTED_FIELD = 2
ERR_UNKNOWN_CONTAINER = 3
ERR_INVALID_ENVIRONMENT_VARIABLES = 4
ERR_IO_FAILURE = 5
ERR_DECODING_FAILURE = 6
ERR_INVALID_NETWORK_CONFIG = 7
ERR_INVALID_NETNS = 8
ERR_TRY_AGAIN_LATER = 11
ERR_PLUGIN_NOT_AVAILABLE = 50
ERR_LIMITED_CONNECTIVITY = 51
ERR_INTERNAL = 999


class CNIError(Exception):
    """Base class of every error raised by cni_async.

    :ivar message: what went wrong, without the context prefix
    :ivar code: the CNI error code, or ``None`` where none applies
    :ivar plugin: the plugin type (``"bridge"``), if a plugin was involved
    :ivar verb: the CNI command (``"ADD"``, ``"DEL"``, ...), if one was running
    :ivar network: the network (configuration list) name, if known
    """

    default_code: ClassVar[int | None] = None

    def __init__(
        self,
        message: str,
        *,
        code: int | None = None,
        plugin: str | None = None,
        verb: str | None = None,
        network: str | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.code = self.default_code if code is None else code
        self.plugin = plugin
        self.verb = verb
        self.network = network

    def add_context(
        self, *, plugin: str | None = None, verb: str | None = None, network: str | None = None
    ) -> None:
        """Fill in context fields that are still unknown (never overwrites a known one)."""
        if self.plugin is None:
            self.plugin = plugin
        if self.verb is None:
            self.verb = verb
        if self.network is None:
            self.network = network

    def _context(self) -> str:
        parts = []
        if self.network is not None:
            parts.append(f"network {self.network!r}")
        if self.plugin is not None:
            parts.append(f"plugin {self.plugin!r}")
        if self.verb is not None:
            parts.append(self.verb)
        return ", ".join(parts)

    def __str__(self) -> str:
        context = self._context()
        return f"{context}: {self.message}" if context else self.message

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.message!r}, code={self.code!r})"

    def __reduce__(self) -> tuple[Any, ...]:
        # Subclasses take keyword-only arguments, which the default (type(*args)) loses: rebuild
        # from the attributes, so errors cross process boundaries (multiprocessing) intact.
        return (_rebuild, (type(self), self.args, self.__dict__))


def _rebuild(cls: type[CNIError], args: tuple[Any, ...], state: dict[str, Any]) -> CNIError:
    error = cls.__new__(cls)
    error.args = args
    error.__dict__.update(state)
    return error


class ConfigError(CNIError):
    """A network configuration (file, bytes or directory) is invalid or could not be read.

    :ivar path: the file or directory concerned, or ``None`` for configuration given as bytes
    :ivar reason: why it was rejected
    """

    default_code = ERR_INVALID_NETWORK_CONFIG

    def __init__(self, reason: str, *, path: str | None = None, network: str | None = None) -> None:
        message = f"{path}: {reason}" if path else reason
        super().__init__(message, network=network)
        self.path = path
        self.reason = reason


class NetworkNotFound(ConfigError):
    """No valid configuration for the requested network (or none at all) is in the directory.

    Install the network's configuration in the configuration directory, or name an existing
    network.
    """


class InvalidArgument(CNIError):
    """A container ID, interface name, network name or CNI_ARGS value is not acceptable.

    It is raised before any plugin runs and before any cache path is built, on every verb.
    """


class PluginNotFound(CNIError):
    """The plugin binary named by a configuration's ``type`` is in none of the plugin directories.

    :ivar search_path: the directories that were searched, in order
    """

    def __init__(
        self,
        message: str,
        *,
        plugin: str | None = None,
        search_path: Sequence[str] = (),
        verb: str | None = None,
        network: str | None = None,
    ) -> None:
        super().__init__(message, plugin=plugin, verb=verb, network=network)
        self.search_path = tuple(search_path)


class PluginExecFailed(CNIError):
    """The plugin binary was found but could not be started (not executable, bad format, ...).

    :ivar errno: the ``errno`` of the failed exec
    :ivar path: the binary that was executed
    """

    def __init__(
        self,
        message: str,
        *,
        errno: int,
        path: str,
        plugin: str | None = None,
        verb: str | None = None,
    ) -> None:
        super().__init__(message, plugin=plugin, verb=verb)
        self.errno = errno
        self.path = path


class PluginError(CNIError):
    """A plugin failed: it exited non-zero or was killed by a signal.

    ``code``, ``msg`` and ``details`` are those of the CNI error object the plugin printed; a
    plugin that failed without printing one gets code 0 and a message built from its stderr and
    exit status, as libcni does.

    :ivar msg: the plugin's ``msg``
    :ivar details: the plugin's ``details``
    :ivar stderr: the tail of what the plugin wrote to stderr (bytes, possibly empty)
    :ivar returncode: the exit status, or ``-signal`` when the plugin was killed by a signal
    """

    code: int

    def __init__(
        self,
        msg: str,
        *,
        code: int | None = None,
        details: str = "",
        stderr: bytes = b"",
        returncode: int | None = None,
        plugin: str | None = None,
        verb: str | None = None,
        network: str | None = None,
    ) -> None:
        message = f"{msg}; {details}" if details else msg
        if code is None:  # the subclass's own code (PluginNotAvailable: 50), else unknown
            code = ERR_UNKNOWN if self.default_code is None else self.default_code
        super().__init__(message, code=code, plugin=plugin, verb=verb, network=network)
        self.msg = msg
        self.details = details
        self.stderr = stderr
        self.returncode = returncode

    _by_code: ClassVar[dict[int, type[PluginError]]] = {}

    def __init_subclass__(cls, **kwargs: object) -> None:
        super().__init_subclass__(**kwargs)
        if cls.default_code is not None:
            PluginError._by_code[cls.default_code] = cls

    @classmethod
    def for_code(cls, code: int) -> type[PluginError]:
        """The most specific subclass for a CNI error code (``PluginError`` itself if none)."""
        return cls._by_code.get(code, PluginError)


class IncompatibleCNIVersion(PluginError):
    """The plugin reported code 1: it does not support the configuration's CNI version."""

    default_code = ERR_INCOMPATIBLE_CNI_VERSION


class ContainerUnknown(PluginError):
    """The plugin reported code 3: the container is unknown; no DEL is needed for it."""

    default_code = ERR_UNKNOWN_CONTAINER


class TryAgainLater(PluginError):
    """The plugin reported code 11: a transient condition; retry the operation later."""

    default_code = ERR_TRY_AGAIN_LATER


class PluginNotAvailable(PluginError):
    """STATUS reported code 50: the plugin cannot service ADD requests now."""

    default_code = ERR_PLUGIN_NOT_AVAILABLE


class LimitedConnectivity(PluginError):
    """STATUS reported code 51: existing pods may have degraded connectivity."""

    default_code = ERR_LIMITED_CONNECTIVITY


class PluginTimeout(CNIError, TimeoutError):
    """A plugin ran longer than the executor's own ``timeout``; it was stopped and reaped.

    Deadlines set by the caller with anyio cancel scopes are not reported this way: those
    propagate as cancellation (or anyio's ``TimeoutError`` for ``fail_after``).
    """


class ProtocolError(CNIError):
    """A plugin's output broke the CNI protocol: undecodable, oversized, or an unknown version."""

    default_code = ERR_DECODING_FAILURE


class VersionError(CNIError):
    """A CNI version string is invalid, unsupported by a plugin, or cannot be converted to."""

    default_code = ERR_INCOMPATIBLE_CNI_VERSION


class CheckNotSupported(VersionError):
    """CHECK was requested for a configuration whose version is older than 0.4.0."""


class CacheError(CNIError):
    """A cache entry could not be written or is unusable where it is required.

    :ivar path: the cache file concerned
    """

    default_code = ERR_IO_FAILURE

    def __init__(
        self, message: str, *, path: str | None = None, network: str | None = None
    ) -> None:
        super().__init__(message, network=network)
        self.path = path


class MultipleErrors(CNIError):
    """Several independent steps failed (GC over many attachments, a best-effort teardown).

    :ivar errors: every error, in the order the steps were tried
    """

    def __init__(
        self, message: str, errors: Sequence[CNIError], *, network: str | None = None
    ) -> None:
        detail = "; ".join(str(e) for e in errors)
        super().__init__(f"{message}: {detail}", network=network)
        self.errors = tuple(errors)


class PodNetworkError(MultipleErrors):
    """A pod operation failed on one or more of its networks.

    :ivar pod: ``"<namespace>/<name>"`` of the pod
    :ivar operation: ``"set-up"``, ``"teardown"``, ``"status"`` or ``"gc"``
    :ivar failed_networks: the networks that failed, in request order
    :ivar errors: each network's error, in the same order (plugin errors keep their code)
    :ivar rollback_errors: for a set-up, errors of the rollback DELs (the networks named there
        may still be attached: tear the pod down again or run GC)
    """

    def __init__(
        self,
        pod: str,
        operation: str,
        errors: Sequence[CNIError],
        *,
        rollback_errors: Sequence[CNIError] = (),
    ) -> None:
        failed = tuple(dict.fromkeys(e.network or "?" for e in errors))
        what = f"{operation} of pod {pod} failed on network{'s' if len(failed) > 1 else ''} "
        what += ", ".join(repr(n) for n in failed)
        super().__init__(what, errors)
        if len(errors) == 1:
            self.code = errors[0].code
        self.pod = pod
        self.operation = operation
        self.failed_networks = failed
        self.rollback_errors = tuple(rollback_errors)
        if operation == "set-up":
            self.message += (
                "; the networks that were started were rolled back"
                if not rollback_errors
                else "; ROLLBACK FAILED for "
                + ", ".join(repr(e.network) for e in rollback_errors)
                + " (tear the pod down again, or run gc)"
            )


class NamespaceError(CNIError):
    """The pod's network namespace does not exist, or netlink inside it failed.

    :ivar netns: the namespace path
    """

    default_code = ERR_INVALID_NETNS

    def __init__(self, message: str, *, netns: str, code: int | None = None) -> None:
        super().__init__(message, code=code)
        self.netns = netns
