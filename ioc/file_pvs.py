"""`HDF1:` PVs: the built-in HDF5 writer, named as the areaDetector NDFileHDF5 plugin.

File writing runs in the writer's own thread (xspress3.writers.hdf5); these PVs
only carry settings in and status out. ADCore PVs that mean nothing here are
accepted and documented as no-ops.
"""
from __future__ import annotations

from caproto import ChannelType
from caproto.server import pvproperty

from xspress3.vocabulary import INT32_MAX

from . import adbase_pvs, enums, handlers, plugin_pvs
from .handlers import root_of
from .pvtypes import PATH_LENGTH, Xsp3Group, enum_pv, root_putter, setting, text_pv

XML_NAME_LENGTH = 2048   # NELM of areaDetector's XMLFileName

#: EPICS record types of HDF1: PVs where the areaDetector IOC's differ from the default rule
RECORD_TYPES = {"Capture": "busy", "WriteFile": "busy", "ReadFile": "busy", "FlushNow": "busy",
                "ArrayRate_RBV": "calc", "MaxArrayRate_RBV": "calc", "MaxArrayRate_COUT": "calcout",
                "PoolUsedBuffers": "calc", "QueueUse": "calc", "QueueUseHIGH": "calcout",
                "QueueUseHIHI": "calcout", "QueueFreeLow": "calcout", "SortFreeLow": "calcout",
                "SortMode": "mbbo", "SortMode_RBV": "mbbi", "FileFormat": "mbbo",
                "FileFormat_RBV": "mbbi", "RunTime": "ai", "IOSpeed": "ai"}


