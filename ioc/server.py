"""The IOC's root PVGroup: a thin Channel Access face of the run controller.

The run, series, capture, ROI and time-series state and the threads belong to
`controller.RunController`, which imports no caproto. This group builds it with
a `PvPublisher` (pv_publisher.py) that turns what it publishes into PV writes,
reads the PVs a request needs into typed arguments, and hands the request on.
The handlers below are what the PV groups call, declared in handlers.RootHandlers
(wired through pvtypes.root_putter and pvtypes.command).

Threads (see db_docs/adr/0001-architecture.md):
- the caproto event loop runs putters, PV updates and the controller's coroutines;
- one control worker thread makes every SDK call that changes detector state;
- the readout thread (`readout.Readout`) reads frames and reports back through
  the controller's event queue, which the loop drains in order;
- the stream sender and the file writer have their own threads (writers/).
"""
from __future__ import annotations

import asyncio
import logging
import os
import time
from typing import Any, Optional

from caproto.server import SubGroup, pvproperty

from xspress3.driver import Xspress3
from xspress3.vocabulary import NUM_SCAS, TriggerMode

from . import enums
from .enums import DataType, DisabledEnabled, DisableEnable, NoYes, TsAction, TsMode
from .channel_pvs import channel_group
from .controller import (DRIVER_VERSION, ChannelSdkSettings, RunController, RunSettings,
                         detector_model)
from .detector_pvs import DetectorPVs
from .file_pvs import FilePVs
from .file_paths import PathRefused, check_file_name, probe_writable, resolve_directory
from .filewriter import CaptureTarget, FileCapture, check_compression
from .options import IocOptions
from .pv_publisher import PvPublisher
from .pvtypes import PutRejected, Xsp3Group, reason
from .settings_store import SettingsStore
from .sim_pvs import SimPVs

log = logging.getLogger(__name__)

State = enums.State

# det1 settings that cannot change while a run is active
FIXED_DURING_RUN = {"acquire_time", "num_images", "trigger_mode", "record_min_x", "record_size_x",
                    "circular_buffer", "ctrl_dtc", "invert_f0", "invert_veto", "debounce",
                    "run_flags", "num_channels"}



