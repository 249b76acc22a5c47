"""Facts shared by the driver, the IOC and the writers, written down once.

driver/, ioc/ and writers/ import this module; it imports none of them (writers/
must stay usable without the IOC and the driver). Enumerations whose members
carry PV strings as values let logic compare members, not display strings.
"""
from __future__ import annotations

from enum import Enum

#: The Xspress3 time base: scaler TIME, RESET_TICKS, TOTAL_TICKS and frame lengths count these.
TICKS_PER_SECOND = 80_000_000

#: Largest value of a 32-bit signed integer (EPICS LONG); the drive limit of integer PVs.
INT32_MAX = 2**31 - 1
#: Smallest value of a 32-bit signed integer (EPICS LONG).
INT32_MIN = -2**31

#: Bins of a full spectrum in normal mode (12 energy bits); the IOC's default.
DEFAULT_BINS = 4096
#: Energy width of one bin of a 4096-bin spectrum, in eV (10 eV per bin, 0..40.96 keV).
EV_PER_BIN_AT_4096 = 10.0

#: ROIs per channel.
NUM_ROIS = 48

#: The nine per-channel, per-frame scalers, in the detector's (and the stream's) order.
SCALER_NAMES: tuple[str, ...] = (
    "TIME",
    "RESET_TICKS",
    "RESET_COUNT",
    "ALL_EVENT",
    "ALL_GOOD",
    "IN_WINDOW0",
    "IN_WINDOW1",
    "PILEUP",
    "TOTAL_TICKS",
)
NUM_SCALERS = len(SCALER_NAMES)


class Sca(int, Enum):
    """Column k of the 11 SCA values of a channel (C{n}SCA:{k}): the first eight
    scalers, then the event width, the deadtime factor and the deadtime percent."""

    CLOCK_TICKS = 0
    RESET_TICKS = 1
    RESET_COUNTS = 2
    ALL_EVENT = 3
    ALL_GOOD = 4
    WINDOW1 = 5
    WINDOW2 = 6
    PILEUP = 7
    EVENT_WIDTH = 8
    DT_FACTOR = 9
    DT_PERCENT = 10


#: SCA columns per channel.
NUM_SCAS = len(Sca)
#: The scalers copied into the SCA columns (the first eight).
SCA_SCALERS = int(Sca.EVENT_WIDTH)
#: Names of the SCA columns as areaDetector labels them (C{n}SCA:{k}, NDAttributes).
SCA_LABELS: tuple[str, ...] = ("ClockTicks", "ResetTicks", "ResetCounts", "AllEvent", "AllGood",
                               "Window1", "Window2", "Pileup", "EventWidth", "DTFactor", "DTPercent")


class Compression(str, Enum):
    """HDF1:Compression; the values are the PV's strings (areaDetector's), in its order."""

    NONE = "None"
    N_BIT = "N-bit"
    SZIP = "szip"
    ZLIB = "zlib"
    BLOSC = "Blosc"
    BSLZ4 = "BSLZ4"
    LZ4 = "LZ4"
    JPEG = "JPEG"


#: The compressions the HDF5 writer supports (the others are refused).
SUPPORTED_COMPRESSIONS: tuple[Compression, ...] = (
    Compression.NONE, Compression.ZLIB, Compression.LZ4, Compression.BSLZ4, Compression.BLOSC)


class TriggerMode(str, Enum):
    """det1:TriggerMode; the values are the PV's strings (areaDetector's)."""

    SOFTWARE = "Software"
    INTERNAL = "Internal"
    IDC = "IDC"
    TTL_VETO_ONLY = "TTL Veto Only"
    TTL_BOTH = "TTL Both"
    LVDS_VETO_ONLY = "LVDS Veto Only"
    LVDS_BOTH = "LVDS Both"
    SOFTWARE_INTERNAL = "Software + Internal"

    @property
    def software(self) -> bool:
        """Frames advance on det1:SoftTrigger."""
        return self in (TriggerMode.SOFTWARE, TriggerMode.SOFTWARE_INTERNAL)

    @property
    def starts_at_once(self) -> bool:
        """The run starts on Acquire=1 (internal timing), not on an external signal."""
        return self in (TriggerMode.SOFTWARE, TriggerMode.INTERNAL, TriggerMode.SOFTWARE_INTERNAL)