def _ns() -> dict:
    ns: dict = {"__doc__": __doc__, "__module__": __name__}
    ns["plugin_type"] = pvproperty(name="PluginType_RBV", value="NDFileHDF5", dtype=ChannelType.STRING,
                                   read_only=True, doc="Plugin type, as ophyd checks it.")
    ns.update(setting("enable_callbacks", "EnableCallbacks", "Enable", enum_strings=enums.DISABLE_ENABLE,
                      doc="Disable: frames are not handed to the file writer."))
    ns.update(setting("blocking_callbacks", "BlockingCallbacks", "No", enum_strings=enums.NO_YES,
                      doc="Accepted (no-op): the writer has its own thread and queue."))
    ns.update(setting("file_path", "FilePath", "/tmp/", dtype=ChannelType.CHAR,
                      doc="Directory files are written to: absolute; refused outside --data-root "
                          "(after '..' and links)."))
    ns.update(setting("file_name", "FileName", "xspress3", dtype=ChannelType.CHAR,
                      doc="Base file name: one name, no '/' or NUL, at most 255 bytes."))
    ns.update(setting("file_template", "FileTemplate", "%s%s_%6.6d.h5", dtype=ChannelType.CHAR,
                      doc="printf template applied to (FilePath, FileName, FileNumber)."))
    ns.update(setting("file_number", "FileNumber", 0, dtype=int, lower_ctrl_limit=0,
                      upper_ctrl_limit=INT32_MAX, doc="Number put into the next file name."))
    ns.update(setting("auto_increment", "AutoIncrement", "Yes", enum_strings=enums.NO_YES,
                      doc="Yes: FileNumber goes up by one after each file."))
    ns.update(setting("auto_save", "AutoSave", "No", enum_strings=enums.NO_YES,
                      doc="Accepted (no-op): files are written in Stream mode."))
    ns.update(setting("file_write_mode", "FileWriteMode", "Stream", enum_strings=enums.FILE_WRITE_MODES,
                      doc="Stream is what the writer does; Single and Capture behave like Stream."))
    ns.update(setting("num_capture", "NumCapture", 1, dtype=int, lower_ctrl_limit=0,
                      upper_ctrl_limit=INT32_MAX, units="frames",
                      doc="Frames per file; 0 = until Capture is set to 0. NumImages copies here."))
    ns["num_captured"] = pvproperty(name="NumCaptured_RBV", value=0, read_only=True, units="frames",
                                    doc="Frames written to the current file (0 at Capture=1).")
    ns["capture"] = enum_pv("Capture", enums.CAPTURE, 0, put=root_putter(handlers.capture_put),
                            doc="1 opens a file for the next frames; 0 closes it. A put with callback "
                                "completes when the file is closed.")
    ns["capture_rbv"] = enum_pv("Capture_RBV", enums.CAPTURE_RBV, 0, read_only=True,
                                doc="Capturing while a file is open for frames.")
    ns.update(setting("create_directory", "CreateDirectory", 0, dtype=int, lower_ctrl_limit=-20,
                      upper_ctrl_limit=20,
                      doc="Non-zero: create missing directories of FilePath at capture."))
    ns["file_path_exists"] = enum_pv("FilePathExists_RBV", enums.NO_YES, 0, read_only=True,
                                     doc="Yes if a file can be created in FilePath (tried with a scratch "
                                         "file).")
    ns["full_file_name"] = text_pv("FullFileName_RBV", "", read_only=True, length=PATH_LENGTH,
                                   doc="Path of the current or last file.")
    ns["write_file"] = enum_pv("WriteFile", enums.WRITE_FILE, 0,
                               doc="Accepted (no-op): frames are written as they arrive.")
    ns["write_file_rbv"] = enum_pv("WriteFile_RBV", enums.WRITE_FILE_RBV, 0, read_only=True,
                                   doc="Writing while a file is open.")
    ns["write_status"] = enum_pv("WriteStatus", enums.WRITE_STATUS, 0, read_only=True,
                                 doc="Write error after a failure to open or write a file.")
    ns["write_message"] = text_pv("WriteMessage", "", read_only=True,
                                  doc="Why the last file operation failed, or what it did.")
    ns.update(setting("compression", "Compression", enums.Compression.NONE.value,
                      enum_strings=enums.COMPRESSION,
                      doc="None, zlib, Blosc, BSLZ4 (bitshuffle+LZ4) or LZ4; N-bit, szip and JPEG "
                          "are rejected."))
    ns["frames_dropped"] = pvproperty(name="FramesDropped_RBV", value=0, read_only=True,
                                      units="frames",
                                      doc="Frames of this capture not written: the file failed to open "
                                          "or write, or the queue was full.")
    for attr, name, strings, value in (("lazy_open", "LazyOpen", enums.NO_YES, 0),
                                       ("swmr_mode", "SWMRMode", enums.OFF_ON, 1),
                                       ("chunk_size_auto", "ChunkSizeAuto", enums.NO_YES, 1),
                                       ("position_mode", "PositionMode", enums.OFF_ON, 0)):
        ns.update(setting(attr, name, value, enum_strings=strings, persist=False,
                          doc=f"ADCore {name}: accepted for client compatibility (no-op)."))
    for attr, name, value in (("num_extra_dims", "NumExtraDims", 0),
                              ("num_frames_chunks", "NumFramesChunks", 0),
                              ("queue_size", "QueueSize", 4096), ("nd_array_address", "NDArrayAddress", 0)):
        ns.update(setting(attr, name, value, dtype=int, lower_ctrl_limit=0, upper_ctrl_limit=INT32_MAX,
                          persist=False,
                          doc=f"ADCore {name}: accepted for client compatibility (no-op)."))
    ns.update(setting("array_counter", "ArrayCounter", 0, dtype=int, lower_ctrl_limit=0,
                      upper_ctrl_limit=INT32_MAX, persist=False,
                      doc="Frames the file writer wrote while capturing; a write sets the count."))
    ns.update(setting("dropped_arrays", "DroppedArrays", 0, dtype=int, lower_ctrl_limit=0,
                      upper_ctrl_limit=INT32_MAX, persist=False,
                      doc="Frames not written, summed over captures; a write sets the count."))
    ns.update(setting("xml_file_name", "XMLFileName", "", dtype=ChannelType.CHAR, persist=False,
                      length=XML_NAME_LENGTH,
                      doc="Accepted (no-op): the layout is fixed (see db_docs/hdf5-layout.md)."))
    ns["xml_file_name_rbv"] = text_pv("XMLFileName_RBV", "", read_only=True,
                                      length=XML_NAME_LENGTH, doc="Readback of XMLFileName.")
    ns.update(setting("nd_array_port", "NDArrayPort", "XSP3", dtype=ChannelType.STRING, persist=False,
                      doc="Accepted (no-op)."))
    ns["flush_now"] = enum_pv("FlushNow", enums.FLUSH, 0,
                              doc="Accepted: the writer flushes at least once a second anyway.")
    for attr, name in (("array_size0", "ArraySize0_RBV"), ("array_size1", "ArraySize1_RBV"),
                       ("array_size2", "ArraySize2_RBV"), ("unique_id", "UniqueId_RBV")):
        ns[attr] = pvproperty(name=name, value=0, read_only=True, doc="Shape/id of the last frame written.")
    ns["data_type_rbv"] = enum_pv("DataType_RBV", enums.DATA_TYPES, "UInt32", read_only=True,
                                  doc="UInt32, or Float64 with CTRL_DTC.")
    ns["color_mode_rbv"] = enum_pv("ColorMode_RBV", enums.COLOR_MODES, 0, read_only=True,
                                   doc="Always Mono.")
    ns["port_name"] = pvproperty(name="PortName_RBV", value="HDF1", dtype=ChannelType.STRING,
                                 read_only=True, doc="Port name.")
    adbase_pvs.extend_file(ns)
    ns.update(plugin_pvs.declare(plugin_pvs.parse(plugin_pvs.HDF1_EXTRA), ts_points=1))
    for k in range(10):
        RECORD_TYPES.update({f"ArraySize{k}": "longin", f"Dim{k}SA": "subArray",
                             f"Dim{k}SA_RBV": "subArray"})
    adbase_pvs.set_record_types(ns, RECORD_TYPES)
    return ns


class _FileBase(Xsp3Group):
    async def apply_setting(self, attr, value):
        return await root_of(self).file_setting(attr, value)


FilePVs = type("FilePVs", (_FileBase,), _ns())
