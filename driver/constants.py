"""Numeric constants of the libxspress3 ABI, as Python enums.

These are written out once, here, with the SDK's own numbering (see
driver/sim/xsp3_abi.h); nothing parses a C header at run time. Enums make
values self-describing in logs and error messages.
"""
from __future__ import annotations

from enum import IntEnum, IntFlag

from xspress3 import vocabulary

__all__ = [
    "ErrorCode",
    "RunFlag",
    "FrameSource",
    "TimingFlag",
    "SOURCE_MASK",
    "ItfgTrigMode",
    "ItfgGap",
    "ClockSource",
    "ClockFlag",
    "Scaler",
    "ProgressFlag",
    "SCALER_NAMES",
    "NUM_SCALERS",
    "TICKS_PER_SECOND",
    "MAX_COL_TIME_TICKS",
    "MAX_DEBOUNCE",
    "DEBOUNCE_SHIFT",
    "DEFAULT_EVENT_WIDTH",
    "DEFAULT_FRAMES_MEMORY",
    "DEFAULT_ADDRESS",
    "DEFAULT_PORT",
    "DEFAULT_NBITS_ENG",
    "ALL_CARDS",
]


class ErrorCode(IntEnum):
    """Return codes of xsp3_* functions; every failure is negative."""

    OK = 0
    ERROR = -1
    INVALID_PATH = -2
    ILLEGAL_CARD = -3
    ILLEGAL_SUBPATH = -4
    INVALID_DMA_STREAM = -5
    RANGE_CHECK = -6
    INVALID_SCOPE_MOD = -7
    OUT_OF_MEMORY = -8
    ERR_DEV_NOT_FOUND = -9
    CANNOT_OPEN_FILE = -10
    FILE_READ_FAILED = -11
    FILE_WRITE_FAILED = -12
    FILE_RENAME_FAILED = -13
    LOG_FILE_MISSING = -14
    WOULD_BLOCK = -20


class RunFlag(IntFlag):
    """Bits for xsp3_set_run_flags: what the firmware records, and how."""

    PLAYBACK = 0x01
    SCOPE = 0x02
    SCALERS = 0x04
    HIST = 0x08
    CIRCULAR_BUFFER = 0x100


class FrameSource(IntEnum):
    """Low three bits of the glob_timeA word: what starts and ends a frame."""

    SOFTWARE = 0
    INTERNAL = 1
    SWENB_HWMARKER = 2
    IDC = 3
    TTL_VETO_ONLY = 4
    TTL_BOTH = 5
    LVDS_VETO_ONLY = 6
    LVDS_BOTH = 7


class TimingFlag(IntFlag):
    """Modifier bits of the glob_timeA word (debounce is a separate field)."""

    F0_INV = 1 << 3
    VETO_INV = 1 << 4


#: Mask of the frame-source field in the glob_timeA word.
SOURCE_MASK = 0x7
#: Bit position of the 8-bit debounce field (80 MHz cycles) in glob_timeA.
DEBOUNCE_SHIFT = 16
#: Largest debounce the 8-bit field holds.
MAX_DEBOUNCE = 0xFF


class ItfgTrigMode(IntEnum):
    """How the internal time-frame generator waits between frames."""

    BURST = 0
    SOFTWARE = 1
    HARDWARE = 2
    SOFTWARE_ONLY_FIRST = 5
    HARDWARE_ONLY_FIRST = 6


class ItfgGap(IntEnum):
    """Dead gap the internal time-frame generator leaves between frames."""

    GAP_25NS = 0
    GAP_200NS = 1
    GAP_500NS = 2
    GAP_1US = 3


class ClockSource(IntEnum):
    """Sampling clock for xsp3_clocks_setup."""

    INT = 0
    XTAL = 1
    EXT = 2


class ClockFlag(IntFlag):
    """Flags for xsp3_clocks_setup."""

    MASTER = 1
    NO_DITHER = 2


#: Index of each of the nine per-channel, per-frame scalers (names: xspress3.vocabulary).
Scaler = IntEnum("Scaler", [(name, i) for i, name in enumerate(vocabulary.SCALER_NAMES)],
                 module=__name__, qualname="Scaler")

#: Scaler names in index order, for labels and file layouts.
SCALER_NAMES: tuple[str, ...] = vocabulary.SCALER_NAMES
#: Number of scalers per channel per frame.
NUM_SCALERS = vocabulary.NUM_SCALERS


class ProgressFlag(IntFlag):
    """Flags returned by xsp3_scaler_check_progress_details."""

    OVERRUN = 0x1
    MISSING = 0x2


#: The Xspress3 time base: scaler TIME and frame lengths count 80 MHz ticks.
TICKS_PER_SECOND = vocabulary.TICKS_PER_SECOND
#: col_time is a uint32 tick count.
MAX_COL_TIME_TICKS = 2**32 - 1
#: Event width (ticks) used by the deadtime model unless calibrated otherwise.
DEFAULT_EVENT_WIDTH = 6
#: Frames of on-board memory requested from xsp3_config by default.
DEFAULT_FRAMES_MEMORY = 16384
#: Base IP address of the first card, as the SDK expects by default.
DEFAULT_ADDRESS = "192.168.0.1"
#: Base port; -1 lets the SDK choose.
DEFAULT_PORT = -1
#: Energy bits per MCA in normal mode (12 bits -> 4096 bins).
DEFAULT_NBITS_ENG = 12
#: Card argument meaning "every card".
ALL_CARDS = -1
