"""`det1:` PVs: acquisition control, detector configuration and status.

Names, enum strings and put semantics follow the areaDetector Xspress3 IOC so
existing clients work unchanged. The group holds PVs only: every putter hands
over to the root group (`server.Xspress3IOC`), which owns the logic.
"""
from __future__ import annotations

from caproto import ChannelType
from caproto.server import pvproperty

from xspress3.vocabulary import DEFAULT_BINS, INT32_MAX

from . import adbase_pvs, enums, handlers, plugin_pvs
from .handlers import root_of
from .pvtypes import PutRejected, Xsp3Group, command, enum_pv, root_putter, setting, text_pv
from .adbase_pvs import set_record_types

MAX_EXPOSURE_S = 53.6  # 2**32 ticks of the 80 MHz clock
MIN_EXPOSURE_S = 1e-5

#: EPICS record types of det1: PVs where the areaDetector IOC's differ from the default rule
RECORD_TYPES = {"RUN_FLAGS": "mbbo", "RUN_FLAGS_RBV": "mbbi", "MAX_FRAMES_DRIVER_RBV": "longout",
                "ArrayRate_RBV": "calc", "TemperatureActual": "ai",
                "ShutterStatusEPICS_RBV": "mbbi", "ShutterOpenEPICS": "calcout",
                "ShutterCloseEPICS": "calcout", "ShutterFanout": "fanout", "ShutterControlEPICS": "bi",
                "PoolUsedBuffers": "calc", "Acquire": "bo"}


def _ctrl_dtc() -> dict:
    """CTRL_DTC (Disable/Enable) and CTRL_DTC_RBV (Disabled/Enabled): the readback has
    its own strings, so it is written by index, never with the setpoint's string."""
    async def _put(group, instance, value):
        await group.apply_setting("ctrl_dtc", value)
        index = enums.DISABLE_ENABLE.index(value)
        await group.ctrl_dtc_rbv.write(enums.DISABLED_ENABLED[index])
        root_of(group).setting_changed()
        return value

    sp = enum_pv("CTRL_DTC", enums.DISABLE_ENABLE, 0, put=_put,
                 doc="Enable: spectra are deadtime-corrected (float64) in files and the stream.")
    sp.persist = True  # read by the settings store
    rbv = enum_pv("CTRL_DTC_RBV", enums.DISABLED_ENABLED, 0, read_only=True,
                  doc="Readback of CTRL_DTC: whether deadtime correction is in force.")
    return {"ctrl_dtc": sp, "ctrl_dtc_rbv": rbv}


