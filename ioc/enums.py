"""Enum strings of the IOC's PVs: the one place they are written down.

They match the areaDetector Xspress3 IOC exactly, because clients built on
ophyd-async compare them as strict enums. Where xspress3.vocabulary holds the
members (trigger modes, compressions, SCA columns), the tuples are built from it.
"""
from enum import Enum

from xspress3.vocabulary import SCA_LABELS, Compression, TriggerMode

DETECTOR_STATES = ("Idle", "Acquire", "Readout", "Correct", "Saving", "Aborting", "Error",
                   "Waiting", "Initializing", "Disconnected", "Aborted")

class State:
    """Names of DETECTOR_STATES entries, to avoid typos in code."""
    IDLE, ACQUIRE, READOUT, CORRECT, SAVING, ABORTING, ERROR, WAITING, INITIALIZING, \
        DISCONNECTED, ABORTED = DETECTOR_STATES


# ---- members whose values are also PV strings (the tuples below are built from them) -----

class TsAction(str, Enum):
    """What a TSControl put asks of the time series (values: the PV's strings)."""

    ERASE_START = "Erase/Start"
    START = "Start"
    STOP = "Stop"
    READ = "Read"
    ERASE = "Erase"


class TsMode(str, Enum):
    """TSAcquireMode: a fixed-length series, or a circular buffer of the newest points."""

    FIXED = "Fixed length"
    CIRCULAR = "Circ. buffer"


class NoYes(str, Enum):
    NO = "No"
    YES = "Yes"


class DisableEnable(str, Enum):
    """A setpoint's Disable/Enable (e.g. CTRL_DTC, EnableCallbacks)."""

    DISABLE = "Disable"
    ENABLE = "Enable"


class DisabledEnabled(str, Enum):
    """A readback's Disabled/Enabled (e.g. CTRL_DTC_RBV)."""

    DISABLED = "Disabled"
    ENABLED = "Enabled"


TRIGGER_MODES = tuple(mode.value for mode in TriggerMode)

ACQUIRE = ("Done", "Acquire")
ACQUIRE_RBV = ("Done", "Acquiring")
NO_YES = tuple(v.value for v in NoYes)
DISABLE_ENABLE = tuple(v.value for v in DisableEnable)
DISABLED_ENABLED = tuple(v.value for v in DisabledEnabled)
IMAGE_MODES = ("Single", "Multiple", "Continuous")
DATA_TYPES = ("Int8", "UInt8", "Int16", "UInt16", "Int32", "UInt32", "Int64", "UInt64",
              "Float32", "Float64")
COLOR_MODES = ("Mono", "Bayer", "RGB1", "RGB2", "RGB3", "YUV444", "YUV422", "YUV421")
CONNECTED = ("Disconnected", "Connected")
RUN_FLAGS = ("SCALERS & HIST", "PLAYB, SCALERS & HIST")
SOFT_TRIGGER = ("Idle", "Trigger")
TRIGGER = ("Do Nothing", "Trigger")
ERASE = ("Done", "Erase")


class Gate(str, Enum):
    """SIM:Gate: the simulated veto gate."""

    CLOSED = "Closed"
    OPEN = "Open"


GATE = tuple(g.value for g in Gate)


TS_CONTROL = tuple(a.value for a in TsAction)
TS_ACQUIRING = ("Done", "Acquiring")
TS_ACQUIRE = ("Done", "Acquire")
TS_READ = ("Done", "Read")
TS_ACQUIRE_MODES = tuple(m.value for m in TsMode)
RESET = ("Done", "Reset")

FILE_WRITE_MODES = ("Single", "Capture", "Stream")
CAPTURE = ("Done", "Capture")
CAPTURE_RBV = ("Done", "Capturing")
WRITE_STATUS = ("Write OK", "Write error")
WRITE_FILE_RBV = ("Done", "Writing")
COMPRESSION = tuple(c.value for c in Compression)

# SCA index k of C{n}SCA:{k}:Value_RBV
SCA_NAMES = SCA_LABELS

# areaDetector plugin-base records (plugin_pvs): same strings as ADCore's templates.
NO_LABELS = ("", "")           # a bo whose ZNAM/ONAM are empty (command-style records)
BAYER_PATTERNS = ("RGGB", "GBRG", "GRBG", "BGGR")
ATTRIBUTE_STATUS = ("Attributes file OK", "File not found", "XML syntax error",
                    "Macro substitution error")
DONE_ALLOCATE = ("Done", "Allocate")
SORT_MODES = ("Unsorted", "Sorted")
DATA_TYPES_OUT = DATA_TYPES + ("Automatic",)
DONE_CALCULATING = ("Done", "Calculating")
FILTER_CALLBACKS = ("Every array", "Array N only")
FILTER_TYPES = ("RecursiveAve", "Average", "Sum", "Difference", "RecursiveAveDiff", "CopyToFilter")
INVALID_VALID = ("Invalid", "Valid")
DONE_FREE = ("Done", "Free")
DONE_ACQUIRING = ("Done", "Acquiring")

# Commands and readbacks whose areaDetector strings differ from Done/Do
CONNECT = ("Connect", "Connect")
DISCONNECT = ("Disconnect", "Disconnect")
RESET_CMD = ("Done", "Reset")
SAVE = ("Save", "Save")
RESTORE = ("Restore", "Restore")
SCA_RESET = ("Done Reset", "Reset")
FRAME_TYPES = ("Normal", "Background", "FlatField", "DblCorrelation")
SHUTTER_MODES = ("None", "EPICS PV", "Detector output")
SHUTTER_MODES_RBV = ("None", "EPICS PV", "Camera output")
CLOSED_OPEN = ("Closed", "Open")
CLOSE_OPEN = ("Close", "Open")
BLOSC_COMPRESSORS = ("BloscLZ", "LZ4", "LZ4HC", "SNAPPY", "ZLIB", "ZSTD")
SWMR_SUPPORTED = ("Not Supported", "Supported")
FILE_FORMAT = ("HDF5", "Invalid")
FILE_FORMAT_RBV = ("HDF5", "Undefined")
READ_FILE_RBV = ("Done", "Reading")
DONE_DO = ("Done", "Do")            # command PVs without areaDetector strings of their own
WRITE_FILE = ("Done", "Write")
FLUSH = ("Done", "Flush")
INJECT = ("Done", "Inject")
CLEAR = ("Done", "Clear")
OFF_ON = ("Off", "On")

# ---- members for logic: compare these, not display strings ------------------------------


class DataType(str, Enum):
    """The NDArray data types the IOC produces (DataType_RBV)."""

    UINT32 = "UInt32"      # raw counts
    FLOAT64 = "Float64"    # deadtime-corrected (CTRL_DTC)
