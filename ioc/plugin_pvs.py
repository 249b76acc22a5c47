"""The areaDetector plugin-base PVs (NDArrayBase, NDPluginBase and the extras of
the NDROI, NDProcess, NDTimeSeries and NDROIStatN plugins), declared once.

The areaDetector Xspress3 IOC runs a chain of plugins (ROI{n} -> MCA{n}, ROISUM{n},
MCASUM{n}, MCA{n}ROI, C{n}SCA, C{n}SCA:TS, Proc1, HDF1) and each answers the same
~140 base records. Here one table per record set (name, record type, DBR type,
element count, enum strings as an `enums` name) is turned into pvproperties by
`declare`, and `plugin_group(kind)` makes the SubGroup class served under every
plugin prefix. `PluginGroup` makes the names that mean something here tell the
truth (ArrayCounter_RBV, ArrayRate_RBV, DroppedArrays_RBV, EnableCallbacks,
ArraySize*/Dim*SA, UniqueId_RBV, TimeStamp_RBV) from a `plugin_stats.PluginStats`;
the rest (pool and queue bookkeeping, image geometry) are read-only constants or
accepted without effect, and their descriptions say so.
"""
from __future__ import annotations

import functools
from typing import Iterable, NamedTuple, Optional

from caproto import ChannelType
from caproto.server import pvproperty

from . import enums
from .handlers import root_of
from .plugin_stats import PluginStats
from .pvtypes import Xsp3Group, enum_pv, record_type, text_pv

#: records whose value a client may write (the others are read-only here)
WRITABLE_RECORDS = {"bo", "mbbo", "longout", "ao", "stringout", "busy", "dfanout", "fanout",
                    "seq", "sseq", "asyn"}
WAVEFORM_BACKLOG = 8    # as channel_pvs: a slow client skips old arrays
LONG_WAVEFORM = 16384   # areaDetector's MAXFRAMES; time series use the IOC's ts_points instead


class Spec(NamedTuple):
    name: str
    rtype: str
    dbr: str
    nelm: int
    strings: tuple


def parse(text: str) -> list:
    """Lines of `name rtype DBR nelm [ENUMS_NAME]` -> Specs (strings from `enums`)."""
    out = []
    for line in text.strip().splitlines():
        parts = line.split()
        strings = tuple(getattr(enums, parts[4])) if len(parts) > 4 else ()
        out.append(Spec(parts[0], parts[1], parts[2], int(parts[3]), strings))
    return out


# ---- the record sets (from ADCore's templates as the areaDetector Xspress3 IOC loads them)

#: NDArrayBase's dimension records, in both the plugin base and det1:
NDARRAY_DIMENSIONS = "".join(f"Dim{k}SA subArray LONG 1\nDim{k}SA_RBV subArray LONG 1\n"
                             for k in range(10)) + \
    "Dimensions waveform LONG 10\nDimensions_RBV waveform LONG 10\n"

