"""HDF1 capture: the series consumer that writes captured frames with writers.hdf5.

Capture=1 (`arm`) names the file and checks the directory at once (a bad path is
refused, with WriteStatus/WriteMessage set: file_paths.py's rules, and the
directory must take a scratch file); the file itself opens when the next series
begins, because only then are channels, bins and exposure known. An open that
fails then reports the operating system's reason.
Frames of several runs append to the same file until NumCapture frames are
written (then the file closes and Capture returns to 0) or Capture is set to 0,
which always closes the file promptly.

NumCaptured_RBV and FramesDropped_RBV describe the current (or last) capture
only: both start at 0 at Capture=1. Frames of a series that the capture was
meant to take but could not (its file failed to open, or a write failed and the
file was closed) count in FramesDropped_RBV until that series ends.

Whether a file is open is the writer's state alone (`HDF5Writer.is_open`); this
class adds only the armed path and shows the writer's state through the
controller's `Publisher`. It never reads a PV: the HDF1 settings come in as a
`CaptureTarget` and the EnableCallbacks flag. File I/O runs in the writer's
thread; opening and closing run off the loop.
"""
from __future__ import annotations

import asyncio
import functools
import logging
import os
import threading
from dataclasses import dataclass
from typing import Awaitable, Callable, Optional

from xspress3.writers.hdf5 import ERROR as WRITER_ERROR, HDF5Writer, WriteResult
from xspress3.writers.layout import COMPRESSIONS
from xspress3.writers.wire import FrameBlock, SeriesStart

from .file_paths import (PathRefused, check_file_name, creation_error, probe_writable,
                         resolve_directory)
from .options import IocOptions
from .publisher import Out, Publisher, Rejected

log = logging.getLogger(__name__)

#: A coroutine function to run on the event loop, in order with the readout's reports
Post = Callable[[Callable[[], Awaitable[None]]], None]


def format_file_name(template: str, path: str, name: str, number: int) -> str:
    """areaDetector style: template % (path, name, number); path gets a trailing '/'."""
    if path and not path.endswith(os.sep):
        path += os.sep
    try:
        return template % (path, name, number)
    except (TypeError, ValueError) as ex:
        raise Rejected(f"FileTemplate {template!r} does not take (path, name, number): {ex}") from ex


@dataclass(frozen=True)
class CaptureTarget:
    """What Capture=1 needs: the HDF1 readbacks at the put."""

    directory: str
    template: str
    name: str
    number: int
    create_directory: bool
    auto_increment: bool
    compression: str


def check_compression(value: str) -> None:
    if value not in COMPRESSIONS:
        raise Rejected(f"compression {value} is not supported; use one of {', '.join(COMPRESSIONS)}")


def os_reason(ex: BaseException) -> str:
    """The operating system's words for a failed file operation (strerror), else the text."""
    if isinstance(ex, OSError) and ex.errno:
        return ex.strerror or os.strerror(ex.errno)
    return str(ex) or type(ex).__name__


def open_failure_reason(path: str, ex: BaseException) -> str:
    """Why a file could not be opened, in the system's words: the error's own errno,
    else what creating a file in its directory answers now (the writer's pre-checks
    raise without one), else the error's text."""
    if isinstance(ex, OSError) and ex.errno:
        return os_reason(ex)
    probe = creation_error(os.path.dirname(path))
    return os_reason(probe) if probe is not None else (str(ex) or type(ex).__name__)


