"""Checks on the file names and directories HDF1: is given, before anything is written.

Why here and not in the writer: a put of a bad FileName or FilePath must be
refused at the put, with the reason, so a scan fails at its set-up rather than
after the first run has been taken.

- FileName is one path component: no '/', no NUL, at most 255 bytes (NAME_MAX).
- With a data root (`xspress3-ioc --data-root DIR`), a directory is accepted only
  if it resolves, after '..' and symbolic links, to DIR or below it.
- A directory "exists" for FilePathExists_RBV only if a file can really be created
  in it: permission bits say yes for read-only mounts and for /proc, so a scratch
  file is created and removed.
"""
from __future__ import annotations

import errno
import os
import tempfile
from typing import Optional

NAME_MAX_BYTES = 255


class PathRefused(ValueError):
    """A file name or directory that the IOC will not write to; the text says why."""


def check_file_name(name: str) -> str:
    if not name:
        raise PathRefused("FileName is empty")
    if "\0" in name:
        raise PathRefused("FileName holds a NUL character")
    if "/" in name:
        raise PathRefused(f"FileName {name!r} holds '/': put directories in FilePath")
    if name in (".", ".."):
        raise PathRefused(f"FileName {name!r} is not a file name")
    if len(os.fsencode(name)) > NAME_MAX_BYTES:
        raise PathRefused(f"FileName is longer than {NAME_MAX_BYTES} bytes")
    return name


def resolve_directory(path: str, data_root: Optional[str]) -> str:
    """The directory as the system will reach it; refused outside the data root."""
    if not path:
        raise PathRefused("FilePath is empty")
    if "\0" in path:
        raise PathRefused("FilePath holds a NUL character")
    if not os.path.isabs(path):
        raise PathRefused(f"FilePath {path!r} is not an absolute path")
    resolved = os.path.realpath(path)
    if data_root is not None:
        root = os.path.realpath(data_root)
        if os.path.commonpath([root, resolved]) != root:
            raise PathRefused(f"FilePath {path!r} resolves to {resolved}, outside the data root {root}")
    return resolved


def creation_error(directory: str) -> Optional[OSError]:
    """None if a scratch file can be created in `directory` (and is removed), else
    the operating system's error for creating it."""
    try:
        fd, scratch = tempfile.mkstemp(prefix=".xspress3-probe-", dir=directory)
    except OSError as ex:
        return ex
    os.close(fd)
    os.unlink(scratch)
    return None


def probe_writable(directory: str) -> Optional[str]:
    """None if a file can be created in `directory`, else the operating system's reason."""
    if not os.path.isdir(directory):
        return f"{directory} is not an existing directory"
    error = creation_error(directory)
    if error is not None:
        return f"cannot create files in {directory}: {os.strerror(error.errno or errno.EIO)}"
    return None
