"""What one areaDetector plugin prefix has handled: frames, drops and rate.

Plain logic, no Channel Access: `plugin_pvs.PluginGroup` owns one and posts its
numbers. Frames reach the PVs at the display rate, in batches, so `handled`
takes the detector's running frame number and counts the frames since the last
call; a disabled plugin (EnableCallbacks Disable) counts nothing and its data
PVs are not updated.
"""
from __future__ import annotations

import time
from typing import Callable, Optional

RATE_WINDOW_S = 1.0


class PluginStats:
    """Counters of one plugin; `clock` (seconds) is injectable for tests."""

    def __init__(self, clock: Callable[[], float] = time.monotonic,
                 window: float = RATE_WINDOW_S):
        self.clock = clock
        self.window = window
        self.enabled = True
        self.counter = 0          # ArrayCounter_RBV
        self.dropped = 0          # DroppedArrays_RBV
        self.rate = 0.0           # ArrayRate_RBV, frames/s over the current window (>= window/4)
        self._last_frame: Optional[int] = None
        self._rate_start: Optional[tuple] = None   # (time, counter) at the window start

    def run_started(self) -> None:
        """A new acquisition: frame numbers start again from 0."""
        self._last_frame = 0

    def handled(self, frame_number: int, receiving: bool = True) -> int:
        """The detector has posted frames up to `frame_number`; returns the frames this
        plugin handled now (0 if disabled, if the plugin feeding it is (`receiving`
        False: it gets no frames), or nothing new)."""
        last = self._last_frame if self._last_frame is not None else 0
        if frame_number < last:       # the numbering restarted (new run)
            last = 0
        new = frame_number - last
        self._last_frame = frame_number
        if not (self.enabled and receiving) or new <= 0:
            self._update_rate()
            return 0
        self.counter += new
        self._update_rate()
        return new

    def drop(self, frames: int = 1) -> None:
        """Frames this plugin received but could not pass on."""
        if self.enabled and frames > 0:
            self.dropped += frames

    def reset(self) -> None:
        """ERASE / ArrayCounter 0: counts start again."""
        self.counter = self.dropped = 0
        self.rate = 0.0
        self._rate_start = None

    def _update_rate(self) -> None:
        now = self.clock()
        if self._rate_start is None:
            self._rate_start = (now, self.counter)
            return
        t0, c0 = self._rate_start
        if now - t0 >= self.window / 4:     # enough time for a meaningful rate
            self.rate = (self.counter - c0) / (now - t0)
        if now - t0 >= self.window:         # start the next window from here
            self._rate_start = (now, self.counter)

    def idle(self) -> None:
        """No frames for a while (run ended): the rate decays to 0 after one window."""
        self._update_rate()
