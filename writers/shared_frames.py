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
let go of every view of it (``Ack.shared_released``, counted in leases, one per
block): the readout cannot reuse that memory while the receiver reads it. Files
are created mode 0600 and removed when the IOC closes the stream.
"""
from __future__ import annotations

import logging
import mmap
import fcntl
import os
import re
import secrets
import stat
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
#: Every segment's file name (the probe is segment 0); group 1: one IOC's prefix
_SEGMENT_NAME = re.compile(r"^(xspress3-\d+-[0-9a-f]{8})-\d+$")
#: Segments a receiver keeps mapped for later blocks: the probe, the IOC's pool and
#: the pool before it (views of older ones keep their own mapping)
MAPS_KEPT = 3


class SharedFramesError(OSError):
    """A segment cannot be used (missing, another token, outside the directory)."""


def pid_namespace() -> int:
    """This process's pid namespace (inode of /proc/self/ns/pid), 0 where unknown: a
    pid names a process only in its own namespace."""
    try:
        return os.stat("/proc/self/ns/pid").st_ino
    except OSError:
        return 0


def process_alive(pid: int) -> bool:
    """The process runs (or is a zombie not yet reaped: its memory may still be read)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def directory_for(setting: Optional[str]) -> str:
    """The directory of the frame memory for the IOC's setting (--stream-shm): None,
    /dev/shm where it exists and is writable; "", none. Absolute: the receiver is
    told this path."""
    if setting is None:
        setting = DEFAULT_DIR if os.path.isdir(DEFAULT_DIR) and os.access(DEFAULT_DIR, os.W_OK) else ""
    return os.path.realpath(setting) if setting else ""


def _header(token: str) -> bytes:
    return MAGIC + token.encode("ascii")


def _check_name(name: str) -> None:
    if not _SEGMENT_NAME.match(name):
        raise SharedFramesError(f"not a segment name: {name!r}")


@dataclass
class _Segment:
    name: str
    path: str


def _lock_file(fd: int) -> bool:
    """Take the exclusive lock of a segment file without waiting; False if another
    process holds it. The IOC holds its probe's lock for its life: the kernel drops
    it when the IOC dies, whatever its pid means here (containers, pid reuse)."""
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return True
    except BlockingIOError:
        return False


def remove_stale(directory: str) -> list[str]:
    """Remove the segments of IOCs that died without removing them (SIGKILL), ours only:
    each holds up to ~130 MB of memory until the host restarts. An IOC's files share
    the prefix of its probe (segment 0), whose lock it holds while it runs. Returns
    the names removed."""
    groups: dict[str, list[str]] = {}
    for name in os.listdir(directory):
        match = _SEGMENT_NAME.match(name)
        if match is not None:
            groups.setdefault(match.group(1), []).append(name)
    removed = []
    for prefix, names in groups.items():
        probe = os.path.join(directory, f"{prefix}-0")
        try:
            if os.stat(probe).st_uid != os.getuid():
                continue
            fd = os.open(probe, os.O_RDONLY | os.O_NOFOLLOW)
        except FileNotFoundError:
            fd = None          # its probe is gone: nobody can hold the lock
        except OSError:
            continue
        try:
            if fd is not None and not _lock_file(fd):
                continue       # that IOC runs
            for name in names:
                try:
                    os.unlink(os.path.join(directory, name))
                    removed.append(name)
                except FileNotFoundError:
                    pass
                except OSError as exc:
                    log.warning("stale shared frame memory %s not removed: %s", name, exc)
        finally:
            if fd is not None:
                os.close(fd)
    if removed:
        log.info("removed shared frame memory of IOCs no longer running: %s", ", ".join(sorted(removed)))
    return removed


