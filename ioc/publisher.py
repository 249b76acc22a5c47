"""The narrow interface between the run controller and whatever shows its state.

The controller (and the file capture it owns) never touch a PV: they call a
`Publisher`, and the IOC's `pv_publisher.PvPublisher` turns the calls into PV
writes; the tests pass a recording fake. No caproto here.
"""
from __future__ import annotations

from dataclasses import dataclass
from enum import Enum, auto
from typing import Any, Optional, Protocol

import numpy as np

from xspress3.driver import Xspress3

from .readout import FrameSummary


class Rejected(ValueError):
    """A request the controller refuses; its text is what the user sees."""


class Out(Enum):
    """The single values the controller publishes, by meaning (the adapter knows the PVs)."""

    ACQUIRING = auto()          # bool: Acquire / Acquire_RBV
    DETECTOR_STATE = auto()     # State string, without a new status message
    ARRAY_COUNTER = auto()      # int: ArrayCounter / ArrayCounter_RBV
    NUM_IMAGES_COUNTER = auto() # int: frames read in the run
    FRAME_COUNT = auto()        # int: frames the detector acquired
    FRAMES_LOST = auto()        # int: frames lost to a detector overrun
    ARRAY_SIZE = auto()         # (bins, channels) of the arrays the IOC produces
    STREAM_STATS = auto()       # StreamStats
    CONNECTED = auto()          # bool
    # file capture (HDF1:)
    CAPTURING = auto()          # bool: Capture / Capture_RBV
    FILE_WRITING = auto()       # bool: a file is open for frames (WriteFile_RBV)
    FILE_NAME = auto()          # str: the file being or last written (FullFileName_RBV)
    FILE_NUMBER = auto()        # int: FileNumber moved on (a saved setting)
    FILE_PATH_EXISTS = auto()   # bool
    FILE_COUNTS = auto()        # (frames written, frames dropped)
    WRITE_STATUS = auto()       # (ok: bool, message: str): WriteStatus / WriteMessage


@dataclass(frozen=True)
class TimeSeriesView:
    """A consistent copy of the time series, oldest point first."""

    current: int
    acquiring: bool
    rois: dict                    # (channel index, roi index) -> (current, 5): rois.STATS columns
    times: Optional[np.ndarray]   # (current,) seconds from its run's start to each frame's end
    sca: Optional[np.ndarray]     # (current, channels, NUM_SCAS) or None


class Publisher(Protocol):
    """What the controller shows; the IOC maps it to PV writes (pv_publisher.PvPublisher).

    Every method runs on the event loop and returns once the values are posted."""

    async def publish(self, key: Out, value: Any) -> None:
        """One value (see `Out` for the type each key takes)."""

    async def status(self, message: str, state: Optional[str] = None) -> None:
        """The status message and, if given, the detector state (a `State` string)."""

    async def post_frame(self, summary: FrameSummary, rois_used: np.ndarray) -> None:
        """The newest frame of a run: per channel its spectrum, sum, SCAs and the
        statistics of the ROIs marked in `rois_used` (channels, NUM_ROIS) bool."""

    async def post_time_series(self, view: TimeSeriesView) -> None:
        """The time-series arrays and their current point / acquiring flags."""

    async def zero_counters(self, spectra: bool) -> None:
        """Sums, SCAs and ROI statistics back to their erased values (and the
        spectra, if `spectra`)."""

    async def plugins_erased(self) -> None:
        """det1:ERASE: every plugin's counters (ArrayCounter, DroppedArrays) start again."""

    async def plugins_idle(self) -> None:
        """No run: the plugins' frame rates decay to 0 (called at run end and periodically)."""

    async def detector_changed(self, driver: Optional[Xspress3]) -> None:
        """The detector was opened or closed: describe it (None: not connected)."""

    async def flush(self) -> None:
        """Let the values posted so far reach their subscribers (end of a run)."""