def _ns() -> dict:
    ns: dict = {"__doc__": __doc__, "__module__": __name__}

    ns["acquire"] = enum_pv("Acquire", enums.ACQUIRE, 0, put=root_putter(handlers.acquire_put),
                            doc="1 starts (or arms) an acquisition, 0 stops it. A put with callback "
                                "completes when the acquisition has ended.")
    ns["acquire_rbv"] = enum_pv("Acquire_RBV", enums.ACQUIRE_RBV, 0, read_only=True,
                                doc="1 while acquiring; always posts 1 before 0, even for one frame.")
    ns.update(setting("acquire_time", "AcquireTime", 1.0, dtype=float, units="s", precision=6,
                      lower_ctrl_limit=MIN_EXPOSURE_S, upper_ctrl_limit=MAX_EXPOSURE_S,
                      doc="Exposure (frame time) in seconds for internally timed frames."))
    ns.update(setting("acquire_period", "AcquirePeriod", 0.0, dtype=float, units="s", precision=6,
                      lower_ctrl_limit=0.0, upper_ctrl_limit=3600.0,
                      doc="Accepted for areaDetector clients; frames follow AcquireTime (no-op)."))
    ns.update(setting("num_images", "NumImages", 1, dtype=int, units="frames",
                      lower_ctrl_limit=1, upper_ctrl_limit=INT32_MAX,
                      doc="Frames per acquisition; also copied into HDF1:NumCapture."))
    ns["num_images_counter"] = pvproperty(name="NumImagesCounter_RBV", value=0, read_only=True,
                                          units="frames", doc="Frames acquired in this acquisition.")
    ns.update(setting("trigger_mode", "TriggerMode", enums.TriggerMode.INTERNAL.value,
                      enum_strings=enums.TRIGGER_MODES,
                      doc="Frame timing source. Internal and Software + Internal start at once; "
                          "the external modes arm and wait for triggers."))
    ns.update(setting("image_mode", "ImageMode", "Multiple", enum_strings=enums.IMAGE_MODES,
                      doc="Accepted for areaDetector clients; NumImages sets the frame count (no-op)."))
    ns["soft_trigger"] = enum_pv("SoftTrigger", enums.SOFT_TRIGGER, 0,
                                 put=root_putter(handlers.soft_trigger_put),
                                 doc="In Software modes, advances to the next frame.")
    ns["soft_trigger_rbv"] = enum_pv("SoftTrigger_RBV", enums.SOFT_TRIGGER, 0, read_only=True,
                                     doc="Readback of SoftTrigger.")
    ns["trigger"] = enum_pv("TRIGGER", enums.TRIGGER, 0, put=root_putter(handlers.soft_trigger_put),
                            doc="Same as SoftTrigger (name used by ophyd's Xspress3 cam).")
    ns.update(command("erase_cmd", "ERASE", handlers.erase, strings=enums.ERASE,
                      doc="Any write erases the frames used, the sums and the counters; the put "
                          "completes when the erase is done (milliseconds)."))
    ns.update(setting("erase_on_start", "EraseOnStart", "Yes", enum_strings=enums.NO_YES,
                      doc="Yes: each acquisition starts from zeroed sums and counters. Frame memory "
                          "used by a run is always cleared first, so no frame carries old counts."))
    ns.update(command("update_cmd", "UPDATE", handlers.update_arrays, strings=enums.NO_LABELS,
                      doc="Posts the latest spectra and scalers now."))
    ns.update(setting("array_counter", "ArrayCounter", 0, dtype=int, lower_ctrl_limit=0,
                      upper_ctrl_limit=INT32_MAX, persist=False,
                      doc="Frames read out; 0 at acquisition start, +1 per frame."))
    ns.update(setting("array_callbacks", "ArrayCallbacks", "Enable", enum_strings=enums.DISABLE_ENABLE,
                      doc="Enable: spectra go to the waveform PVs, the stream and the file writer."))
    ns["detector_state"] = enum_pv("DetectorState_RBV", enums.DETECTOR_STATES, enums.State.INITIALIZING,
                                   read_only=True, doc="areaDetector detector state.")
    ns["status_message"] = text_pv("StatusMessage_RBV", "Initializing", read_only=True,
                                   doc="What the IOC is doing, or why the last request failed.")
    ns.update(_ctrl_dtc())
    ns.update(setting("config_path", "CONFIG_PATH", "", dtype=ChannelType.CHAR,
                      doc="Calibration directory restored by RESTORE_SETTINGS / CONNECT."))
    ns.update(setting("config_save_path", "CONFIG_SAVE_PATH", "", dtype=ChannelType.CHAR,
                      doc="Directory that SAVE_SETTINGS writes calibration to."))
    ns.update(command("connect_cmd", "CONNECT", handlers.connect, strings=enums.CONNECT, doc="Opens the detector (again)."))
    ns.update(command("disconnect_cmd", "DISCONNECT", handlers.disconnect, strings=enums.DISCONNECT, doc="Stops and closes the detector."))
    ns["connected"] = enum_pv("CONNECTED", enums.CONNECTED, 0, read_only=True,
                              doc="Whether the detector is open.")
    ns.update(command("reset_cmd", "RESET", handlers.reset, strings=enums.RESET_CMD, doc="Stops any run and clears an Error state."))
    ns.update(command("save_settings_cmd", "SAVE_SETTINGS", handlers.save_sdk_settings, strings=enums.SAVE,
                      doc="Writes the SDK calibration to CONFIG_SAVE_PATH."))
    ns.update(command("restore_settings_cmd", "RESTORE_SETTINGS", handlers.restore_sdk_settings, strings=enums.RESTORE,
                      doc="Loads the SDK calibration from CONFIG_PATH."))
    ns.update(setting("num_channels", "NUM_CHANNELS", 1, dtype=int, units="channels",
                      lower_ctrl_limit=1, upper_ctrl_limit=256, persist=False,
                      doc="Channels read out (1..MAX_NUM_CHANNELS_RBV)."))
    for attr, name, doc in (
            ("max_num_channels", "MAX_NUM_CHANNELS_RBV", "Channels of the system."),
            ("num_cards", "NUM_CARDS_RBV", "Cards of the system."),
            ("max_frames", "MAX_FRAMES_RBV", "Frame memory of the detector, in frames."),
            ("max_frames_driver", "MAX_FRAMES_DRIVER_RBV", "Frames one acquisition may hold."),
            ("frame_count", "FRAME_COUNT_RBV", "Frames completed by the detector in this run."),
            ("max_spectra_rbv", "MAX_SPECTRA_RBV", "Bins per spectrum."),
            ("num_frames_config_rbv", "NUM_FRAMES_CONFIG_RBV", "Frame memory configured."),
            ("unique_id", "UniqueId_RBV", "Frame number of the latest frame posted."),
            ("array_size_x", "ArraySizeX_RBV", "Bins per spectrum."),
            ("array_size_y", "ArraySizeY_RBV", "Channels."),
            ("array_size_z", "ArraySizeZ_RBV", "Always 0."),
            ("array_size0", "ArraySize0_RBV", "Bins per spectrum."),
            ("array_size1", "ArraySize1_RBV", "Channels."),
            ("array_size2", "ArraySize2_RBV", "Always 0."),
            ("stream_receivers", "StreamReceivers_RBV", "1 while a receiver holds the stream, else 0."),
            ("stream_frames_sent", "StreamFramesSent_RBV", "Frames the receiver acknowledged as stored, this run."),
            ("stream_frames_lost", "StreamFramesLost_RBV", "Frames that could not be streamed in this run."),
            ("frames_lost", "FramesLost_RBV", "Frames lost by the detector (overrun) in this run."),
    ):
        ns[attr] = pvproperty(name=name, value=0, read_only=True, doc=doc)
    ns["max_spectra"] = pvproperty(name="MAX_SPECTRA", value=DEFAULT_BINS, doc="Accepted; bins are fixed (no-op).")
    ns["num_frames_config"] = pvproperty(name="NUM_FRAMES_CONFIG", value=0,
                                         doc="Accepted; frame memory is set by --frames-memory (no-op).")
    ns.update(setting("run_flags", "RUN_FLAGS", 0, enum_strings=enums.RUN_FLAGS,
                      doc="SDK run flags; only scalers and histograms are supported."))
    ns.update(setting("circular_buffer", "CircularBuffer", "Yes", enum_strings=enums.NO_YES,
                      doc="Yes: runs longer than frame memory use the circular buffer. No: "
                          "NumImages above MAX_FRAMES_RBV is rejected."))
    ns.update(setting("invert_f0", "INVERT_F0", 0, dtype=int, lower_ctrl_limit=0, upper_ctrl_limit=1,
                      doc="Invert the F0 (frame) trigger input."))
    ns.update(setting("invert_veto", "INVERT_VETO", 0, dtype=int, lower_ctrl_limit=0, upper_ctrl_limit=1,
                      doc="Invert the veto (gate) input."))
    ns.update(setting("debounce", "DEBOUNCE", 0, dtype=int, units="cycles", lower_ctrl_limit=0,
                      upper_ctrl_limit=255, doc="Trigger debounce in 80 MHz cycles."))
    ns.update(setting("record_min_x", "RecordMinX", 0, dtype=int, units="bins", lower_ctrl_limit=0,
                      upper_ctrl_limit=DEFAULT_BINS - 1,
                      doc="First bin read out, streamed and written (partial spectrum)."))
    ns.update(setting("record_size_x", "RecordSizeX", DEFAULT_BINS, dtype=int, units="bins",
                      lower_ctrl_limit=1, upper_ctrl_limit=DEFAULT_BINS,
                      doc="Number of bins read out, streamed and written (partial spectrum)."))
    ns.update(setting("update_rate", "UpdateRate", 10.0, dtype=float, units="Hz", precision=1,
                      lower_ctrl_limit=0.1, upper_ctrl_limit=50.0,
                      doc="Maximum rate of spectrum, ROI and SCA PV updates during a run."))
    # ADBase PVs that clients write or read; accepted and documented as no-ops here.
    ns.update(setting("data_type", "DataType", "UInt32", enum_strings=enums.DATA_TYPES,
                      rbv_record="mbbi",  # ophyd reads DataType_RBV.DISA
                      doc="Follows CTRL_DTC (UInt32, or Float64 when corrected); writes are no-ops."))
    ns.update(setting("color_mode", "ColorMode", "Mono", enum_strings=enums.COLOR_MODES,
                      doc="Always Mono (no-op)."))
    for attr, name, value in (("bin_x", "BinX", 1), ("bin_y", "BinY", 1), ("min_x", "MinX", 0),
                              ("min_y", "MinY", 0), ("size_x", "SizeX", DEFAULT_BINS), ("size_y", "SizeY", 1),
                              ("num_exposures", "NumExposures", 1)):
        ns.update(setting(attr, name, value, dtype=int, lower_ctrl_limit=0, upper_ctrl_limit=INT32_MAX,
                          doc=f"ADBase {name}: accepted, no effect on the Xspress3 (no-op)."))
    ns.update(setting("gain", "Gain", 1.0, dtype=float, lower_ctrl_limit=0.0, upper_ctrl_limit=1e6,
                      doc="ADBase Gain: accepted, no effect (no-op)."))
    ns["wait_for_plugins"] = enum_pv("WaitForPlugins", enums.NO_YES, 0,
                                     doc="Accepted; the IOC always hands frames to the writer (no-op).")
    ns["nd_attributes_file"] = text_pv("NDAttributesFile", "", doc="Accepted (no-op).")
    ns["det_name"] = pvproperty(name="NAME", value="Xspress3", dtype=ChannelType.STRING, doc="Detector name.")
    for attr, name, doc in (
            ("manufacturer", "Manufacturer_RBV", "Manufacturer."),
            ("model", "Model_RBV", "Model; says 'simulated' when the built-in simulator runs."),
            ("driver_version", "DriverVersion_RBV", "xspress3-ioc version."),
            ("adcore_version", "ADCoreVersion_RBV", "areaDetector core version this IOC mimics."),
            ("serial_number", "SerialNumber_RBV", "Serial number (address of the system)."),
            ("sdk_version", "SDKVersion_RBV", "SDK library in use."),
            ("firmware_version", "FirmwareVersion_RBV", "Hardware generation."),
            ("port_name", "PortName_RBV", "Port name."),
            ("stream_endpoint", "StreamEndpoint_RBV", "zmq endpoint of the data stream."),
            ("monitor_endpoint", "MonitorEndpoint_RBV", "zmq endpoint of the monitor socket."),
    ):
        ns[attr] = pvproperty(name=name, value="", dtype=ChannelType.STRING, read_only=True, doc=doc)
    ns["stream_paced"] = pvproperty(name="StreamPaced_RBV", value=0.0, read_only=True, units="s",
                                    precision=2,
                                    doc="Time this run waited for the receiver's credit (it set the pace).")
    ns["stream_shared"] = enum_pv("StreamShared_RBV", enums.NO_YES, 0, read_only=True,
                                  doc="Yes while the receiver holding the stream maps the IOC's frame "
                                      "memory (same host: spectra by shared memory, no copy).")
    ns["stream_lost_reason"] = text_pv("StreamLostReason_RBV", "", read_only=True,
                                       doc="Why stream frames were lost in this run, if any.")
    ns["simulation"] = enum_pv("Simulation_RBV", enums.NO_YES, 0, read_only=True,
                               doc="Yes when the built-in simulator stands in for the hardware.")
    adbase_pvs.extend(ns)
    ns.update(plugin_pvs.declare(plugin_pvs.parse(plugin_pvs.DET1_EXTRA), ts_points=1))
    set_record_types(ns, RECORD_TYPES)
    return ns


class _DetectorBase(Xsp3Group):
    async def apply_setting(self, attr, value):
        return await root_of(self).apply_setting(attr, value)


DetectorPVs = type("DetectorPVs", (_DetectorBase,), _ns())

__all__ = ["DetectorPVs", "PutRejected", "MAX_EXPOSURE_S", "MIN_EXPOSURE_S"]
