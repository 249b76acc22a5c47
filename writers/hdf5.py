"""HDF5 writer thread for the IOC's file-writer PVs (``HDF1:``).

The readout thread offers blocks; this thread writes them with ``layout``. The
queue is bounded in frames so memory stays bounded; when it is full ``offer``
returns False and the producer decides. A write error (disk full, file system
gone) never blocks the producer: the writer switches to state "error", closes
the file as incomplete and keeps taking blocks, counting them as dropped,
until the series is closed.
"""
from __future__ import annotations

import collections
import logging
import os
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional, Union

from . import layout, wire

log = logging.getLogger(__name__)

IDLE = "idle"
WRITING = "writing"
ERROR = "error"


@dataclass(frozen=True)
class WriterStatus:
    """Snapshot passed to ``on_status`` (from the writer thread) and returned by ``status``."""

    state: str  # "idle" | "writing" | "error"
    path: str
    frames_written: int
    frames_dropped: int  # taken but not written (error, queue overflow counted by caller, close timeout)
    frames_skipped: int  # beyond num_capture, on purpose
    message: str  # human-readable, for WriteMessage
    capture_done: bool  # num_capture reached and the file closed


@dataclass(frozen=True)
class WriteResult:
    """Outcome of one series, returned by ``close_series``."""

    path: str
    frames_written: int
    frames_dropped: int
    frames_skipped: int
    complete: bool
    error: str


@dataclass(frozen=True)
class _Missing:
    """Frames of the series that will never come (recorded in the file, in order with the blocks)."""

    first_frame: int
    count: int


class _Close:
    def __init__(self, complete: bool = True) -> None:
        self.done = threading.Event()
        self.complete = complete   # False: the caller knows frames are missing