class IocBase(Xsp3Group):
    """Root group logic; `build_ioc_class` adds the subgroups."""

    def __init__(self, *args, options: IocOptions, driver: Optional[Xspress3] = None,
                 driver_error: str = "", **kwargs):
        super().__init__(*args, **kwargs)
        self.options = options
        self.channels = [getattr(self, f"ch{n}") for n in range(1, options.channels + 1)]
        self.bins = options.bins
        self.controller = RunController(options, PvPublisher(self), driver=driver,
                                        driver_error=driver_error)
        self.settings = SettingsStore(options.settings_file, self)
        self.ca_context = None          # the caproto server Context, set by main.serve
        self._started = time.time()

    @property
    def driver(self) -> Optional[Xspress3]:
        return self.controller.driver

    @property
    def driver_error(self) -> str:
        return self.controller.driver_error

    @property
    def files(self) -> FileCapture:
        return self.controller.files

    # ---- helpers ---------------------------------------------------------------------
    async def status(self, message: str, state: Optional[str] = None) -> None:
        await self.controller.status(message, state)

    async def put_rejected(self, pv, exc: Exception) -> None:
        text = f"{pv.pvname.removeprefix(self.prefix)} rejected: {reason(exc)}"
        log.warning("%s", text)
        await self.det.status_message.write(text[:255])

    # ---- startup -----------------------------------------------------------------------
    async def startup(self, async_lib) -> None:
        c = self.controller
        await c.start(1.0 / float(self.det.update_rate.value))
        if c.stream is not None:
            await self.det.stream_endpoint.write(c.stream.endpoint)
        if c.monitor is not None:
            await self.det.monitor_endpoint.write(self.options.monitor)
        await self.describe_detector()
        await self.settings.restore()
        await self.check_start_file_path()
        if self.driver is not None:
            await self.status("Idle", State.IDLE)
        else:
            await self.status(f"Not connected: {self.driver_error}"[:255], State.DISCONNECTED)

    async def describe_detector(self) -> None:
        d, det = self.driver, self.det
        simulated = d.simulated if d is not None else self.options.simulated
        await det.manufacturer.write("Quantum Detectors")
        await det.model.write(detector_model(d, self.options.simulated))
        await det.simulation.write(enums.NO_YES[bool(simulated)])
        await det.driver_version.write(DRIVER_VERSION)
        await det.adcore_version.write("3.12.1")
        await det.serial_number.write(self.options.address)
        await det.port_name.write("XSP3")
        await det.connected.write(enums.CONNECTED[d is not None])
        if d is not None:
            await det.sdk_version.write(os.path.basename(d.library_path)[:39])
            await det.firmware_version.write(f"generation {d.generation()}")
            await det.max_num_channels.write(d.num_channels)
            await det.num_cards.write(d.num_cards)
            await det.max_frames.write(d.frames_memory)
            await det.num_frames_config_rbv.write(d.frames_memory)
            await det.max_frames_driver.write(
                self.controller.max_frames(det.circular_buffer.value == NoYes.YES))
        await det.max_spectra_rbv.write(self.bins)
        # as the areaDetector Xspress3 database: DataType_RBV is disabled (ophyd reads .DISA)
        await det.data_type_rbv.fields["DISA"].write(1)
        await det.ad_maxsizex_rbv.write(self.bins)
        await det.ad_maxsizey_rbv.write(d.num_channels if d is not None else len(self.channels))
        await self.hdf.ad_adcoreversion_rbv.write(det.adcore_version.value)
        await self.hdf.ad_driverversion_rbv.write(det.driver_version.value)
        channels = len(self.channels)
        if d is not None:
            channels = min(channels, d.num_channels)
        await det.num_channels.write(channels, verify_value=False)
        await det.num_channels_rbv.write(channels)
        await self._sync_record_range()
        await self.post_array_size(self._record_range()[1], channels)

    async def post_array_size(self, bins: int, channels: int) -> None:
        """Shape of the arrays the IOC produces (ophyd's plugins check it before staging)."""
        det, hdf = self.det, self.hdf
        for pv, value in ((det.array_size_x, bins), (det.array_size0, bins),
                          (det.array_size_y, channels), (det.array_size1, channels),
                          (hdf.array_size0, bins), (hdf.array_size1, channels)):
            await pv.write(value)

    async def shutdown_ioc(self) -> None:
        """Stops the hardware, the threads, the files and the sockets (SIGTERM / Ctrl-C)."""
        await self.controller.shutdown()
        await asyncio.to_thread(self.settings.flush)

    # ---- settings --------------------------------------------------------------------
    def setting_changed(self) -> None:
        self.settings.schedule_save()

    def _record_range(self) -> tuple[int, int]:
        first = int(self.det.record_min_x_rbv.value)
        size = min(int(self.det.record_size_x.value), self.bins - first)
        return first, size

    async def _sync_record_range(self) -> None:
        first, size = self._record_range()
        await self.det.record_size_x_rbv.write(size)

    async def apply_setting(self, attr: str, value: Any) -> Any:
        det, c = self.det, self.controller
        if attr in FIXED_DURING_RUN and c.running:
            raise PutRejected(f"cannot change {attr} while acquiring")
        if attr == "num_images":
            memory = c.frames_memory
            if value > memory and det.circular_buffer_rbv.value != NoYes.YES:
                raise PutRejected(f"NumImages {value} exceeds frame memory {memory} "
                                  "(set CircularBuffer to Yes for longer runs)")
            await self.hdf.num_capture.write(value, verify_value=False)
            await self.hdf.num_capture_rbv.write(value)
            self.files.num_capture = int(value)
        elif attr == "circular_buffer":
            memory = c.frames_memory
            circular = value == NoYes.YES
            if not circular and int(det.num_images_rbv.value) > memory:
                raise PutRejected(f"NumImages is above frame memory {memory}; lower it first")
            await det.max_frames_driver.write(c.max_frames(circular))
        elif attr == "run_flags" and value != enums.RUN_FLAGS[0]:
            raise PutRejected("playback is not supported; only SCALERS & HIST")
        elif attr == "record_min_x":
            if value >= self.bins:
                raise PutRejected(f"RecordMinX must be below {self.bins}")
            await det.record_min_x_rbv.write(value)
            await self._sync_record_range()
            return value
        elif attr == "record_size_x":
            first = int(det.record_min_x_rbv.value)
            return max(1, min(int(value), self.bins - first))
        elif attr == "ctrl_dtc":
            enabled = value == DisableEnable.ENABLE
            data_type = (DataType.FLOAT64 if enabled else DataType.UINT32).value
            await det.data_type_rbv.write(data_type)
            await self.hdf.data_type_rbv.write(data_type)
            return (DisabledEnabled.ENABLED if enabled else DisabledEnabled.DISABLED).value
        elif attr == "data_type":
            return det.data_type_rbv.value
        elif attr == "color_mode":
            return enums.COLOR_MODES[0]
        elif attr == "num_channels":
            limit = self.driver.num_channels if self.driver else len(self.channels)
            limit = min(limit, len(self.channels))
            if value > limit:
                raise PutRejected(f"NUM_CHANNELS must be 1..{limit}")
        elif attr == "update_rate":
            c.set_update_period(1.0 / float(value))
        elif attr == "array_counter":
            await det.array_counter_rbv.write(value)
        return value

    def run_settings(self) -> RunSettings:
        """The det1 and channel readbacks a run is planned from."""
        det = self.det
        channels = int(det.num_channels_rbv.value)
        first_bin, size = self._record_range()
        return RunSettings(
            trigger_mode=TriggerMode(det.trigger_mode_rbv.value),
            num_images=int(det.num_images_rbv.value),
            circular_allowed=det.circular_buffer_rbv.value == NoYes.YES,
            channels=channels, first_bin=first_bin, num_bins=size,
            event_width=tuple(float(ch.event_width_rbv.value) for ch in self.channels[:channels]),
            dtc=det.ctrl_dtc_rbv.value == DisabledEnabled.ENABLED,
            exposure=float(det.acquire_time_rbv.value),
            invert_f0=bool(det.invert_f0_rbv.value), invert_veto=bool(det.invert_veto_rbv.value),
            debounce=int(det.debounce_rbv.value),
            erase_on_start=det.erase_on_start.value == NoYes.YES)

    # ---- acquisition (det1:Acquire, SoftTrigger, ERASE, UPDATE) ------------------------
    async def acquire_put(self, instance, value) -> str:
        if value in (enums.ACQUIRE[1], 1):
            await self.controller.acquire(self.run_settings())
        else:
            await self.controller.stop()
        return enums.ACQUIRE[0]

    async def soft_trigger_put(self, instance, value):
        if value in (0, enums.SOFT_TRIGGER[0], enums.TRIGGER[0]):
            return value
        await self.controller.soft_trigger()
        return 0

    async def erase(self) -> None:
        await self.controller.erase()

    async def update_arrays(self) -> None:
        await self.controller.post_time_series()

    # ---- connection (det1:CONNECT, DISCONNECT, RESET, SAVE/RESTORE_SETTINGS, SIM:) -------
    def _channel_sdk_settings(self) -> list[ChannelSdkSettings]:
        return [ChannelSdkSettings(
                    int(ch.threshold_rbv.value),
                    tuple((int(getattr(ch, f"win{w}_low_rbv").value),
                           int(getattr(ch, f"win{w}_high_rbv").value)) for w in (0, 1)))
                for ch in self.channels]

    async def connect(self) -> None:
        await self.controller.connect(self._channel_sdk_settings())

    async def disconnect(self) -> None:
        await self.controller.disconnect()

    async def reset(self) -> None:
        await self.controller.reset(self._channel_sdk_settings())

    @staticmethod
    def _directory(pv, name: str) -> str:
        if not pv.value:
            raise PutRejected(f"{name} is empty")
        return pv.value

    async def save_sdk_settings(self) -> None:
        path = self._directory(self.det.config_save_path_rbv, "CONFIG_SAVE_PATH")
        await self.controller.save_sdk_settings(path)

    async def restore_sdk_settings(self) -> None:
        path = self._directory(self.det.config_path_rbv, "CONFIG_PATH")
        held = await self.controller.restore_sdk_settings(path)
        for ch, s in zip(self.channels, held):
            await ch.threshold.write(s.threshold, verify_value=False)
            await ch.threshold_rbv.write(s.threshold)
            for w, (low, high) in enumerate(s.windows):
                for attr, value in ((f"win{w}_low", low), (f"win{w}_high", high)):
                    await getattr(ch, attr).write(value, verify_value=False)
                    await getattr(ch, attr + "_rbv").write(value)
        await self.status(f"Settings restored from {path}")

    async def sim_call(self, name: str, *args):
        return await self.controller.sim_call(name, *args)

    # ---- channels: SDK settings, ROIs, SCAs, time series ---------------------------------
    async def channel_setting(self, ch, attr: str, value: Any) -> Any:
        index = ch.number - 1
        if attr == "event_width":
            return value
        if attr == "threshold":
            return await self.controller.set_threshold(index, int(value))
        # window limits: win{w}_low / win{w}_high
        w = int(attr[3])
        low = int(value) if attr.endswith("low") else int(getattr(ch, f"win{w}_low_rbv").value)
        high = int(value) if attr.endswith("high") else int(getattr(ch, f"win{w}_high_rbv").value)
        low, high = await self.controller.set_window(index, w, low, high)
        return low if attr.endswith("low") else high

    async def roi_setting(self, roi, attr: str, value: Any) -> Any:
        lo, size = int(roi.min_x_rbv.value), int(roi.size_x_rbv.value)
        use, bgd = roi.use_rbv.value == NoYes.YES, int(roi.bgd_width_rbv.value)
        if attr == "min_x":
            lo = int(value)
            if lo >= self.bins:
                raise PutRejected(f"MinX must be below {self.bins}")
            size = min(int(roi.size_x.value), self.bins - lo)
            await roi.size_x_rbv.write(size)
        elif attr == "size_x":
            size = value = min(int(value), self.bins - lo)
        elif attr == "use":
            use = value == NoYes.YES
        elif attr == "bgd_width":
            bgd = int(value)
        self.controller.set_roi(roi.channel - 1, roi.index - 1, lo=lo, hi=lo + size, use=use, bgd=bgd)
        return value

    async def ts_num_points(self, ch, value: int) -> int:
        """One time-series length for all channels (they record the same frames)."""
        self.controller.set_ts_points(int(value))
        for other in self.channels:
            for pv in (other.ts_num_points, other.sca_ts_num_points):
                if pv.value != int(value):
                    await pv.write(int(value), verify_value=False)
        await self.controller.post_time_series()
        return value

    async def ts_acquire_mode(self, instance, value) -> Any:
        self.controller.set_ts_circular(TsMode(value) is TsMode.CIRCULAR)
        for ch in self.channels:
            if ch.sca_ts_acquire_mode is not instance:
                await ch.sca_ts_acquire_mode.write(value, verify_value=False)
        await self.controller.post_time_series()
        return value

    async def ts_control(self, ch, value) -> Any:
        self.controller.ts_control(TsAction(value))
        await self.controller.post_time_series()
        return value

    async def sca_ts_acquire(self, instance, value) -> Any:
        """C{n}SCA:TS:TSAcquire: 1 erases and starts (as TSControl Erase/Start), 0 stops."""
        start = value in (enums.TS_ACQUIRE[1], 1)
        self.controller.ts_control(TsAction.ERASE_START if start else TsAction.STOP)
        await self.controller.post_time_series()
        return enums.TS_ACQUIRE[self.controller.time_series.acquiring]

    async def time_series_read(self, instance, value) -> Any:
        await self.controller.post_time_series()
        return value if isinstance(value, int) else enums.TS_READ[0]

    async def reset_roi_stats(self, instance, value) -> str:
        for roi in instance.group.rois:
            for pv in roi.stats:
                if pv.value != 0.0:
                    await pv.write(0.0)
        return enums.RESET[0]

    async def reset_sca_sums(self, instance, value) -> str:
        ch = instance.group
        self.controller.reset_sca_sums(ch.number - 1)
        for k in range(NUM_SCAS):
            await getattr(ch, f"sca_sum{k}").write(0.0)
        return enums.RESET[0]

    async def sca_attr_name(self, instance, value) -> str:
        rbv = getattr(instance.group, instance.pvspec.attr + "_rbv")
        if value != rbv.value:
            raise PutRejected(f"attribute names are fixed here: {instance.pvname} is {rbv.value!r}")
        return value

    # ---- file writing ----------------------------------------------------------------
    async def file_setting(self, attr: str, value: Any) -> Any:
        files = self.files
        if attr == "compression":
            check_compression(value)
        if attr in ("file_path", "file_name", "file_template", "compression") and files.capturing:
            raise PutRejected(f"cannot change {attr} while capturing")
        if attr == "file_name":
            try:
                check_file_name(value)
            except PathRefused as ex:
                raise PutRejected(str(ex)) from None
        elif attr == "file_path":
            await self.check_file_path(value)
        elif attr == "enable_callbacks":
            files.enabled = value == DisableEnable.ENABLE
        elif attr == "num_capture":
            files.num_capture = int(value)
        elif attr == "array_counter":    # the writer's count goes on from here (readout)
            self.controller.publisher.set_file_counter(int(value))
        elif attr == "dropped_arrays":
            self.controller.publisher.set_file_dropped(int(value))
        return value

    async def check_start_file_path(self) -> None:
        """The default or restored FilePath, checked as a put of it would be. One outside
        --data-root (the default /tmp/, or a path saved before the root was set) is
        replaced by the data root itself, so that Capture works from the start."""
        path = self.hdf.file_path_rbv.value
        root = self.options.data_root
        for candidate in [path] + ([os.path.join(root, "")] if root is not None else []):
            if candidate != path:
                log.warning("HDF1:FilePath set to the data root %s", candidate)
                await self.hdf.file_path.write(candidate, verify_value=False)
                await self.hdf.file_path_rbv.write(candidate)
            try:
                await self.check_file_path(candidate)
                return
            except PutRejected as ex:
                log.warning("HDF1:FilePath %s: %s", candidate, ex)
        await self.hdf.file_path_exists.write(enums.NO_YES[0])

    async def check_file_path(self, path: str) -> None:
        """Refuse a FilePath outside the data root; FilePathExists_RBV: can a file be made there."""
        try:
            directory = resolve_directory(path, self.options.data_root)
        except PathRefused as ex:
            raise PutRejected(str(ex)) from None
        problem = await asyncio.to_thread(probe_writable, directory)
        if problem is not None:
            log.info("FilePath %s: %s", path, problem)
        await self.hdf.file_path_exists.write(enums.NO_YES[problem is None])

    def capture_target(self) -> CaptureTarget:
        hdf = self.hdf
        return CaptureTarget(
            directory=hdf.file_path_rbv.value, template=hdf.file_template_rbv.value,
            name=hdf.file_name_rbv.value, number=int(hdf.file_number_rbv.value),
            create_directory=int(hdf.create_directory_rbv.value) != 0,
            auto_increment=hdf.auto_increment_rbv.value == NoYes.YES,
            compression=hdf.compression_rbv.value)

    async def capture_put(self, instance, value) -> Any:
        if value in (enums.CAPTURE[1], 1):
            await self.controller.capture(self.capture_target())
        else:
            await self.controller.stop_capture()
        return enums.CAPTURE[0]

    # ---- periodic status ---------------------------------------------------------------
    async def heartbeat(self) -> None:
        await self.controller.heartbeat()