PLUGIN_BASE = """
ADCoreVersion_RBV stringin STRING 1
Acquire bo ENUM 1 TS_ACQUIRE
AcquireBusy busy ENUM 1 TS_ACQUIRING
AcquireBusyCB bi ENUM 1 TS_ACQUIRING
Acquire_RBV bi ENUM 1 TS_ACQUIRING
ArrayCallbacks bo ENUM 1 DISABLE_ENABLE
ArrayCallbacks_RBV bi ENUM 1 DISABLE_ENABLE
ArrayCounter longout LONG 1
ArrayCounter_RBV longin LONG 1
ArrayRate_RBV calc DOUBLE 1
ArraySize0 longin LONG 1
ArraySize0_RBV longin LONG 1
ArraySize1 longin LONG 1
ArraySize1_RBV longin LONG 1
ArraySize2 longin LONG 1
ArraySize2_RBV longin LONG 1
ArraySize3 longin LONG 1
ArraySize3_RBV longin LONG 1
ArraySize4 longin LONG 1
ArraySize4_RBV longin LONG 1
ArraySize5 longin LONG 1
ArraySize5_RBV longin LONG 1
ArraySize6 longin LONG 1
ArraySize6_RBV longin LONG 1
ArraySize7 longin LONG 1
ArraySize7_RBV longin LONG 1
ArraySize8 longin LONG 1
ArraySize8_RBV longin LONG 1
ArraySize9 longin LONG 1
ArraySize9_RBV longin LONG 1
ArraySizeX_RBV longin LONG 1
ArraySizeY_RBV longin LONG 1
ArraySizeZ_RBV longin LONG 1
ArraySize_RBV longin LONG 1
AsynIO asyn ? 1
BayerPattern_RBV mbbi ENUM 1 BAYER_PATTERNS
BlockingCallbacks bo ENUM 1 NO_YES
BlockingCallbacks_RBV bi ENUM 1 NO_YES
ClearAcquireBusy calcout DOUBLE 1
Codec_RBV stringin STRING 1
ColorMode mbbo ENUM 1 COLOR_MODES
ColorMode_RBV mbbi ENUM 1 COLOR_MODES
CompressedSize_RBV longin LONG 1
DataType mbbo ENUM 1 DATA_TYPES
DataType_RBV mbbi ENUM 1 DATA_TYPES
""" + NDARRAY_DIMENSIONS + """DisorderedArrays longout LONG 1
DisorderedArrays_RBV longin LONG 1
DriverVersion_RBV stringin STRING 1
DroppedArrays longout LONG 1
DroppedArrays_RBV longin LONG 1
DroppedOutputArrays longout LONG 1
DroppedOutputArrays_RBV longin LONG 1
EmptyFreeList bo ENUM 1 NO_LABELS
EnableCallbacks bo ENUM 1 DISABLE_ENABLE
EnableCallbacks_RBV bi ENUM 1 DISABLE_ENABLE
EpicsTSNsec_RBV longin LONG 1
EpicsTSSec_RBV longin LONG 1
ExecutionTime_RBV ai DOUBLE 1
FirmwareVersion_RBV stringin STRING 1
Manufacturer_RBV stringin STRING 1
MaxArrayRate ao DOUBLE 1
MaxArrayRate_COUT calcout DOUBLE 1
MaxArrayRate_RBV calc DOUBLE 1
MaxByteRate ao DOUBLE 1
MaxByteRate_RBV ai DOUBLE 1
MaxThreads_RBV longin LONG 1
MinCallbackTime ao DOUBLE 1
MinCallbackTime_RBV ai DOUBLE 1
Model_RBV stringin STRING 1
NDArrayAddress longout LONG 1
NDArrayAddress_RBV longin LONG 1
NDArrayPort stringout STRING 1
NDArrayPort_RBV stringin STRING 1
NDAttributesFile waveform CHAR 256
NDAttributesMacros waveform CHAR 256
NDAttributesStatus mbbi ENUM 1 ATTRIBUTE_STATUS
NDimensions longout LONG 1
NDimensions_RBV longin LONG 1
NumPreAllocBuffers longout LONG 1
NumPreAllocBuffers_RBV longin LONG 1
NumQueuedArrays longin LONG 1
NumThreads longout LONG 1
NumThreads_RBV longin LONG 1
PluginType_RBV stringin STRING 1
PoolAllocBuffers longin LONG 1
PoolFreeBuffers longin LONG 1
PoolMaxMem ai DOUBLE 1
PoolPollStats bo ENUM 1 NO_LABELS
PoolUsedBuffers calc DOUBLE 1
PoolUsedMem ai DOUBLE 1
PortName_RBV stringin STRING 1
PreAllocBuffers busy ENUM 1 DONE_ALLOCATE
ProcessPlugin bo ENUM 1 NO_LABELS
QueueFree longin LONG 1
QueueFreeLow calcout DOUBLE 1
QueueSize longout LONG 1
QueueSize_RBV longin LONG 1
QueueUse calc DOUBLE 1
QueueUseHIGH calcout DOUBLE 1
QueueUseHIHI calcout DOUBLE 1
SDKVersion_RBV stringin STRING 1
SerialNumber_RBV stringin STRING 1
SetAcquireBusy calcout DOUBLE 1
SortFree longin LONG 1
SortFreeLow calcout DOUBLE 1
SortMode mbbo ENUM 1 SORT_MODES
SortMode_RBV mbbi ENUM 1 SORT_MODES
SortSize longout LONG 1
SortSize_RBV longin LONG 1
SortTime ao DOUBLE 1
SortTime_RBV ai DOUBLE 1
TimeStamp_RBV ai DOUBLE 1
UniqueId_RBV longin LONG 1
WaitForPlugins bo ENUM 1 NO_YES
"""
NDROI = """
AutoSizeX bo ENUM 1 NO_YES
AutoSizeX_RBV bi ENUM 1 NO_YES
AutoSizeY bo ENUM 1 NO_YES
AutoSizeY_RBV bi ENUM 1 NO_YES
AutoSizeZ bo ENUM 1 NO_YES
AutoSizeZ_RBV bi ENUM 1 NO_YES
BinX longout LONG 1
BinX_RBV longin LONG 1
BinY longout LONG 1
BinY_RBV longin LONG 1
BinZ longout LONG 1
BinZ_RBV longin LONG 1
CollapseDims bo ENUM 1 DISABLE_ENABLE
CollapseDims_RBV bi ENUM 1 DISABLE_ENABLE
DataTypeOut mbbo ENUM 1 DATA_TYPES_OUT
DataTypeOut_RBV mbbi ENUM 1 DATA_TYPES_OUT
EnableScale bo ENUM 1 DISABLE_ENABLE
EnableScale_RBV bi ENUM 1 DISABLE_ENABLE
EnableX bo ENUM 1 DISABLE_ENABLE
EnableX_RBV bi ENUM 1 DISABLE_ENABLE
EnableY bo ENUM 1 DISABLE_ENABLE
EnableY_RBV bi ENUM 1 DISABLE_ENABLE
EnableZ bo ENUM 1 DISABLE_ENABLE
EnableZ_RBV bi ENUM 1 DISABLE_ENABLE
MaxSizeX_RBV longin LONG 1
MaxSizeY_RBV longin LONG 1
MaxSizeZ_RBV longin LONG 1
MaxX longin LONG 1
MaxY longin LONG 1
MinX longout LONG 1
MinX_RBV longin LONG 1
MinY longout LONG 1
MinY_RBV longin LONG 1
MinZ longout LONG 1
MinZ_RBV longin LONG 1
Name stringout STRING 1
Name_RBV stringin STRING 1
ReverseX bo ENUM 1 NO_YES
ReverseX_RBV bi ENUM 1 NO_YES
ReverseY bo ENUM 1 NO_YES
ReverseY_RBV bi ENUM 1 NO_YES
ReverseZ bo ENUM 1 NO_YES
ReverseZ_RBV bi ENUM 1 NO_YES
Scale ao DOUBLE 1
Scale_RBV ai DOUBLE 1
SetXHOPR dfanout DOUBLE 1
SetYHOPR dfanout DOUBLE 1
SizeX longout LONG 1
SizeX_RBV longin LONG 1
SizeY longout LONG 1
SizeY_RBV longin LONG 1
SizeZ longout LONG 1
SizeZ_RBV longin LONG 1
"""
NDPROCESS = """
AutoOffsetScale busy ENUM 1 DONE_CALCULATING
AutoResetFilter bo ENUM 1 NO_YES
AutoResetFilter_RBV bi ENUM 1 NO_YES
AverageSeq seq DOUBLE 1
CopyToFilterSeq seq DOUBLE 1
DataTypeOut mbbo ENUM 1 DATA_TYPES_OUT
DataTypeOut_RBV mbbi ENUM 1 DATA_TYPES_OUT
DifferenceSeq seq DOUBLE 1
EnableBackground bo ENUM 1 DISABLE_ENABLE
EnableBackground_RBV bi ENUM 1 DISABLE_ENABLE
EnableFilter bo ENUM 1 DISABLE_ENABLE
EnableFilter_RBV bi ENUM 1 DISABLE_ENABLE
EnableFlatField bo ENUM 1 DISABLE_ENABLE
EnableFlatField_RBV bi ENUM 1 DISABLE_ENABLE
EnableHighClip bo ENUM 1 DISABLE_ENABLE
EnableHighClip_RBV bi ENUM 1 DISABLE_ENABLE
EnableLowClip bo ENUM 1 DISABLE_ENABLE
EnableLowClip_RBV bi ENUM 1 DISABLE_ENABLE
EnableOffsetScale bo ENUM 1 DISABLE_ENABLE
EnableOffsetScale_RBV bi ENUM 1 DISABLE_ENABLE
FC1 ao DOUBLE 1
FC1_RBV ai DOUBLE 1
FC2 ao DOUBLE 1
FC2_RBV ai DOUBLE 1
FC3 ao DOUBLE 1
FC3_RBV ai DOUBLE 1
FC4 ao DOUBLE 1
FC4_RBV ai DOUBLE 1
FOffset ao DOUBLE 1
FOffset_RBV ai DOUBLE 1
FScale ao DOUBLE 1
FScale_RBV ai DOUBLE 1
FilterCallbacks bo ENUM 1 FILTER_CALLBACKS
FilterCallbacks_RBV bi ENUM 1 FILTER_CALLBACKS
FilterType mbbo ENUM 1 FILTER_TYPES
FilterTypeSeq seq DOUBLE 1
HighClipThresh ao DOUBLE 1
HighClipThresh_RBV ai DOUBLE 1
HighClipValue ao DOUBLE 1
HighClipValue_RBV ai DOUBLE 1
LowClipThresh ao DOUBLE 1
LowClipThresh_RBV ai DOUBLE 1
LowClipValue ao DOUBLE 1
LowClipValue_RBV ai DOUBLE 1
NumFilter longout LONG 1
NumFilterRecip calc DOUBLE 1
NumFilter_RBV longin LONG 1
NumFiltered_RBV longin LONG 1
OC1 ao DOUBLE 1
OC1_RBV ai DOUBLE 1
OC2 ao DOUBLE 1
OC2_RBV ai DOUBLE 1
OC3 ao DOUBLE 1
OC3_RBV ai DOUBLE 1
OC4 ao DOUBLE 1
OC4_RBV ai DOUBLE 1
OOffset ao DOUBLE 1
OOffset_RBV ai DOUBLE 1
OScale ao DOUBLE 1
OScale_RBV ai DOUBLE 1
Offset ao DOUBLE 1
Offset_RBV ai DOUBLE 1
PortBackup stringout STRING 1
RC1 ao DOUBLE 1
RC1_RBV ai DOUBLE 1
RC2 ao DOUBLE 1
RC2_RBV ai DOUBLE 1
ROffset ao DOUBLE 1
ROffset_RBV ai DOUBLE 1
ReadBackgroundTIFFSeq sseq DOUBLE 1
ReadFlatFieldTIFFSeq sseq DOUBLE 1
RecursiveAveDiffSeq seq DOUBLE 1
RecursiveAveSeq seq DOUBLE 1
ResetFilter bo ENUM 1 NO_YES
ResetFilter_RBV bi ENUM 1 NO_YES
SaveBackground bo ENUM 1 NO_YES
SaveBackground_RBV bi ENUM 1 NO_YES
SaveFlatField bo ENUM 1 NO_YES
SaveFlatField_RBV bi ENUM 1 NO_YES
Scale ao DOUBLE 1
ScaleFlatField ao DOUBLE 1
ScaleFlatField_RBV ai DOUBLE 1
Scale_RBV ai DOUBLE 1
SumSeq seq DOUBLE 1
ValidBackground_RBV bi ENUM 1 INVALID_VALID
ValidFlatField_RBV bi ENUM 1 INVALID_VALID
"""
NDTIMESERIES = """
TSAcquire busy ENUM 1 TS_ACQUIRE
TSAcquireMode mbbo ENUM 1 TS_ACQUIRE_MODES
TSAcquireMode_RBV mbbi ENUM 1 TS_ACQUIRE_MODES
TSAcquiring bi ENUM 1 TS_ACQUIRING
TSAveragingTime ao DOUBLE 1
TSAveragingTime_RBV ai DOUBLE 1
TSCurrentPoint longin LONG 1
TSElapsedTime ai DOUBLE 1
TSNumAverage longin LONG 1
TSNumPoints longout LONG 1
TSRead bo ENUM 1 TS_READ
TSTimeAxis waveform DOUBLE 16384
TSTimePerPoint ao DOUBLE 1
TSTimePerPointLink ao DOUBLE 1
TSTimePerPoint_RBV ai DOUBLE 1
TSTimestamp waveform DOUBLE 16384
"""
NDROISTAT_N = """
BgdWidth longout LONG 1
BgdWidth_RBV longin LONG 1
MaxSizeX_RBV longin LONG 1
MaxSizeY_RBV longin LONG 1
MaxValue_RBV ai DOUBLE 1
MeanValue_RBV ai DOUBLE 1
MinValue_RBV ai DOUBLE 1
MinX longout LONG 1
MinX_RBV longin LONG 1
MinY longout LONG 1
MinY_RBV longin LONG 1
Name stringout STRING 1
Net_RBV ai DOUBLE 1
Reset bo ENUM 1 NO_LABELS
SizeX longout LONG 1
SizeX_RBV longin LONG 1
SizeY longout LONG 1
SizeY_RBV longin LONG 1
TSMaxValue waveform DOUBLE 16384
TSMeanValue waveform DOUBLE 16384
TSMinValue waveform DOUBLE 16384
TSNet waveform DOUBLE 16384
TSTimestamp waveform DOUBLE 16384
TSTotal waveform DOUBLE 16384
Total_RBV ai DOUBLE 1
Use bo ENUM 1 NO_YES
Use_RBV bi ENUM 1 NO_YES
"""
DET1_EXTRA = """
ClearAcquireBusy calcout DOUBLE 1
Codec_RBV stringin STRING 1
CompressedSize_RBV longin LONG 1
AcquireBusy busy ENUM 1 TS_ACQUIRING
AcquireBusyCB bi ENUM 1 TS_ACQUIRING
ArraySize0 longin LONG 1
ArraySize1 longin LONG 1
ArraySize2 longin LONG 1
ArraySize3 longin LONG 1
ArraySize3_RBV longin LONG 1
ArraySize4 longin LONG 1
ArraySize4_RBV longin LONG 1
ArraySize5 longin LONG 1
ArraySize5_RBV longin LONG 1
ArraySize6 longin LONG 1
ArraySize6_RBV longin LONG 1
ArraySize7 longin LONG 1
ArraySize7_RBV longin LONG 1
ArraySize8 longin LONG 1
ArraySize8_RBV longin LONG 1
ArraySize9 longin LONG 1
ArraySize9_RBV longin LONG 1
BayerPattern_RBV mbbi ENUM 1 BAYER_PATTERNS
""" + NDARRAY_DIMENSIONS + """ERASE_ArrayCounters dfanout DOUBLE 1
ERASE_AttrReset dfanout DOUBLE 1
ERASE_PROC_ResetFilter bo ENUM 1 NO_LABELS
EmptyFreeList bo ENUM 1 NO_LABELS
EpicsTSNsec_RBV longin LONG 1
EpicsTSSec_RBV longin LONG 1
NDAttributesMacros waveform CHAR 256
NDAttributesStatus mbbi ENUM 1 ATTRIBUTE_STATUS
NDimensions longout LONG 1
NDimensions_RBV longin LONG 1
NumPreAllocBuffers longout LONG 1
NumPreAllocBuffers_RBV longin LONG 1
NumQueuedArrays longin LONG 1
PoolPollStats bo ENUM 1 NO_LABELS
PreAllocBuffers busy ENUM 1 DONE_ALLOCATE
SetAcquireBusy calcout DOUBLE 1
TimeStamp_RBV ai DOUBLE 1
UPDATE_AttrUpdate dfanout DOUBLE 1
"""
DET1_CHANNEL = """
AttrReset dfanout DOUBLE 1
AttrResetFanIn bo ENUM 1 NO_LABELS
DTC_AEG_RBV ai DOUBLE 1
DTC_AEO_RBV ai DOUBLE 1
DTC_FLAGS_RBV longin LONG 1
DTC_IWG_RBV ai DOUBLE 1
DTC_IWO_RBV ai DOUBLE 1
"""
HDF1_EXTRA = """
Acquire bo ENUM 1 TS_ACQUIRE
AcquireBusy busy ENUM 1 TS_ACQUIRING
AcquireBusyCB bi ENUM 1 TS_ACQUIRING
Acquire_RBV bi ENUM 1 TS_ACQUIRING
ChunkSize2 longout LONG 1
ChunkSize2_RBV longin LONG 1
ChunkSize3 longout LONG 1
ChunkSize3_RBV longin LONG 1
ChunkSize4 longout LONG 1
ChunkSize4_RBV longin LONG 1
ChunkSize5 longout LONG 1
ChunkSize5_RBV longin LONG 1
ChunkSize6 longout LONG 1
ChunkSize6_RBV longin LONG 1
ChunkSize7 longout LONG 1
ChunkSize7_RBV longin LONG 1
ChunkSize8 longout LONG 1
ChunkSize8_RBV longin LONG 1
ChunkSize9 longout LONG 1
ChunkSize9_RBV longin LONG 1
ClearAcquireBusy calcout DOUBLE 1
FirmwareVersion_RBV stringin STRING 1
FreeCapture bo ENUM 1 DONE_FREE
JPEGQuality longout LONG 1
JPEGQuality_RBV longin LONG 1
Manufacturer_RBV stringin STRING 1
Model_RBV stringin STRING 1
NumCapture_CALC calcout DOUBLE 1
NumPreAllocBuffers longout LONG 1
NumPreAllocBuffers_RBV longin LONG 1
PoolPollStats bo ENUM 1 NO_LABELS
PreAllocBuffers busy ENUM 1 DONE_ALLOCATE
SDKVersion_RBV stringin STRING 1
SerialNumber_RBV stringin STRING 1
SetAcquireBusy calcout DOUBLE 1
WaitForPlugins bo ENUM 1 NO_YES
"""
ROOT_EXTRA = """
MaxDeadTime_RBV calcout DOUBLE 1
MeanDeadTime_RBV calcout DOUBLE 1
"""