class SharedPool:
    """IOC side: segments of frame memory in `directory` (absolute: the receiver is told
    it), and where an array lies in them."""

    def __init__(self, directory: str) -> None:
        self.directory = directory
        self.token = secrets.token_hex(16)
        self._prefix = f"xspress3-{os.getpid()}-{self.token[:8]}"
        self._segment: Optional[_Segment] = None   # the pool's; older ones are removed
        #: id(base) -> (weak reference to the base, segment name, offset of the base):
        #: arrays are found by the base they view, never by address (a freed segment's
        #: addresses may be reused by the next one)
        self._bases: dict[int, tuple] = {}
        self._count = 0
        self._lock = threading.Lock()
        remove_stale(directory)
        self._probe = self._create(0)[0]
        self._probe_fd: Optional[int] = os.open(self._probe.path, os.O_RDONLY)
        _lock_file(self._probe_fd)

    @property
    def probe(self) -> str:
        """File name of the probe segment (header only)."""
        return self._probe.name

    def _create(self, nbytes: int) -> tuple[_Segment, mmap.mmap]:
        name = f"{self._prefix}-{self._count}"
        self._count += 1
        path = os.path.join(self.directory, name)
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
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
        return _Segment(name, path), mm

    def arrays(self, count: int, shape: tuple, dtype=np.uint32) -> list[np.ndarray]:
        """`count` arrays of `shape` in one new segment. Each is its own base (views of
        it keep it, not the segment, alive), as SpectrumBuffers counts references per base.
        The previous segment leaves the directory now: a new pool is made between runs,
        when the stream has no block of the last one in flight, and a receiver that
        mapped it keeps its mapping; its memory goes with the last mapping."""
        one = int(np.prod(shape)) * np.dtype(dtype).itemsize
        segment, mm = self._create(count * one)
        # np.ndarray over the mapping (not a reshaped frombuffer, itself a view): views of
        # a base then refer to the base
        bases = [np.ndarray(shape, dtype, buffer=mm, offset=HEADER_BYTES + i * one)
                 for i in range(count)]
        with self._lock:
            old, self._segment = self._segment, segment
            self._bases = {k: v for k, v in self._bases.items() if v[0]() is not None}
            for i, base in enumerate(bases):
                self._bases[id(base)] = (weakref.ref(base), segment.name, HEADER_BYTES + i * one)
        if old is not None:
            self._remove(old)
        return bases

    def locate(self, arr: np.ndarray) -> Optional[tuple[str, int]]:
        """(segment name, byte offset) of a C-contiguous array that is one of our bases
        or a view of one, else None."""
        base = arr if arr.base is None or not isinstance(arr.base, np.ndarray) else arr.base
        entry = self._bases.get(id(base))
        if entry is None or entry[0]() is not base or not arr.flags.c_contiguous:
            return None
        start = arr.__array_interface__["data"][0] - base.__array_interface__["data"][0]
        return entry[1], entry[2] + start

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
            segment, self._segment = self._segment, None
            self._bases = {}
        for s in (segment, self._probe):
            if s is not None:
                self._remove(s)
        if self._probe_fd is not None:
            os.close(self._probe_fd)
            self._probe_fd = None


class SharedMaps:
    """Receiver side: the IOC's segments, mapped read-only on first use, and the
    count of shared blocks whose every view is gone (`released`)."""

    def __init__(self, directory: str, token: str) -> None:
        self.directory = directory
        self.token = token
        self._maps: dict[str, mmap.mmap] = {}    # oldest first
        # reentrant: a garbage collection inside `release` may run a finalizer, which
        # releases another lease in the same thread
        self._lock = threading.RLock()
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
        try:   # no link, no FIFO that would block the open: a regular file of our user
            fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
        except OSError as exc:
            raise SharedFramesError(f"cannot open shared frame memory {path}: {exc.strerror}") from exc
        try:
            info = os.fstat(fd)
            if not stat.S_ISREG(info.st_mode) or info.st_uid != os.getuid():
                raise SharedFramesError(f"{path} is not a file of this user")
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
        while len(self._maps) > MAPS_KEPT:   # the IOC removed older ones; views keep their own
            del self._maps[next(iter(self._maps))]
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