def build_ioc_class(options: IocOptions):
    """Make the root PVGroup class for this IOC's channel count and simulator use."""
    ns: dict = {"__doc__": "Xspress3 IOC", "__module__": __name__}
    ns["det"] = SubGroup(DetectorPVs, prefix="det1:", doc="Driver PVs.")
    ns["hdf"] = SubGroup(FilePVs, prefix="HDF1:", doc="HDF5 file writer PVs.")
    if options.simulated:
        ns["sim"] = SubGroup(SimPVs, prefix="SIM:", doc="Simulator controls.")
    for n in range(1, options.channels + 1):
        ns[f"ch{n}"] = SubGroup(channel_group(n, options.bins, options.ts_points), prefix="",
                                doc=f"Channel {n}.")

    uptime = pvproperty(name="det1:Uptime_RBV", value=0.0, read_only=True, units="s", precision=0,
                        doc="Seconds since the IOC started; updates twice a second (heartbeat).")

    @uptime.startup
    async def uptime(self, instance, async_lib):
        await self.startup(async_lib)

    @uptime.scan(period=0.5)
    async def uptime(self, instance, async_lib):
        await instance.write(time.time() - self._started)
        await self.heartbeat()

    ns["uptime"] = uptime
    return type("Xspress3IOC", (IocBase,), ns)
