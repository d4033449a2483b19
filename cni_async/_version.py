"""The version of cni_async, read by the build backend."""

__version__ = "0.1.0"
