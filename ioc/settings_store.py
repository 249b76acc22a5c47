"""User settings that survive a restart: ROIs, windows, thresholds, trigger mode,
exposure, frames, record range, file settings.

Which PVs persist is declared where they are defined (`setting(..., persist=...)`).
The file is JSON ({PV suffix: value}), written atomically (temporary file, fsync,
rename) off the event loop, shortly after a change; it is read once at start,
each value going through the PV's own putter so it reaches the hardware too.
A saved value that does not fit its PV (pvtypes.check_value: a hand-edited file,
a PV whose range changed) is reported in the log and in det1:StatusMessage_RBV,
named, and skipped; the rest restores (`skipped` lists them).
"""
from __future__ import annotations

import asyncio
import functools
import json
import logging
import os
import tempfile
import threading
from typing import Optional

from .pvtypes import check_value, reason

log = logging.getLogger(__name__)

FORMAT_VERSION = 1
SAVE_DELAY_S = 0.2


def persisted_pvs(root) -> dict:
    """{suffix: pv instance} of every setpoint declared with persist=True."""
    out = {}
    groups = [root] + list(root.groups.values())
    for group in groups:
        cls = type(group)
        for attr, pv in group.attr_pvdb.items():
            prop = getattr(cls, attr, None)
            if getattr(prop, "persist", False):
                out[pv.pvname[len(root.prefix):]] = pv
    return out


class SettingsStore:
    def __init__(self, path: Optional[str], root):
        self.path = path
        self.root = root
        self._pending: Optional[asyncio.TimerHandle] = None
        self._restoring = False
        self._lock = threading.Lock()
        #: "PV: reason" of each saved value the last restore skipped.
        self.skipped: list = []

    @functools.cached_property
    def pvs(self) -> dict:
        """The persisted PVs, found once: walking the ~4000 PVs took ~0.2 s of the
        event loop at every save (a capture's FileNumber increment saves)."""
        return persisted_pvs(self.root)

    def snapshot(self) -> dict:
        values = {}
        for suffix, pv in self.pvs.items():
            value = pv.value
            if hasattr(value, "tolist"):
                value = value.tolist()
            values[suffix] = value
        return {"version": FORMAT_VERSION, "pvs": values}

    def schedule_save(self) -> None:
        if self.path is None or self._restoring:
            return
        loop = asyncio.get_running_loop()
        if self._pending is not None:
            self._pending.cancel()
        self._pending = loop.call_later(SAVE_DELAY_S, self._save_now)

    def _save_now(self) -> None:
        self._pending = None
        data = self.snapshot()
        task = asyncio.get_running_loop().run_in_executor(None, self._write, data)
        task.add_done_callback(self._report)

    @staticmethod
    def _report(future) -> None:
        exc = future.exception()
        if exc is not None:
            log.error("settings not saved: %s", exc)

    def _write(self, data: dict) -> None:
        with self._lock:
            directory = os.path.dirname(os.path.abspath(self.path))
            os.makedirs(directory, exist_ok=True)
            fd, tmp = tempfile.mkstemp(prefix=".settings-", dir=directory)
            try:
                with os.fdopen(fd, "w") as f:
                    json.dump(data, f, indent=1, sort_keys=True)
                    f.flush()
                    os.fsync(f.fileno())
                os.replace(tmp, self.path)
            except BaseException:
                os.unlink(tmp)
                raise
        log.debug("settings saved to %s", self.path)

    def flush(self) -> None:
        """Write the current settings now (at shutdown)."""
        if self.path is not None:
            self._write(self.snapshot())

    async def restore(self) -> int:
        """Apply the saved settings through the PVs' putters; returns how many applied."""
        if self.path is None or not os.path.exists(self.path):
            return 0
        try:
            with open(self.path) as f:
                data = json.load(f)
        except (OSError, ValueError) as ex:
            log.error("settings file %s unreadable, defaults kept: %s", self.path, ex)
            return 0
        pvs = self.pvs
        saved = data.get("pvs", {}) if isinstance(data, dict) else None
        if not isinstance(saved, dict):
            log.error("settings file %s holds no settings, defaults kept", self.path)
            return 0
        applied = 0
        self.skipped = []
        self._restoring = True
        try:
            for suffix, value in saved.items():
                pv = pvs.get(suffix)
                if pv is None:
                    log.warning("saved setting %s is not a PV of this IOC; ignored", suffix)
                    continue
                try:
                    await pv.write(check_value(pv, value))
                    applied += 1
                except Exception as ex:
                    self.skipped.append(f"{suffix}: {reason(ex)}")
                    log.warning("saved setting %s=%r skipped: %s", suffix, value, reason(ex))
        finally:
            self._restoring = False
        if self.skipped:
            await self._report_skipped()
        log.info("restored %d settings from %s", applied, self.path)
        return applied

    async def _report_skipped(self) -> None:
        text = f"settings skipped ({len(self.skipped)}): " + "; ".join(self.skipped)
        status = getattr(self.root, "status", None)
        if status is not None:
            await status(text[:255])
