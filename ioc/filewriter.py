"""HDF1 capture: the bridge between the `HDF1:` PVs and xspress3.writers.hdf5.

Capture=1 names the file and checks the directory at once (a bad path is
rejected at the put, with WriteStatus/WriteMessage set); the file itself opens
when the next run starts, because only then are channels, bins and exposure
known. Frames of several runs append to the same file until NumCapture frames
are written (then the file closes and Capture returns to 0) or Capture is set
to 0, which always closes the file promptly. File I/O runs in the writer's
thread; this class only moves settings in and status out.
"""
from __future__ import annotations

import asyncio
import logging
import os
import threading
from typing import Optional

from xspress3.writers.hdf5 import HDF5Writer
from xspress3.writers.layout import COMPRESSIONS
from xspress3.writers.wire import FrameBlock, SeriesStart

from .options import IocOptions
from .pvtypes import PutRejected

log = logging.getLogger(__name__)


def format_file_name(template: str, path: str, name: str, number: int) -> str:
    """areaDetector style: template % (path, name, number); path gets a trailing '/'."""
    if path and not path.endswith(os.sep):
        path += os.sep
    try:
        return template % (path, name, number)
    except (TypeError, ValueError) as ex:
        raise PutRejected(f"FileTemplate {template!r} does not take (path, name, number): {ex}") from ex


