"""ctypes binding of the Xspress3 SDK (libxspress3) and its bundled simulator.

Public entry points: ``Xspress3`` (one open system), ``Progress``,
``sim_controls`` (library-wide simulator controls), the ``constants`` and
``errors`` modules, and ``compute`` (vectorised deadtime, from ``deadtime``).
Importing this package loads no shared library; that happens when a system
is opened or ``sim_controls`` is called.
"""
from __future__ import annotations

from . import constants, deadtime, errors
from .constants import (
    SCALER_NAMES,
    TICKS_PER_SECOND,
    ErrorCode,
    FrameSource,
    ItfgGap,
    ItfgTrigMode,
    ProgressFlag,
    RunFlag,
    Scaler,
)
from .deadtime import compute
from .device import Progress, SimControls, SimLibraryControls, Xspress3, sim_controls
from .errors import (
    DeviceClosedError,
    DriverError,
    LibraryError,
    LibraryNotFoundError,
    MissingSymbolError,
    Xspress3Error,
)

__all__ = [
    "Xspress3",
    "Progress",
    "SimControls",
    "SimLibraryControls",
    "sim_controls",
    "compute",
    "constants",
    "deadtime",
    "errors",
    "SCALER_NAMES",
    "TICKS_PER_SECOND",
    "ErrorCode",
    "FrameSource",
    "ItfgGap",
    "ItfgTrigMode",
    "ProgressFlag",
    "RunFlag",
    "Scaler",
    "DriverError",
    "Xspress3Error",
    "LibraryError",
    "LibraryNotFoundError",
    "MissingSymbolError",
    "DeviceClosedError",
]
