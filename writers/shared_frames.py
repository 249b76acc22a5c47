"""Frame memory shared between the IOC and a receiver on the same host.

Why: sending a 64 KiB frame over a socket costs the IOC a copy into the kernel
and the receiver a copy out of it, plus the I/O threads that do them: about half
of each side's CPU per frame (benchmarks/README.md). When the receiver runs on
the IOC's host, the readout reads the detector's frames straight into files
under /dev/shm (`SharedPool`), and a frames message names where its spectra lie
instead of carrying them; the receiver maps the same files (`SharedMaps`) and
writes from them. Nothing is copied between the processes.

Safety: a receiver uses shared memory only after reading a random token from the
IOC's probe file (same host, same user), and every segment starts with that
token. The IOC keeps each block it sent by reference until the receiver says it
let go of every view of it (``Ack.shared_released``, counted in blocks): the
readout cannot reuse that memory while the receiver reads it. Files are created
mode 0600 and removed when the IOC closes the stream.
"""
from __future__ import annotations

import logging
import mmap
import os
import re
import secrets
import threading
import weakref
from dataclasses import dataclass
from typing import Optional

import numpy as np

log = logging.getLogger(__name__)

MAGIC = b"XSP3SHM1"
#: Bytes before a segment's arrays: the magic and the token, padded to a page.
HEADER_BYTES = 4096
DEFAULT_DIR = "/dev/shm"
_NAME_CHARS = frozenset("abcdefghijklmnopqrstuvwxyz0123456789-.")
_SEGMENT_NAME = re.compile(r"^xspress3-(\d+)-[0-9a-f]{8}-\d+$")


class SharedFramesError(OSError):
    """A segment cannot be used (missing, another token, outside the directory)."""


def default_directory() -> str:
    """/dev/shm where it exists and is writable, else "" (no shared memory)."""
    return DEFAULT_DIR if os.path.isdir(DEFAULT_DIR) and os.access(DEFAULT_DIR, os.W_OK) else ""


def _header(token: str) -> bytes:
    return MAGIC + token.encode("ascii")


def _check_name(name: str) -> None:
    if not name or name.startswith(".") or not set(name) <= _NAME_CHARS:
        raise SharedFramesError(f"not a segment name: {name!r}")


@dataclass
class _Segment:
    name: str
    path: str
    address: int     # of the first array byte
    size: int        # array bytes


def remove_stale(directory: str) -> list[str]:
    """Remove the segments of IOCs that died without removing them (SIGKILL), ours only:
    each holds up to ~130 MB of memory until the host restarts. Returns their names."""
    removed = []
    for name in os.listdir(directory):
        match = _SEGMENT_NAME.match(name)
        if match is None:
            continue
        path = os.path.join(directory, name)
        try:
            if os.stat(path).st_uid != os.getuid():
                continue
            os.kill(int(match.group(1)), 0)
            continue                       # that IOC runs
        except ProcessLookupError:
            pass
        except (PermissionError, FileNotFoundError):
            continue                       # another user's process, or gone meanwhile
        try:
            os.unlink(path)
            removed.append(name)
        except OSError as exc:
            log.warning("stale shared frame memory %s not removed: %s", path, exc)
    if removed:
        log.info("removed shared frame memory of IOCs no longer running: %s", ", ".join(removed))
    return removed


