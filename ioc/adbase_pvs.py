"""areaDetector PVs that clients connect to but that mean nothing for an Xspress3.

ophyd's `CamBase` / `Xspress3DetectorCam` and its HDF5 plugin classes declare
every ADBase, NDPluginBase, NDFile and NDFileHDF5 record. Components of those
devices connect when they are read (configuration, `describe`, a screen), and
one missing PV fails the whole read. So the IOC serves them: each is declared
here, accepted and documented as a no-op. Two kinds:

- plain no-ops: a write is stored and read back, nothing else happens;
- fixed values: the writer has one setting (e.g. zlib level 1), so a write is
  accepted but the readback keeps the value actually in force.

`extend(ns)` adds the `det1:` ones, `extend_file(ns)` the `HDF1:` ones, to the
namespaces built in detector_pvs and file_pvs. A name that the namespace
already defines is an error at import, so a real PV is never shadowed.
"""
from __future__ import annotations

from typing import Any, Optional, Sequence

from caproto import ChannelType
from caproto.server import pvproperty

from xspress3.vocabulary import DEFAULT_BINS, INT32_MAX

from . import enums
from .pvtypes import enum_pv, record_type, text_pv

NO_SHUTTER = "The IOC drives no shutter (no-op)."
NO_POOL = "The IOC keeps no NDArray pool (always 0)."
NO_QUEUE = "The writer has its own thread and queue, not an asyn plugin queue (always 0)."
BLOSC_SHUFFLES = ("None", "Byte", "Bit")
EXTRA_DIMS = ("3", "4", "5", "6", "7", "8", "9", "X", "Y")
EXTRA_DIMS_N = EXTRA_DIMS + ("N",)
MAX_DIMS = 10
#: areaDetector computes these in calc/calcout records, so they are DOUBLE there
CALC_RECORDS = ("PoolUsedBuffers", "QueueUse", "QueueUseHIGH", "QueueUseHIHI", "QueueFreeLow", "SortFreeLow")


def _attr(name: str) -> str:
    """Python attribute for a PV name: `ad_` + the name, lower case, `:`/`.` removed."""
    return "ad_" + "".join(c if c.isalnum() else "_" for c in name).lower()


def _kwargs(length: Optional[int], units: str, limits: Optional[tuple]) -> dict:
    kw: dict = {}
    if units:
        kw["units"] = units
    if limits is not None:
        kw["lower_ctrl_limit"], kw["upper_ctrl_limit"] = limits
    if length is not None:
        kw["max_length"] = length
    return kw


def readonly(name: str, value: Any, doc: str, *, strings: Optional[Sequence[str]] = None,
             dtype=None, units: str = "", length: Optional[int] = None) -> pvproperty:
    """A read-only PV holding a constant."""
    if strings is not None:
        return enum_pv(name, strings, value, read_only=True, doc=doc)
    if dtype == ChannelType.CHAR:
        return text_pv(name, value, read_only=True, doc=doc)
    kw = _kwargs(length, units, None)
    return pvproperty(name=name, value=value, dtype=dtype, read_only=True, doc=doc, **kw)


def writable(name: str, value: Any, doc: str, *, strings: Optional[Sequence[str]] = None,
             dtype=None, units: str = "", length: Optional[int] = None,
             limits: Optional[tuple] = None, rbv: bool = True, fixed: bool = False) -> dict:
    """A writable PV (and its `_RBV` twin unless rbv=False).

    fixed=False: the written value is stored in both. fixed=True: a write is
    accepted, but both keep `value`, the one setting the IOC has.
    """
    rbv_attr = _attr(name + "_RBV")

    async def _put(group, instance, new_value):
        accepted = value if fixed else new_value
        if rbv:
            await getattr(group, rbv_attr).write(accepted)
        return accepted

    if strings is not None:
        sp = enum_pv(name, strings, value, put=_put, doc=doc)
        readback = enum_pv(name + "_RBV", strings, value, read_only=True, doc=f"Readback of {name}.")
    elif dtype == ChannelType.CHAR:
        sp = text_pv(name, value, put=_put, doc=doc)
        readback = text_pv(name + "_RBV", value, read_only=True, doc=f"Readback of {name}.")
    else:
        kw = _kwargs(length, units, limits)
        sp = pvproperty(name=name, value=value, dtype=dtype, put=_put, doc=doc, **kw)
        kw.pop("lower_ctrl_limit", None)
        kw.pop("upper_ctrl_limit", None)
        readback = pvproperty(name=name + "_RBV", value=value, dtype=dtype, read_only=True,
                              doc=f"Readback of {name}.", **kw)
    out = {_attr(name): sp}
    if rbv:
        out[rbv_attr] = readback
    return out


