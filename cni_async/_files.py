"""Reading files that something else may have put in our way.

Every file the library reads (configurations, cache entries, set-up records) lives in a
directory other processes can write to. A FIFO there would block a plain ``open`` until a
writer appears, and a link to a device could be read forever; both would hang the caller, in
a thread no cancellation can stop, or on the event loop itself.
"""

from __future__ import annotations

import errno
import os
import stat

__all__ = ["NotARegularFile", "read_regular_fd", "read_regular_file"]


class NotARegularFile(OSError):
    """A FIFO, device, socket or directory where a regular file was expected."""


def read_regular_file(path: str) -> bytes:
    """The contents of ``path`` if it is a regular file (after following symlinks).

    The open never blocks (``O_NONBLOCK``, which regular files ignore), and anything else (a
    FIFO, a device, a socket, a directory) is refused before a byte is read.

    :raises NotARegularFile: it is not a regular file
    :raises OSError: the file cannot be opened or read
    """
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    try:
        return read_regular_fd(fd, path)
    finally:
        os.close(fd)


def read_regular_fd(fd: int, path: str) -> bytes:
    """``read_regular_file`` for a descriptor the caller opened (without blocking) and closes;
    ``path`` names it in errors.

    :raises NotARegularFile: it is not a regular file
    :raises OSError: it cannot be read
    """
    st = os.fstat(fd)
    if not stat.S_ISREG(st.st_mode):
        raise NotARegularFile(errno.EINVAL, "not a regular file", path)
    chunks = []
    while chunk := os.read(fd, max(st.st_size, 4096)):
        chunks.append(chunk)
    return b"".join(chunks)