#: What each kind of plugin serves beyond PLUGIN_BASE, and its PluginType_RBV.
KINDS = {
    "StdArrays": ("", "NDPluginStdArrays"),
    "ROI": (NDROI, "NDPluginROI"),          # ROI{n}: selects the bins of MCA{n}
    "ROISum": (NDROI, "NDPluginROI"),       # ROISUM{n}: same records, no effect here
    "ROIStat": ("", "NDPluginROIStat"),
    "Attribute": ("", "NDPluginAttribute"),
    "TimeSeries": (NDTIMESERIES, "NDPluginTimeSeries"),
    "Process": (NDPROCESS, "NDPluginProcess"),
}

#: Descriptions of the names that mean something here; `_doc` words the rest.
DOCS = {
    "ArrayCounter": "Frames this plugin handled; a write sets the count (0 resets it).",
    "ArrayCounter_RBV": "Frames this plugin handled since the last reset.",
    "ArrayRate_RBV": "Frames per second this plugin handled (over the last second or more).",
    "DroppedArrays": "Frames this plugin dropped; a write sets the count (0 resets it).",
    "DroppedArrays_RBV": "Frames this plugin dropped (not published) since the last reset.",
    "EnableCallbacks": "Disable: this plugin and those it feeds stop handling frames "
                       "(their counters and data PVs stop updating).",
    "EnableCallbacks_RBV": "Readback of EnableCallbacks.",
    "ArraySize0_RBV": "Bins of the array this plugin serves.",
    "ArraySizeX_RBV": "Bins of the array this plugin serves.",
    "ArraySize1_RBV": "Second dimension of the array served (always 1 or 0: a spectrum).",
    "ArraySize_RBV": "Bytes of the array this plugin serves (bins x 8, float64).",
    "NDimensions_RBV": "Dimensions of the array served (1: a spectrum).",
    "Dimensions_RBV": "Sizes of the dimensions of the array served.",
    "Dim0SA": "Size of dimension 0 of the array served (bins).",
    "Dim0SA_RBV": "Size of dimension 0 of the array served (bins).",
    "UniqueId_RBV": "Frame number of the last frame this plugin handled.",
    "TimeStamp_RBV": "Time (EPICS epoch seconds) of the last frame this plugin handled.",
    "EpicsTSSec_RBV": "EPICS seconds of the last frame this plugin handled.",
    "EpicsTSNsec_RBV": "EPICS nanoseconds of the last frame this plugin handled.",
    "PluginType_RBV": "areaDetector plugin class this prefix stands for.",
    "TSTimestamp": "Seconds from its run's start to each frame's end: the frames' TIME "
                   "scalers (80 MHz) summed.",
    "Reset": "Any write zeroes this ROI's Total/Net/Min/Max/Mean readbacks.",
    "DTC_FLAGS_RBV": "SDK deadtime-correction flags; the IOC's correction uses "
                     "C{n}:EventWidth only (driver/deadtime.py), so always 0.",
    "DTC_AEG_RBV": "SDK all-event gradient; not used: the correction is "
                   "ALL_EVENT x (C{n}:EventWidth + 1) + RESET_TICKS (always 0).",
    "DTC_AEO_RBV": "SDK all-event offset; not used (see DTC_AEG_RBV) (always 0).",
    "DTC_IWG_RBV": "SDK in-window gradient; not used (see DTC_AEG_RBV) (always 0).",
    "DTC_IWO_RBV": "SDK in-window offset; not used (see DTC_AEG_RBV) (always 0).",
}