class FileCapture:
    """Readout consumer that writes captured frames (see module docstring)."""

    name = "file writer"

    def __init__(self, ioc, options: IocOptions):
        self.ioc = ioc
        self.stall_timeout = options.file_stall_timeout
        self._queue_frames = options.file_queue_frames
        self.writer: Optional[HDF5Writer] = None   # its thread starts with the IOC (start())
        self.capturing = False
        self.file_open = False
        self._start: Optional[SeriesStart] = None
        self._path = ""
        self._done: Optional[asyncio.Event] = None
        self._lock = threading.Lock()

    def start(self) -> None:
        self.writer = HDF5Writer(max_queued_frames=self._queue_frames,
                                 on_status=self._on_status_thread)

    @property
    def hdf(self):
        return self.ioc.hdf

    # ---- settings ---------------------------------------------------------------------
    async def setting(self, attr: str, value):
        if attr == "compression" and value not in COMPRESSIONS:
            raise PutRejected(f"compression {value} is not supported; use one of "
                              f"{', '.join(COMPRESSIONS)}")
        if attr in ("file_path", "file_name", "file_template", "compression") and self.capturing:
            raise PutRejected(f"cannot change {attr} while capturing")
        if attr == "file_path":
            await self.hdf.file_path_exists.write("Yes" if _writable_dir(value) else "No")
        return value

    # ---- capture ------------------------------------------------------------------------
    async def capture_put(self, instance, value):
        if value in ("Capture", 1):
            if self.capturing:
                raise PutRejected("already capturing; set Capture to 0 first")
            await self._arm_capture(instance)
            self._done = asyncio.Event()
            await self._done.wait()
            return "Done"
        await self.stop_capture("Capture stopped")
        return "Done"

    async def _arm_capture(self, instance) -> None:
        hdf = self.hdf
        directory = hdf.file_path_rbv.value
        try:
            if not os.path.isdir(directory):
                if int(hdf.create_directory_rbv.value) != 0:
                    await asyncio.to_thread(os.makedirs, directory, exist_ok=True)
                else:
                    raise PutRejected(f"directory {directory!r} does not exist "
                                      "(set CreateDirectory to create it)")
            if not _writable_dir(directory):
                raise PutRejected(f"directory {directory!r} is not writable")
            path = format_file_name(hdf.file_template_rbv.value, directory,
                                    hdf.file_name_rbv.value, int(hdf.file_number_rbv.value))
            if os.path.exists(path):
                raise PutRejected(f"file {path} already exists; change FileName or FileNumber")
        except (PutRejected, OSError) as ex:
            await self._error(str(ex))
            raise PutRejected(str(ex)) from ex
        self._path = path
        # as areaDetector does: the number moves on once a file has been named with it
        await self._increment_number()
        await hdf.file_path_exists.write("Yes")
        await hdf.full_file_name.write(path)
        await hdf.num_captured.write(0)
        await hdf.write_status.write(0)
        await hdf.write_message.write(f"Capturing to {path}")
        await instance.write("Capture", verify_value=False)
        await hdf.capture_rbv.write("Capturing")
        self.capturing = True
        run = self.ioc.controller.run
        if run is not None and run.start is not None:
            await self.begin_run(run.start)

    async def begin_run(self, start: SeriesStart) -> None:
        """A run starts: open the file now if capture is armed and no file is open."""
        self._start = start
        if not self.capturing or self.file_open:
            return
        hdf = self.hdf
        num = int(hdf.num_capture_rbv.value)
        try:
            await asyncio.to_thread(self.writer.open_series, self._path, start,
                                    hdf.compression_rbv.value, num)
        except Exception as ex:
            await self._error(f"cannot open {self._path}: {ex}")
            await self._end_capture()
            return
        self.file_open = True
        await hdf.write_file_rbv.write("Writing")

    async def end_run(self, state: str) -> None:
        """A run ended; the file stays open for the next run unless capture is complete."""
        status = self.writer.status()
        if self.file_open and (status.capture_done or status.state == "error"):
            await self.stop_capture("Capture complete")

    async def stop_capture(self, message: str) -> None:
        if self.file_open:
            self.file_open = False
            result = await asyncio.to_thread(self.writer.close_series, self.stall_timeout)
            log.info("file %s closed: %s", self._path, result)
            await self._post_counts()
            if result.error:
                await self._error(result.error)
            elif not result.complete:
                await self._error(f"{result.frames_dropped} frames not written to {self._path}")
            else:
                await self.hdf.write_message.write(f"{message}: {self._path}"[:255])
        await self._end_capture()

    async def _end_capture(self) -> None:
        self.capturing = False
        await self.hdf.write_file_rbv.write("Done")
        await self.hdf.capture_rbv.write("Done")
        await self.hdf.capture.write("Done", verify_value=False)
        if self._done is not None:
            self._done.set()
            self._done = None

    async def _increment_number(self) -> None:
        hdf = self.hdf
        if hdf.auto_increment_rbv.value == "Yes":
            number = int(hdf.file_number_rbv.value) + 1
            await hdf.file_number.write(number, verify_value=False)
            await hdf.file_number_rbv.write(number)
            self.ioc.setting_changed()

    async def _error(self, message: str) -> None:
        log.error("file writer: %s", message)
        await self.hdf.write_status.write(1)
        await self.hdf.write_message.write(message[:255])

    # ---- readout consumer (readout thread) ---------------------------------------------
    def offer(self, block: FrameBlock, timeout: float = 0.0) -> bool:
        if not self.file_open or self.hdf.enable_callbacks_rbv.value != "Enable":
            return True
        return self.writer.offer(block, timeout)

    def count_lost(self, frames: int, reason: str) -> None:
        log.warning("file writer: %d frames not written: %s", frames, reason)
        self.writer.count_dropped(frames)

    # ---- status -------------------------------------------------------------------------
    def _on_status_thread(self, *_args) -> None:
        """Writer thread callback: hop to the loop and refresh the PVs there."""
        self.ioc.controller.post_from_thread(self.post_status)

    async def _post_counts(self) -> None:
        await self.hdf.num_captured.write(self.writer.frames_written)
        await self.hdf.frames_dropped.write(self.writer.frames_dropped)

    async def post_status(self) -> None:
        """Counters to PVs; ends the capture when NumCapture is reached or the file failed."""
        if self.writer is None:
            return
        await self._post_counts()
        if not self.file_open:
            return
        status = self.writer.status()
        if status.state == "error":
            await self._error(status.message or "write failed")
            await self.stop_capture("Capture failed")
        elif status.capture_done:
            await self.stop_capture("Capture complete")

    def close_now(self, message: str) -> None:
        """Shutdown: close any open file (blocking; called off the loop)."""
        if self.writer is not None:
            self.file_open = False
            self.writer.close(self.stall_timeout)


def _writable_dir(path: str) -> bool:
    return bool(path) and os.path.isdir(path) and os.access(path, os.W_OK | os.X_OK)