class SharedPool:
    """IOC side: segments of frame memory in `directory`, and where an array lies in them."""

    def __init__(self, directory: Optional[str] = None) -> None:
        self.directory = default_directory() if directory is None else directory
        self.token = secrets.token_hex(16)
        self._prefix = f"xspress3-{os.getpid()}-{self.token[:8]}"
        self._segments: list[_Segment] = []
        self._count = 0
        self._lock = threading.Lock()
        self._probe: Optional[_Segment] = None
        if self.directory:
            remove_stale(self.directory)
            self._probe = self._create(0)[0]

    @property
    def probe(self) -> str:
        """File name of the probe segment (header only), "" without a directory."""
        return self._probe.name if self._probe is not None else ""

    def _create(self, nbytes: int) -> tuple[_Segment, mmap.mmap]:
        name = f"{self._prefix}-{self._count}"
        self._count += 1
        path = os.path.join(self.directory, name)
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            # reserve the pages now: a full tmpfs then fails here (ENOSPC), where touching
            # a page of a sparse file later would kill the IOC with SIGBUS
            os.posix_fallocate(fd, 0, HEADER_BYTES + nbytes)
            mm = mmap.mmap(fd, HEADER_BYTES + nbytes)
        except OSError:
            os.unlink(path)
            raise
        finally:
            os.close(fd)
        mm[:len(_header(self.token))] = _header(self.token)
        address = np.frombuffer(mm, np.uint8, count=1, offset=HEADER_BYTES).ctypes.data if nbytes else 0
        return _Segment(name, path, address, nbytes), mm

    def arrays(self, count: int, shape: tuple, dtype=np.uint32) -> list[np.ndarray]:
        """`count` arrays of `shape` in one new segment. Each is its own base (views of
        it keep it, not the segment, alive), as SpectrumBuffers counts references per base.
        Segments two allocations old are removed from the directory (a receiver that
        mapped them keeps its mapping)."""
        one = int(np.prod(shape)) * np.dtype(dtype).itemsize
        segment, mm = self._create(count * one)
        with self._lock:
            old, self._segments = self._segments[:-1], self._segments[-1:] + [segment]
        for s in old:
            self._remove(s)
        # np.ndarray over the mapping (not a reshaped frombuffer, itself a view): views of
        # a base then refer to the base
        return [np.ndarray(shape, dtype, buffer=mm, offset=HEADER_BYTES + i * one)
                for i in range(count)]

    def locate(self, arr: np.ndarray) -> Optional[tuple[str, int]]:
        """(segment name, byte offset) of a C-contiguous array inside a segment, else None."""
        if not arr.flags.c_contiguous:
            return None
        address = arr.__array_interface__["data"][0]
        for s in self._segments:
            if s.address <= address and address + arr.nbytes <= s.address + s.size:
                return s.name, HEADER_BYTES + address - s.address
        return None

    @staticmethod
    def _remove(segment: _Segment) -> None:
        try:
            os.unlink(segment.path)
        except FileNotFoundError:
            pass
        except OSError as exc:
            log.warning("shared frame memory %s not removed: %s", segment.path, exc)

    def close(self) -> None:
        """Remove every segment file (mappings in use stay valid until unmapped)."""
        with self._lock:
            segments, self._segments = self._segments, []
        if self._probe is not None:
            segments.append(self._probe)
        for s in segments:
            self._remove(s)


class SharedMaps:
    """Receiver side: the IOC's segments, mapped read-only on first use, and the
    count of shared blocks whose every view is gone (`released`)."""

    def __init__(self, directory: str, token: str) -> None:
        self.directory = directory
        self.token = token
        self._maps: dict[str, mmap.mmap] = {}
        self._lock = threading.Lock()
        self._done: set[int] = set()
        #: leases 0.. released-1 are all released (the count the IOC is told)
        self.released = 0

    def check_probe(self, name: str) -> None:
        """Raise SharedFramesError unless the probe file holds our token."""
        self._map(name)

    def _map(self, name: str) -> mmap.mmap:
        mm = self._maps.get(name)
        if mm is not None:
            return mm
        _check_name(name)
        path = os.path.join(self.directory, name)
        try:
            fd = os.open(path, os.O_RDONLY)
        except OSError as exc:
            raise SharedFramesError(f"cannot open shared frame memory {path}: {exc.strerror}") from exc
        try:
            mm = mmap.mmap(fd, 0, prot=mmap.PROT_READ)
        except (OSError, ValueError) as exc:
            raise SharedFramesError(f"cannot map shared frame memory {path}: {exc}") from exc
        finally:
            os.close(fd)
        header = _header(self.token)
        if len(mm) < HEADER_BYTES or mm[:len(header)] != header:
            mm.close()
            raise SharedFramesError(f"{path} is not the IOC's shared frame memory (token differs)")
        self._maps[name] = mm
        return mm

    def array(self, name: str, offset: int, lease: int, dtype: str, shape: list) -> np.ndarray:
        """A read-only view of the spectra at `offset` in segment `name`; `lease` is
        released when the last view of it is gone (at once if it cannot be made)."""
        try:
            mm = self._map(name)
            count = int(np.prod(shape))
            if offset < HEADER_BYTES or offset + count * np.dtype(dtype).itemsize > len(mm):
                raise SharedFramesError(f"offset {offset} outside shared frame memory {name}")
            base = np.frombuffer(mm, dtype, count=count, offset=offset)
        except Exception:
            self.release(lease)
            raise
        weakref.finalize(base, self.release, lease)
        return base.reshape(shape)

    def release(self, lease: int) -> None:
        """This lease's memory is not read here any more. Leases are numbered by the IOC;
        the count it is told covers only leases all released before it, so one still
        held keeps every later one from counting (never the other way round)."""
        # finalizers run in whichever thread drops the last view (the writer's, often)
        with self._lock:
            if lease >= self.released:
                self._done.add(lease)
            while self.released in self._done:
                self._done.remove(self.released)
                self.released += 1

    def close(self) -> None:
        """Drop the mappings (arrays still using one keep it alive)."""
        self._maps.clear()