#: ROI{n}: only (ROISUM{n}: serves the same names without this meaning).
ROI_DOCS = {
    "MinX": "First bin of channel n's spectrum that MCA{n}:ArrayData shows.",
    "MinX_RBV": "Readback of MinX.",
    "SizeX": "Bins of channel n's spectrum that MCA{n}:ArrayData shows (0: to the last bin).",
    "SizeX_RBV": "Readback of SizeX.",
}

#: Enum PVs that start at another index than 0 (plugins run with callbacks enabled).
ENUM_DEFAULTS = {"EnableCallbacks": 1, "EnableCallbacks_RBV": 1, "ArrayCallbacks": 1,
                 "ArrayCallbacks_RBV": 1}

_POOL_WORDS = ("Pool", "Queue", "Sort", "Alloc", "FreeList", "Threads", "Disordered")


def _doc(spec: Spec, writable: bool, docs: Optional[dict] = None) -> str:
    docs = DOCS if docs is None else docs
    if spec.name in docs:
        return docs[spec.name]
    if any(w in spec.name for w in _POOL_WORDS):
        what = "areaDetector pool/queue bookkeeping; no NDArray pool or asyn queue here"
    else:
        what = f"areaDetector {spec.rtype} record; not used by this IOC"
    return f"{what} ({'accepted without effect' if writable else 'constant'})."