def set_record_types(ns: dict, types: dict) -> None:
    """Declare the record type (pvtypes.record_type) of the PVs named in `types`."""
    for prop in ns.values():
        if isinstance(prop, pvproperty) and prop.pvspec.name in types:
            record_type(prop, types[prop.pvspec.name])


def _add(ns: dict, items: dict) -> None:
    """Add `items` to a group namespace; refuse to reuse an attribute or a PV name."""
    taken = {p.pvspec.name for p in ns.values() if isinstance(p, pvproperty)}
    for attr, prop in items.items():
        if attr in ns:
            raise ValueError(f"adbase_pvs: attribute {attr} is already declared")
        if prop.pvspec.name in taken:
            raise ValueError(f"adbase_pvs: PV {prop.pvspec.name} is declared twice")
        taken.add(prop.pvspec.name)
        ns[attr] = prop


# ---- det1: (ADBase / CamBase) ---------------------------------------------------------

def _camera_pvs() -> dict:
    pvs: dict = {}
    ro = readonly
    pvs[_attr("ArrayRate_RBV")] = ro("ArrayRate_RBV", 0.0, "ADBase frame rate; not computed "
                                     "here (always 0). ArrayCounter_RBV counts frames.",
                                     units="Hz")
    pvs[_attr("ArraySize_RBV")] = ro("ArraySize_RBV", 0, "ADBase array size in bytes; not "
                                     "computed (always 0). See ArraySize0/1_RBV.", units="bytes")
    pvs[_attr("MaxSizeX_RBV")] = ro("MaxSizeX_RBV", DEFAULT_BINS, "ADBase sensor width: the bins of "
                                    "a full spectrum.", units="bins")
    pvs[_attr("MaxSizeY_RBV")] = ro("MaxSizeY_RBV", 0, "ADBase sensor height: the channels "
                                    "of the system.", units="channels")
    pvs[_attr("NumExposuresCounter_RBV")] = ro("NumExposuresCounter_RBV", 0,
                                               "ADBase exposure counter; one exposure per "
                                               "frame, so always 0. See NumImagesCounter_RBV.")
    pvs[_attr("TimeRemaining_RBV")] = ro("TimeRemaining_RBV", 0.0, "ADBase time remaining; "
                                         "not computed (always 0).", units="s")
    for name in ("StringFromServer_RBV", "StringToServer_RBV"):
        pvs[_attr(name)] = ro(name, "", "ADBase serial-port echo; the Xspress3 talks UDP "
                              "through the SDK (always empty).", dtype=ChannelType.CHAR)
    for name in ("PoolAllocBuffers", "PoolFreeBuffers", "PoolMaxBuffers", "PoolUsedBuffers"):
        pvs[_attr(name)] = ro(name, 0.0 if name in CALC_RECORDS else 0, NO_POOL)
    for name in ("PoolMaxMem", "PoolUsedMem"):
        pvs[_attr(name)] = ro(name, 0.0, NO_POOL, units="MB")
    for name in ("ShutterStatus_RBV", "ShutterStatusEPICS_RBV"):
        pvs[_attr(name)] = ro(name, "Closed", NO_SHUTTER, strings=enums.CLOSED_OPEN)
    pvs.update(writable("AsynIO", 0, "asyn record of the port; accepted, no effect (no-op).",
                        dtype=int, rbv=False))
    record_type(pvs[_attr("AsynIO")], "asyn")
    pvs.update(writable("ReadStatus", "", "ADBase read-status request; status PVs update "
                        "on their own (no-op).", strings=enums.NO_LABELS, rbv=False))
    pvs.update(writable("FrameType", "Normal", "ADBase frame type; every Xspress3 frame is a "
                        "normal frame (fixed).", strings=enums.FRAME_TYPES, fixed=True))
    async def _shutter_mode(group, instance, value):
        # the readback has areaDetector's own strings: mirror by index
        rbv = getattr(group, _attr("ShutterMode_RBV"))
        await rbv.write(enums.SHUTTER_MODES_RBV[enums.SHUTTER_MODES.index(value)])
        return value

    pvs[_attr("ShutterMode")] = enum_pv("ShutterMode", enums.SHUTTER_MODES, 0, put=_shutter_mode,
                                        doc=NO_SHUTTER)
    pvs[_attr("ShutterMode_RBV")] = ro("ShutterMode_RBV", "None", NO_SHUTTER,
                                       strings=enums.SHUTTER_MODES_RBV)
    pvs.update(writable("ShutterControl", "Close", NO_SHUTTER, strings=enums.CLOSE_OPEN))
    pvs[_attr("ShutterControlEPICS")] = ro("ShutterControlEPICS", "Closed", NO_SHUTTER,
                                           strings=enums.CLOSED_OPEN)
    for name in ("ShutterOpenDelay", "ShutterCloseDelay"):
        pvs.update(writable(name, 0.0, NO_SHUTTER, dtype=float, units="s", limits=(0.0, 3600.0)))
    for name in ("ShutterOpenEPICS", "ShutterCloseEPICS"):
        pvs.update(writable(name, 0.0, NO_SHUTTER, dtype=float, rbv=False))
    pvs.update(writable("ShutterFanout", 0, NO_SHUTTER, dtype=ChannelType.INT, rbv=False))
    for name in ("ReverseX", "ReverseY"):
        pvs.update(writable(name, "No", "ADBase image flip; spectra are not images (no-op).",
                            strings=enums.NO_YES))
    pvs.update(writable("Temperature", 0.0, "ADBase sensor set temperature; the Xspress3 "
                        "has no temperature control here (no-op).", dtype=float, units="C"))
    pvs.update(writable("TemperatureActual", 0.0, "ADBase measured temperature; not read "
                        "(always 0).", dtype=float, units="C", rbv=False))
    return pvs