class HDF5Writer:
    """One thread writing one series at a time into one HDF5 file."""

    def __init__(self, max_queued_frames: int = 16384,
                 on_status: Optional[Callable[[WriterStatus], None]] = None,
                 status_interval_s: float = 0.2, flush_interval_s: float = 1.0,
                 min_free_bytes: int = layout.MIN_FREE_BYTES,
                 on_stored: Optional[Callable[[int], None]] = None) -> None:
        """``on_stored(frames)``: called from the writer thread whenever more frames of
        the open series are safe in the file (after a flush or the close)."""
        self.max_queued_frames = max_queued_frames
        self.on_stored = on_stored
        self.min_free_bytes = min_free_bytes
        self.on_status = on_status
        self.status_interval_s = status_interval_s
        self.flush_interval_s = flush_interval_s
        self._cond = threading.Condition()
        self._queue: collections.deque[Union[wire.FrameBlock, _Missing, _Close]] = collections.deque()
        self._stored = 0   # frames of the open (or last) series flushed to the file
        self._flush_requested = False
        self._queued_frames = 0
        self._file: Optional[layout.SeriesFile] = None
        self._open = False  # between open_series and the end of close_series
        self._accepting = False  # between open_series and the start of close_series
        self._num_capture = 0
        self._state = IDLE
        self._path = ""
        self._message = ""
        self._last_error = ""
        self._written = 0
        self._dropped = 0
        self._dropped_reasons: dict[str, int] = {}  # the part of _dropped callers gave up on
        self._skipped = 0
        self._capture_done = False
        self._result: Optional[WriteResult] = None
        self._stop = False
        self._last_status = 0.0
        self._status_pending = False
        self._thread = threading.Thread(target=self._run, name="xspress3-hdf5-writer", daemon=True)
        self._thread.start()

    # ---- control (IOC threads) ------------------------------------------------
    def open_series(self, path: Union[str, os.PathLike], start: wire.SeriesStart, compression: str = "None",
                    num_capture: int = 0, overwrite: bool = False) -> None:
        """Create the file now (errors raise here: ValueError, OSError with the path)."""
        if num_capture < 0:
            raise ValueError("num_capture must be >= 0 (0 = unlimited)")
        with self._cond:
            if self._open:
                raise RuntimeError(f"a series is already open ({self._path}); close_series first")
            self._check_running()
        try:
            handle = layout.create(path, start, compression, overwrite=overwrite,
                                   flush_interval_s=self.flush_interval_s, min_free_bytes=self.min_free_bytes)
        except (OSError, ValueError) as exc:
            with self._cond:
                self._state, self._path = ERROR, str(path)
                self._last_error = self._message = str(exc)
                self._status_pending = True
                self._cond.notify_all()
            raise
        with self._cond:
            self._file = handle
            self._open = self._accepting = True
            self._num_capture = num_capture
            self._state, self._path = WRITING, str(path)
            self._message = f"writing {Path(path).name}"
            self._last_error = ""
            self._written = self._dropped = self._skipped = self._stored = 0
            self._dropped_reasons = {}
            self._capture_done = False
            self._result = None
            self._status_pending = True  # on_status runs in the writer thread only
            self._cond.notify_all()

    def offer(self, block: wire.FrameBlock, timeout: float = 0.0, *, only_if_open: bool = False) -> bool:
        """Queue a block. True: taken (queued, or counted because the writer is in error
        or NumCapture is reached). False: no room within ``timeout``.

        Without an open series (none opened, or ``close_series`` called) this raises,
        unless ``only_if_open``: then the block is not for this writer and True is
        returned. The check and the queueing are one step under the writer's lock,
        so a producer racing a close never offers to a closed series."""
        n = block.count
        with self._cond:
            self._check_running()
            if not self._accepting:
                if only_if_open:
                    return True
                raise RuntimeError("offer() without an open series")
            if self._state == ERROR:
                self._dropped += n
                return True
            if self._capture_done:
                self._skipped += n
                return True
            deadline = time.monotonic() + timeout
            while self._queued_frames and self._queued_frames + n > self.max_queued_frames:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._cond.wait(left)
                if not self._accepting:  # closed while waiting for room
                    if only_if_open:
                        return True
                    raise RuntimeError("the series was closed while offer() waited for room")
            self._queue.append(block)
            self._queued_frames += n
            self._cond.notify_all()
        return True

    def note_missing(self, first_frame: int, count: int) -> None:
        """Record in the file, after the blocks queued so far, that frames
        ``first_frame .. first_frame + count - 1`` of the series will never come."""
        with self._cond:
            if not self._accepting:
                raise RuntimeError("note_missing() without an open series")
            self._queue.append(_Missing(first_frame, count))
            self._cond.notify_all()

    def request_flush(self) -> None:
        """Flush what is written as soon as the queue is empty (a receiver gone idle wants
        its frames safe and acknowledged now, not at the next flush interval)."""
        with self._cond:
            self._flush_requested = True
            self._cond.notify_all()

    @property
    def frames_stored(self) -> int:
        """Frames of the open (or last) series safe in the file (flushed)."""
        return self._stored

    @property
    def is_open(self) -> bool:
        """A series is open and takes blocks (False from the start of close_series)."""
        return self._accepting

    def count_dropped(self, n: int, reason: str = "") -> None:
        """Record frames the caller gave up on after ``offer`` returned False."""
        with self._cond:
            self._dropped += n
            if reason:
                self._dropped_reasons[reason] = self._dropped_reasons.get(reason, 0) + n

    @property
    def dropped_reasons(self) -> dict[str, int]:
        """Frames callers gave up on (count_dropped) in the open or last series, by reason."""
        with self._cond:
            return dict(self._dropped_reasons)

    def close_series(self, timeout: float = 30.0, complete: bool = True) -> WriteResult:
        """Write what is queued (up to ``timeout``), close the file and report.

        The file's ``complete`` flag is True when every frame offered was written
        (or skipped on purpose beyond num_capture), no error happened and the
        caller's ``complete`` is True (a receiver passes False when it saw a gap).
        """
        request = _Close(complete)
        with self._cond:
            if not self._accepting:
                raise RuntimeError("close_series() without an open series")
            self._accepting = False  # from here offers find the series closed
            self._queue.append(request)
            self._cond.notify_all()
        if not request.done.wait(timeout):
            log.warning("HDF5 queue not written within %.1f s; dropping the rest", timeout)
            with self._cond:
                self._drop_queued_locked()
            request.done.wait()
        assert self._result is not None
        return self._result

    def close(self, timeout: float = 30.0) -> None:
        """Close any open series and stop the thread."""
        if self._accepting:
            self.close_series(timeout)
        with self._cond:
            self._stop = True
            self._cond.notify_all()
        self._thread.join()

    # ---- status -------------------------------------------------------------
    @property
    def state(self) -> str:
        return self._state

    @property
    def path(self) -> str:
        return self._path

    @property
    def last_error(self) -> str:
        return self._last_error

    @property
    def frames_written(self) -> int:
        return self._written

    @property
    def frames_dropped(self) -> int:
        return self._dropped

    @property
    def frames_skipped(self) -> int:
        return self._skipped

    @property
    def queued_frames(self) -> int:
        return self._queued_frames

    def status(self) -> WriterStatus:
        with self._cond:
            return WriterStatus(self._state, self._path, self._written, self._dropped, self._skipped,
                                self._message, self._capture_done)

    # ---- writer thread -------------------------------------------------------
    def _check_running(self) -> None:
        if self._stop or not self._thread.is_alive():
            raise RuntimeError("HDF5Writer is stopped")

    def _notify(self, force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - self._last_status < self.status_interval_s:
            return
        self._last_status = now
        if self.on_status is None:
            return
        try:
            self.on_status(self.status())
        except Exception:
            log.exception("on_status callback failed")

    def _drop_queued_locked(self) -> None:
        """Count queued blocks as dropped; keep close requests (they still must run)."""
        kept: collections.deque = collections.deque()
        while self._queue:
            item = self._queue.popleft()
            if isinstance(item, wire.FrameBlock):
                self._dropped += item.count
                self._queued_frames -= item.count
            else:
                kept.append(item)
        self._queue.extend(kept)
        self._cond.notify_all()

    def _run(self) -> None:
        while True:
            with self._cond:
                if not self._queue and not self._stop and not self._status_pending and not self._flush_requested:
                    # Wake up now and then while idle to keep the flush-per-interval promise.
                    self._cond.wait(min(max(self.flush_interval_s / 2, 0.05), 0.5))
                if self._stop and not self._queue:
                    return
                item = self._queue.popleft() if self._queue else None
                if isinstance(item, wire.FrameBlock):
                    self._queued_frames -= item.count
                self._cond.notify_all()
                status_pending, self._status_pending = self._status_pending, False
                flush_now = item is None and self._flush_requested
                if item is None:
                    self._flush_requested = False
            if status_pending:
                self._notify(force=True)
            if item is None:
                self._idle_flush(flush_now)
            elif isinstance(item, _Close):
                self._close_file(item.complete)
                item.done.set()
            elif isinstance(item, _Missing):
                if self._file is not None and not self._file.closed:
                    self._file.note_missing(item.first_frame, item.count)
            else:
                self._write(item)
            self._report_stored()

    def _idle_flush(self, now: bool = False) -> None:
        """Keep the once-a-second flush promise when blocks stop arriving (``now``: flush
        at once if anything is unflushed)."""
        handle = self._file
        if handle is None or handle.closed:
            return
        try:
            if now and handle.frames_flushed < handle.frames_written:
                handle.flush()
            else:
                handle.flush_if_due()
        except Exception as exc:
            self._fail(exc)

    def _report_stored(self) -> None:
        """Publish the flushed frame count when it grew (writer thread)."""
        handle = self._file
        if handle is None:
            return
        stored = handle.frames_flushed
        if stored > self._stored:
            with self._cond:
                self._stored = stored
            if self.on_stored is not None:
                try:
                    self.on_stored(stored)
                except Exception:
                    log.exception("on_stored callback failed")

    def _write(self, block: wire.FrameBlock) -> None:
        handle = self._file
        with self._cond:
            state, done = self._state, self._capture_done
        if state == ERROR or handle is None:
            with self._cond:
                self._dropped += block.count
            return
        if done:
            with self._cond:
                self._skipped += block.count
            return
        take = block.count
        if self._num_capture:
            take = min(take, self._num_capture - self._written)
        try:
            handle.append(block if take == block.count else block.slice(0, take))
        except Exception as exc:
            with self._cond:
                self._dropped += block.count
            self._fail(exc)
            return
        with self._cond:
            self._written += take
            self._skipped += block.count - take
        if self._num_capture and self._written >= self._num_capture:
            self._finish_capture(handle)
        else:
            self._notify()

    def _finish_capture(self, handle: layout.SeriesFile) -> None:
        try:
            handle.close(complete=True)
        except Exception as exc:
            self._fail(exc)
            return
        with self._cond:
            self._capture_done = True
            self._state = IDLE
            self._message = f"captured {self._written} frames into {Path(handle.path).name}"
        self._notify(force=True)

    def _fail(self, exc: BaseException) -> None:
        log.error("HDF5 write to %s failed: %s", self._path, exc)
        handle = self._file
        if handle is not None and not handle.closed:
            try:
                handle.close(complete=False)  # normal close if the handle is intact, else detached
            except Exception:
                log.exception("closing %s after the error failed too", self._path)
        with self._cond:
            self._state = ERROR
            self._last_error = self._message = str(exc)
        self._notify(force=True)

    def _close_file(self, caller_complete: bool = True) -> None:
        handle = self._file
        with self._cond:
            error = self._state == ERROR
        complete = caller_complete and not error and self._dropped == 0
        if handle is not None and not handle.closed:
            try:
                handle.close(complete=complete)
            except Exception as exc:
                complete = False
                self._fail(exc)
        self._report_stored()
        with self._cond:
            self._result = WriteResult(self._path, self._written, self._dropped, self._skipped,
                                       complete and self._state != ERROR, self._last_error)
            self._file = None
            self._open = False
            if self._state != ERROR:
                self._state = IDLE
                self._message = (f"wrote {self._written} frames to {Path(self._path).name}"
                                 + ("" if complete else f", {self._dropped} dropped"))
        self._notify(force=True)