def _attr(name: str) -> str:
    return "p_" + "".join(c if c.isalnum() else "_" for c in name).lower()


def _value(spec: Spec):
    if spec.dbr == "ENUM":
        return spec.strings[0]
    if spec.dbr in ("STRING", "CHAR"):
        return ""
    zero = 0.0 if spec.dbr in ("DOUBLE", "FLOAT") else 0
    return [zero] if spec.nelm > 1 else zero


async def _store(group, instance, value):
    """Putter of the generic writable PVs: keep the value, mirror it to its _RBV."""
    rbv = group.pvdb.get(instance.pvname + "_RBV")
    if rbv is not None:
        await rbv.write(value)
    hook = getattr(group, "on_put", None)
    if hook is not None:
        await hook(instance.pvspec.name, value)
    return value


def make_pv(spec: Spec, *, ts_points: int, name: Optional[str] = None, doc: Optional[str] = None,
            put=None, docs: Optional[dict] = None) -> pvproperty:
    """One pvproperty with the reference's DBR type, count class, strings and record type."""
    name = name or spec.name
    writable = spec.rtype in WRITABLE_RECORDS or (
        spec.rtype == "waveform" and spec.dbr == "CHAR" and not name.endswith("_RBV"))
    doc = doc or _doc(spec, writable, docs)
    kw = {"put": put or _store} if writable else {"read_only": True}
    if spec.dbr == "ENUM":
        prop = enum_pv(name, spec.strings, ENUM_DEFAULTS.get(spec.name, 0), doc=doc, **kw)
    elif spec.dbr == "CHAR":
        prop = text_pv(name, "", doc=doc, length=spec.nelm, **kw)
    else:
        dtype = {"STRING": ChannelType.STRING, "LONG": ChannelType.LONG, "SHORT": ChannelType.INT,
                 "DOUBLE": ChannelType.DOUBLE, "FLOAT": ChannelType.FLOAT, "?": ChannelType.LONG,
                 }[spec.dbr]
        extra = {}
        if spec.nelm > 1:
            extra["max_length"] = ts_points if spec.nelm == LONG_WAVEFORM else spec.nelm
            extra["max_subscription_backlog"] = WAVEFORM_BACKLOG
        prop = pvproperty(name=name, value=_value(spec), dtype=dtype, doc=doc, **extra, **kw)
    return record_type(prop, spec.rtype)