def extend(ns: dict) -> None:
    """Add the ADBase / CamBase compatibility PVs to the det1: namespace."""
    _add(ns, _camera_pvs())


# ---- HDF1: (NDPluginBase / NDFile / NDFileHDF5) ----------------------------------------

def _plugin_pvs() -> dict:
    pvs: dict = {}
    ro = readonly
    pvs[_attr("ADCoreVersion_RBV")] = ro("ADCoreVersion_RBV", "", "areaDetector core "
                                         "version this IOC mimics (as det1:).",
                                         dtype=ChannelType.STRING)
    pvs[_attr("DriverVersion_RBV")] = ro("DriverVersion_RBV", "", "xspress3-ioc "
                                         "version (as det1:).",
                                         dtype=ChannelType.STRING)
    pvs[_attr("ArrayRate_RBV")] = ro("ArrayRate_RBV", 0.0, "Frames per second the writer "
                                     "wrote while capturing (over the last second or more).",
                                     units="Hz")
    for name in ("ArraySizeX_RBV", "ArraySizeY_RBV", "ArraySizeZ_RBV", "ArraySize_RBV"):
        pvs[_attr(name)] = ro(name, 0, "Not maintained (always 0); ArraySize0/1_RBV hold the "
                              "shape of the last frame written.")
    pvs[_attr("BayerPattern_RBV")] = ro("BayerPattern_RBV", "RGGB", "Camera colour pattern; "
                                        "meaningless for spectra (constant).",
                                        strings=enums.BAYER_PATTERNS)
    for name in ("EpicsTSSec_RBV", "EpicsTSNsec_RBV"):
        pvs[_attr(name)] = ro(name, 0, "NDArray EPICS time stamp; not maintained (always 0).")
    pvs[_attr("TimeStamp_RBV")] = ro("TimeStamp_RBV", 0.0, "NDArray time stamp; not "
                                     "maintained (always 0).", units="s")
    pvs[_attr("ExecutionTime_RBV")] = ro("ExecutionTime_RBV", 0.0, "Plugin execution time; "
                                         "not measured (always 0).", units="ms")
    pvs[_attr("Codec_RBV")] = ro("Codec_RBV", "", "NDArray codec; frames reach the writer "
                                 "uncompressed (always empty).", dtype=ChannelType.STRING)
    pvs[_attr("CompressedSize_RBV")] = ro("CompressedSize_RBV", 0, "NDArray compressed size; "
                                          "not used (always 0).", units="bytes")
    pvs[_attr("MaxThreads_RBV")] = ro("MaxThreads_RBV", 1, "The writer is one thread.")
    pvs[_attr("RunTime")] = ro("RunTime", 0.0, "HDF5 write time; not measured (always 0).",
                               units="s")
    pvs[_attr("IOSpeed")] = ro("IOSpeed", 0.0, "HDF5 write speed; not measured (always 0).",
                               units="Mbit/s")
    for name in ("PoolAllocBuffers", "PoolFreeBuffers", "PoolMaxBuffers", "PoolUsedBuffers"):
        pvs[_attr(name)] = ro(name, 0.0 if name in CALC_RECORDS else 0, NO_POOL)
    for name in ("PoolMaxMem", "PoolUsedMem"):
        pvs[_attr(name)] = ro(name, 0.0, NO_POOL, units="MB")
    for name in ("QueueFree", "QueueFreeLow", "QueueUse", "QueueUseHIGH", "QueueUseHIHI",
                 "NumQueuedArrays", "SortFree", "SortFreeLow"):
        pvs[_attr(name)] = ro(name, 0.0 if name in CALC_RECORDS else 0, NO_QUEUE)
    for dim in EXTRA_DIMS_N:
        name = f"ExtraDimName{dim}_RBV"
        pvs[_attr(name)] = ro(name, "", "Extra dimensions are not used: the layout is fixed "
                              "(see db_docs/hdf5-layout.md).", dtype=ChannelType.STRING)
    pvs[_attr("SWMRSupported_RBV")] = ro("SWMRSupported_RBV", "Supported",
                                         "Files are written in SWMR mode (constant).",
                                         strings=enums.SWMR_SUPPORTED)
    pvs[_attr("SWMRActive_RBV")] = ro("SWMRActive_RBV", "Off", "Not maintained (always Off); "
                                      "WriteFile_RBV says when a file is being written.",
                                      strings=("Off", "Active"))
    pvs[_attr("SWMRCbCounter_RBV")] = ro("SWMRCbCounter_RBV", 0, "Not maintained (always 0).")
    pvs[_attr("XMLValid_RBV")] = ro("XMLValid_RBV", "No", "No layout XML is read; the layout "
                                    "is fixed (constant).", strings=enums.NO_YES)
    pvs[_attr("XMLErrorMsg_RBV")] = ro("XMLErrorMsg_RBV", "", "No layout XML is read "
                                       "(always empty).", dtype=ChannelType.CHAR)
    pvs[_attr("NDAttributesStatus")] = ro("NDAttributesStatus", "Attributes file OK",
                                          "No attributes file is read (constant).",
                                          strings=enums.ATTRIBUTE_STATUS)

    noop = "Accepted for areaDetector clients; no effect (no-op)."
    layout = "Accepted; the HDF5 layout is fixed (see db_docs/hdf5-layout.md) (no-op)."
    pvs.update(writable("ArrayCallbacks", "Enable", "A file writer passes no frames on; "
                        "accepted (no-op).", strings=enums.DISABLE_ENABLE))
    pvs.update(writable("ColorMode", "Mono", "Always Mono (fixed).", strings=enums.COLOR_MODES,
                        fixed=True, rbv=False))
    pvs.update(writable("DataType", "UInt32", "Set by det1:CTRL_DTC (UInt32, or Float64 when "
                        "corrected); writes here are accepted (no-op).",
                        strings=enums.DATA_TYPES, rbv=False))
    for k in range(MAX_DIMS):
        if k >= 3:  # ArraySize0-2_RBV are real readbacks in file_pvs
            pvs[_attr(f"ArraySize{k}_RBV")] = ro(f"ArraySize{k}_RBV", 0, "Unused dimension "
                                                 "(always 0).")
        pvs.update(writable(f"ArraySize{k}", 0, noop, dtype=int, rbv=False))
    for k in range(MAX_DIMS):
        pvs.update(writable(f"Dim{k}SA", 0, noop, dtype=int))
    pvs.update(writable("Dimensions", [0] * MAX_DIMS, "Not maintained (always 0); "
                        "ArraySize0/1_RBV hold the frame shape.", dtype=int, length=MAX_DIMS))
    pvs.update(writable("NDimensions", 0, "Not maintained (always 0).", dtype=int))
    pvs.update(writable("AsynIO", 0, noop, dtype=int, rbv=False))
    record_type(pvs[_attr("AsynIO")], "asyn")
    pvs.update(writable("BloscCompressor", "LZ4", "Blosc compression uses LZ4 (fixed).",
                        strings=enums.BLOSC_COMPRESSORS, fixed=True))
    pvs.update(writable("BloscLevel", 5, "Blosc compression uses level 5 (fixed).",
                        dtype=int, fixed=True))
    pvs.update(writable("BloscShuffle", "Byte", "Blosc compression uses byte shuffle (fixed).",
                        strings=BLOSC_SHUFFLES, fixed=True))
    pvs.update(writable("ZLevel", 1, "zlib compression uses level 1 (fixed).", dtype=int,
                        fixed=True))
    pvs.update(writable("NumThreads", 1, "The writer is one thread (fixed).", dtype=int,
                        fixed=True))
    pvs.update(writable("FileFormat", "HDF5", "HDF5 is the only format (fixed).",
                        strings=enums.FILE_FORMAT, fixed=True, rbv=False))
    for name in ("BoundaryAlign", "BoundaryThreshold", "DataBitsOffset", "NumDataBits",
                 "SZipNumPixels", "NumRowChunks", "NumColChunks", "NumFramesFlush",
                 "NDAttributeChunk"):
        pvs.update(writable(name, 0, layout, dtype=int, limits=(0, INT32_MAX)))
    for dim in EXTRA_DIMS:
        pvs.update(writable(f"ExtraDimChunk{dim}", 0, layout, dtype=int))
    for dim in EXTRA_DIMS_N:
        pvs.update(writable(f"ExtraDimSize{dim}", 0, layout, dtype=int))
        pvs.update(writable(f"PosIndexDim{dim}", "", layout, dtype=ChannelType.STRING))
        pvs.update(writable(f"PosNameDim{dim}", "", layout, dtype=ChannelType.STRING))
    for name in ("StoreAttr", "StorePerform", "DimAttDatasets", "DeleteDriverFile"):
        pvs.update(writable(name, "No", layout, strings=enums.NO_YES))
    pvs.update(writable("FillValue", 0.0, layout, dtype=float))
    pvs.update(writable("TempSuffix", "", layout, dtype=ChannelType.STRING))
    pvs.update(writable("ReadFile", "Done", "Reading files back is not supported (no-op).",
                        strings=enums.TS_READ, rbv=False))
    pvs[_attr("ReadFile_RBV")] = ro("ReadFile_RBV", "Done", "Files are never read back (constant).",
                                    strings=enums.READ_FILE_RBV)
    pvs[_attr("FileFormat_RBV")] = ro("FileFormat_RBV", "HDF5", "HDF5 is the only format "
                                      "(constant).", strings=enums.FILE_FORMAT_RBV)
    for name in ("DisorderedArrays", "DroppedOutputArrays"):
        pvs.update(writable(name, 0, "Not maintained (always 0); FramesDropped_RBV counts "
                            "frames the writer could not write.", dtype=int))
    pvs.update(writable("MinCallbackTime", 0.0, "Every frame is written (no-op).", dtype=float,
                        units="s"))
    pvs.update(writable("MaxArrayRate", 0.0, "Every frame is written (no-op).", dtype=float,
                        units="Hz"))
    pvs.update(writable("MaxArrayRate_COUT", 0.0, noop, dtype=float, rbv=False))
    pvs.update(writable("MaxByteRate", 0.0, "Every frame is written (no-op).", dtype=float,
                        units="B/s"))
    pvs.update(writable("SortMode", "Unsorted", "Frames arrive in order (no-op).",
                        strings=enums.SORT_MODES))
    pvs.update(writable("SortSize", 0, "Frames arrive in order (no-op).", dtype=int))
    pvs.update(writable("SortTime", 0.0, "Frames arrive in order (no-op).", dtype=float,
                        units="s"))
    pvs.update(writable("ProcessPlugin", "", noop, strings=enums.NO_LABELS, rbv=False))
    pvs.update(writable("EmptyFreeList", "", noop, strings=enums.NO_LABELS, rbv=False))
    pvs.update(writable("NDAttributesFile", "", "No attributes file is read; the per-frame "
                        "attributes are fixed (no-op).", dtype=ChannelType.CHAR, rbv=False))
    pvs.update(writable("NDAttributesMacros", "", noop, dtype=ChannelType.CHAR, rbv=False))
    pvs.update(writable("FileNumber_Sync", 0, "Old ADCore file-number record (no-op).",
                        dtype=int, rbv=False))
    pvs.update(writable("FileNumber_write", 0, "Old ADCore file-number record (no-op).",
                        dtype=int, rbv=False))
    return pvs


def extend_file(ns: dict) -> None:
    """Add the NDPluginBase / NDFile / NDFileHDF5 compatibility PVs to the HDF1: namespace."""
    _add(ns, _plugin_pvs())