class FileCapture:
    """A consumer.SeriesConsumer writing captured frames (see module docstring)."""

    name = "file writer"

    def __init__(self, options: IocOptions, publisher: Publisher, post: Post):
        self.stall_timeout = options.file_stall_timeout
        self.data_root = options.data_root
        self._queue_frames = options.file_queue_frames
        self.publisher = publisher
        self._post = post
        self.writer: Optional[HDF5Writer] = None   # its thread starts with the IOC (start())
        # HDF1 settings that may change while capturing, kept current by the IOC:
        self.enabled = True                         # EnableCallbacks
        self.num_capture = 1                        # NumCapture, taken when a file opens
        self._target: Optional[CaptureTarget] = None
        self._path = ""                             # armed: the file the next series opens
        self._done: Optional[asyncio.Event] = None  # set when the capture ends
        self._open_close = threading.Lock()         # one open or close at a time
        self._closed_at_end: Optional[WriteResult] = None   # closed by end_series, not yet shown
        self._losses_before: dict = {}   # the open file's losses when the series began
        # A capture that failed while its series runs: offers are diverted here and
        # counted as not written, on top of the counts its file showed when it closed.
        self._diverted = False
        self._failed_counts: Optional[tuple[int, int]] = None
        self._unwritten = 0
        self._in_series = False          # between begin_series and end_series
        self._count_lock = threading.Lock()

    def start(self) -> None:
        self.writer = HDF5Writer(max_queued_frames=self._queue_frames,
                                 on_status=self._on_status_thread)

    @property
    def capturing(self) -> bool:
        """Capture is armed (a file is named; it may not be open yet)."""
        return self._target is not None

    # ---- capture (event loop) -----------------------------------------------------------
    async def arm(self, target: CaptureTarget) -> None:
        """Capture=1: name the file now; it opens with the next series."""
        if self._target is not None:
            raise Rejected("already capturing; set Capture to 0 first")
        check_compression(target.compression)
        try:
            path = await asyncio.to_thread(self._name_file, target, self.data_root)
        except (Rejected, OSError) as ex:
            text = str(ex) if isinstance(ex, Rejected) else f"cannot create {target.directory}: {os_reason(ex)}"
            await self._error(text)
            raise Rejected(text) from ex
        pub = self.publisher
        self._path = path
        with self._count_lock:
            self._diverted, self._failed_counts = False, None
        # as areaDetector does: the number moves on once a file has been named with it
        if target.auto_increment:
            await pub.publish(Out.FILE_NUMBER, target.number + 1)
        await pub.publish(Out.FILE_PATH_EXISTS, True)
        await pub.publish(Out.FILE_NAME, path)
        await pub.publish(Out.FILE_COUNTS, (0, 0))
        await pub.publish(Out.WRITE_STATUS, (True, f"Capturing to {path}"))
        await pub.publish(Out.CAPTURING, True)
        self._target = target
        self._done = asyncio.Event()

    async def wait(self) -> None:
        """Until the capture armed last ends (a Capture put completes then)."""
        if self._done is not None:
            await self._done.wait()

    @staticmethod
    def _name_file(t: CaptureTarget, data_root: Optional[str]) -> str:
        """The file's path: in FilePath resolved (under the data root), never an existing file."""
        try:
            check_file_name(t.name)
            directory = resolve_directory(t.directory, data_root)
        except PathRefused as ex:
            raise Rejected(str(ex)) from ex
        if not os.path.isdir(directory):
            if not t.create_directory:
                raise Rejected(f"directory {t.directory!r} does not exist "
                               "(set CreateDirectory to create it)")
            os.makedirs(directory, exist_ok=True)
        problem = probe_writable(directory)
        if problem is not None:
            raise Rejected(problem)
        path = format_file_name(t.template, directory, t.name, t.number)
        if os.path.lexists(path):
            raise Rejected(f"file {path} already exists; change FileName or FileNumber")
        if os.path.dirname(os.path.realpath(path)) != directory:
            raise Rejected(f"FileTemplate {t.template!r} puts the file outside FilePath ({path})")
        return path

    async def stop(self, message: str, failed: bool = False) -> None:
        """Capture=0 (or capture complete / failed): close the file if open, end the capture.
        `failed`: the rest of the running series is counted as not written."""
        if failed:
            self._divert()
        result = await asyncio.to_thread(self._close)
        if result is not None:
            await self._closed(result, message)
            if failed:
                with self._count_lock:
                    self._failed_counts = (result.frames_written, result.frames_dropped)
        await self._end_capture()

    def _divert(self, counts: Optional[tuple[int, int]] = None) -> None:
        """The capture failed: frames offered until its series ends are not written
        (`counts`: the failed file's written and dropped frames, once known)."""
        with self._count_lock:
            if self._in_series:
                self._diverted, self._failed_counts, self._unwritten = True, counts, 0

    async def _closed(self, result: WriteResult, message: str) -> None:
        log.info("file %s closed: %s", result.path, result)
        await self.publisher.publish(Out.FILE_COUNTS, (result.frames_written, result.frames_dropped))
        if result.error:
            await self._error(result.error)
        elif not result.complete:
            await self._error(f"{result.frames_dropped} frames not written to {result.path}")
        else:
            await self.publisher.publish(Out.WRITE_STATUS, (True, f"{message}: {result.path}"[:255]))

    async def _end_capture(self) -> None:
        self._target = None
        await self.publisher.publish(Out.FILE_WRITING, False)
        await self.publisher.publish(Out.CAPTURING, False)
        if self._done is not None:
            self._done.set()
            self._done = None

    async def _error(self, message: str) -> None:
        log.error("file writer: %s", message)
        await self.publisher.publish(Out.WRITE_STATUS, (False, message[:255]))

    async def post_status(self) -> None:
        """Counters out; ends the capture when NumCapture is reached or the file failed."""
        if self.writer is None:
            return
        closed, self._closed_at_end = self._closed_at_end, None
        if closed is not None:
            await self._closed(closed, "Capture complete")
            await self._end_capture()
            return
        with self._count_lock:
            failed, unwritten = self._failed_counts, self._unwritten
            if not self._diverted:
                self._failed_counts = None
        if failed is not None:
            await self.publisher.publish(Out.FILE_COUNTS, (failed[0], failed[1] + unwritten))
        if not self.writer.is_open:
            return   # the counts of a closed file were shown when it closed
        status = self.writer.status()
        await self.publisher.publish(Out.FILE_COUNTS, (status.frames_written, status.frames_dropped))
        if status.state == WRITER_ERROR:
            await self._error(status.message or "write failed")
            await self.stop("Capture failed", failed=True)
        elif status.capture_done:
            await self.stop("Capture complete")

    def _on_status_thread(self, *_args) -> None:
        """Writer thread callback: refresh the PVs from the loop."""
        self._post(self.post_status)

    # ---- consumer.SeriesConsumer ---------------------------------------------------------
    def begin_series(self, start: SeriesStart) -> None:
        """A series starts (off the loop): open the file if capture is armed and none is open."""
        with self._count_lock:
            self._in_series = True
        target = self._target
        if target is None:
            return
        with self._open_close:
            if self.writer.is_open:
                self._losses_before = self.writer.dropped_reasons
                return
            try:
                self.writer.open_series(self._path, start, target.compression, self.num_capture)
            except Exception as ex:
                self._divert((0, 0))
                self._post(functools.partial(self._open_failed,
                                             f"cannot open {self._path}: {open_failure_reason(self._path, ex)}"))
                return
            self._losses_before = self.writer.dropped_reasons
        self._post(functools.partial(self.publisher.publish, Out.FILE_WRITING, True))

    async def _open_failed(self, message: str) -> None:
        await self.publisher.publish(Out.FILE_COUNTS, (0, 0))
        await self._error(message)
        await self._end_capture()

    def offer(self, block: FrameBlock, timeout: float = 0.0) -> bool:
        """Readout thread: to the writer if a file is open (checked under the writer's lock)."""
        if not self.enabled:
            return True
        if self._diverted:
            with self._count_lock:
                if self._diverted:
                    self._unwritten += block.count
                    return True
        return self.writer.offer(block, timeout, only_if_open=True)

    def count_lost(self, frames: int, reason: str) -> None:
        log.warning("file writer: %d frames not written: %s", frames, reason)
        self.writer.count_dropped(frames, reason)

    def losses(self) -> dict[str, int]:
        """The file's losses since this series began (a file may span several series)."""
        if not self.writer.is_open:
            return {}
        before = self._losses_before
        now = self.writer.dropped_reasons
        return {r: n - before.get(r, 0) for r, n in now.items() if n > before.get(r, 0)}

    def end_series(self, final_state: str) -> None:
        """A series ended (off the loop); the file stays open for the next one unless
        the capture is complete or failed."""
        with self._count_lock:
            self._in_series = self._diverted = False
        status = self.writer.status()
        if not (status.capture_done or status.state == WRITER_ERROR):
            return
        # shown by the next post_status, which the controller awaits after every series
        self._closed_at_end = self._close()

    def _close(self) -> Optional[WriteResult]:
        """Close the open file, if any (blocking); offers racing it are not taken."""
        with self._open_close:
            if self.writer is None or not self.writer.is_open:
                return None
            return self.writer.close_series(self.stall_timeout)

    def close_now(self, message: str) -> None:
        """Shutdown: close any open file (blocking; called off the loop)."""
        if self.writer is not None:
            self.writer.close(self.stall_timeout)