def declare(specs: Iterable[Spec], *, ts_points: int, exclude: Iterable[str] = (),
            prefix: str = "", docs: Optional[dict] = None) -> dict:
    """attr -> pvproperty for every spec not in `exclude` (names already served)."""
    skip = set(exclude)
    return {_attr(prefix + s.name): make_pv(s, ts_points=ts_points, name=prefix + s.name,
                                            docs=docs)
            for s in specs if s.name not in skip}


class PluginGroup(Xsp3Group):
    """One areaDetector plugin prefix. `stats` counts what the plugin handles;
    `publish` posts those counts (called by the channel group on each frame post)."""

    kind = "StdArrays"

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.stats = PluginStats()
        self._by_name = {pv.pvspec.name: pv for pv in self.attr_pvdb.values()}

    def pv_named(self, name: str):
        return self._by_name.get(name)

    @property
    def enabled(self) -> bool:
        return self.stats.enabled

    async def on_put(self, name: str, value) -> None:
        if name == "EnableCallbacks":
            was = self.stats.enabled
            self.stats.enabled = value in (enums.DisableEnable.ENABLE, 1)
            if self.stats.enabled and not was and self.kind in ("ROIStat", "Attribute",
                                                                "TimeSeries"):
                # back at work: its time series show what is held now (as a TSRead)
                await root_of(self).update_arrays()
        elif name == "ArrayCounter":
            self.stats.counter = int(value)
        elif name == "DroppedArrays":
            self.stats.dropped = int(value)

    async def reset_counters(self) -> None:
        """det1:ERASE: counts start again from 0 (areaDetector's ERASE_ArrayCounters
        writes 0 to every plugin's ArrayCounter)."""
        self.stats.reset()
        await self._post({"ArrayCounter": 0, "DroppedArrays": 0, **self._counters()})

    async def idle(self) -> None:
        """No frames coming (between runs): the rate decays to 0 (PluginStats.idle)."""
        self.stats.idle()
        await self._post(self._counters())

    def _counters(self) -> dict:
        s = self.stats
        return {"ArrayCounter_RBV": s.counter, "ArrayRate_RBV": s.rate,
                "DroppedArrays_RBV": s.dropped}

    async def _post(self, values: dict) -> None:
        for name, value in values.items():
            pv = self._by_name.get(name)
            if pv is not None and pv.value != value:
                await pv.write(value, verify_value=False)

    async def publish(self, frame_number: int, bins: int, timestamp: float) -> None:
        """Post the counters, rate and array description after the plugin handled frames."""
        s = self.stats
        values = self._counters()
        if s.counter:
            values.update({"UniqueId_RBV": frame_number, "TimeStamp_RBV": timestamp,
                           "EpicsTSSec_RBV": int(timestamp), "EpicsTSNsec_RBV":
                           int((timestamp % 1) * 1e9), "ArraySize0_RBV": bins,
                           "ArraySizeX_RBV": bins, "ArraySize_RBV": bins * 8,
                           "NDimensions_RBV": 1, "Dim0SA_RBV": bins, "Dim0SA": bins})
        await self._post(values)


@functools.lru_cache(maxsize=None)
def plugin_group(kind: str, ts_points: int, exclude: tuple = ()) -> type:
    """The PluginGroup class of one kind of plugin (exclude: names its parent serves)."""
    extra, plugin_type = KINDS[kind]
    specs = parse(PLUGIN_BASE) + (parse(extra) if extra else [])
    ns = declare(specs, ts_points=ts_points, exclude=exclude,
                 docs={**DOCS, **ROI_DOCS} if kind == "ROI" else DOCS)
    ns[_attr("PluginType_RBV")] = pvproperty(
        name="PluginType_RBV", value=plugin_type, dtype=ChannelType.STRING, read_only=True,
        doc=DOCS["PluginType_RBV"])
    ns["kind"] = kind
    ns["__doc__"] = f"areaDetector {plugin_type} plugin-base PVs (see plugin_pvs)."
    ns["__module__"] = __name__
    return type(f"{kind}PluginPVs{ts_points}", (PluginGroup,), ns)
