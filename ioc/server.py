"""The IOC's root PVGroup: state, threads, startup/shutdown, settings; the run
state machine is the Acquisition mixin (acquisition.py).

Threads (see db_docs/adr/0001-architecture.md):
- the caproto event loop runs putters and PV updates only;
- one control worker thread (`self._control`) makes every SDK call that changes
  detector state, so putters await it instead of blocking the loop;
- the readout thread (`readout.Readout`) reads frames and reports back through
  `self._events`, which the loop drains in order (frame summaries, run ends);
- the stream sender and the file writer have their own threads (writers/).
"""
from __future__ import annotations

import asyncio
import concurrent.futures
import functools
import logging
import os
import time
from typing import Any, Optional

from caproto.server import SubGroup, pvproperty

import xspress3
from xspress3.driver import Xspress3, Xspress3Error

from . import enums
from .acquisition import Acquisition, ActiveRun
from .channel_logic import ChannelLogic
from .channel_pvs import channel_group
from .connection import ConnectionCommands
from .detector_pvs import DetectorPVs
from .file_pvs import FilePVs
from .filewriter import FileCapture
from .options import IocOptions
from .pvtypes import PutRejected, Xsp3Group, reason
from .readout import FrameSummary, Readout, RunEnd
from .rois import RoiTable
from .settings_store import SettingsStore
from .sim_pvs import SimPVs
from .streaming import StreamConsumer

log = logging.getLogger(__name__)

State = enums.State

# det1 settings that cannot change while a run is active
FIXED_DURING_RUN = {"acquire_time", "num_images", "trigger_mode", "record_min_x", "record_size_x",
                    "circular_buffer", "ctrl_dtc", "invert_f0", "invert_veto", "debounce",
                    "run_flags", "num_channels"}


class IocBase(Acquisition, ConnectionCommands, ChannelLogic, Xsp3Group):
    """Logic of the root group; `build_ioc_class` adds the subgroups.

    The run state machine, connection commands and per-channel logic live in
    acquisition.py, connection.py and channel_logic.py (mixins); threads,
    startup, settings and status live here."""

    def __init__(self, *args, options: IocOptions, driver: Optional[Xspress3] = None,
                 driver_error: str = "", **kwargs):
        super().__init__(*args, **kwargs)
        self.options = options
        self.driver = driver
        self.driver_error = driver_error
        self.channels = [getattr(self, f"ch{n}") for n in range(1, options.channels + 1)]
        self.bins = options.bins
        self._control = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="xsp3-control")
        self._events: Optional[asyncio.Queue] = None
        self._loop: Optional[asyncio.AbstractEventLoop] = None
        self._run: Optional[ActiveRun] = None
        self._run_counter = 0
        self._frames_used = 0
        self._rois = RoiTable.empty(options.channels, self.bins)
        self.readout = Readout(self._post_from_thread, ts_points=options.ts_points)
        self.readout.rois = self._rois
        self.stream = StreamConsumer(options) if options.stream else None
        self.files = FileCapture(self, options)
        self.readout.consumers = [c for c in (self.stream, self.files) if c is not None]
        self.monitor = None
        self.settings = SettingsStore(options.settings_file, self)
        self.ca_context = None          # the caproto server Context, set by main.serve
        self._started = time.time()

    # ---- helpers ---------------------------------------------------------------------
    async def call(self, fn, *args, **kwargs):
        """Run a blocking SDK call on the control worker; the loop stays free."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._control, functools.partial(fn, *args, **kwargs))

    def _post_from_thread(self, item) -> None:
        if self._loop is not None and self._events is not None:
            self._loop.call_soon_threadsafe(self._events.put_nowait, item)

    async def status(self, message: str, state: Optional[str] = None) -> None:
        await self.det.status_message.write(message[:255])
        if state is not None:
            await self.det.detector_state.write(state)

    async def put_rejected(self, pv, exc: Exception) -> None:
        text = f"{pv.pvname.removeprefix(self.prefix)} rejected: {reason(exc)}"
        log.warning("%s", text)
        await self.det.status_message.write(text[:255])

    async def _sdk(self, fn, *args):
        try:
            return await self.call(fn, *args)
        except Xspress3Error as ex:
            await self.status(str(ex))
            raise PutRejected(str(ex)) from ex

    def _need_driver(self) -> Xspress3:
        if self.driver is None:
            raise PutRejected("detector not connected (use det1:CONNECT)")
        return self.driver

    # ---- startup -----------------------------------------------------------------------
    async def startup(self, async_lib) -> None:
        self._loop = asyncio.get_running_loop()
        self._events = asyncio.Queue()
        self.readout.update_period = 1.0 / float(self.det.update_rate.value)
        self.readout.start()
        self.files.start()
        if self.stream is not None:
            self.stream.start()
            await self.det.stream_endpoint.write(self.stream.endpoint)
        if self.options.monitor:
            from xspress3.writers.monitor import MonitorServer
            self.monitor = MonitorServer(self.options.monitor)
            self.monitor.start()
            self.readout.monitor = self.monitor
            await self.det.monitor_endpoint.write(self.options.monitor)
        await self._describe_detector()
        await self.settings.restore()
        self.readout.erase(len(self.channels), self.bins)
        asyncio.create_task(self._drain_events())
        if self.driver is not None:
            await self.status("Idle", State.IDLE)
        else:
            await self.status(f"Not connected: {self.driver_error}"[:255], State.DISCONNECTED)

    async def _describe_detector(self) -> None:
        d, det = self.driver, self.det
        simulated = d.simulated if d is not None else self.options.library is None
        await det.manufacturer.write("Quantum Detectors")
        await det.model.write("Xspress3 (simulated)" if simulated else "Xspress3")
        await det.simulation.write("Yes" if simulated else "No")
        await det.driver_version.write(f"xspress3-ioc {xspress3.__version__}")
        await det.adcore_version.write("3.12.1")
        await det.serial_number.write(self.options.address)
        await det.port_name.write("XSP3")
        await det.connected.write("Connected" if d is not None else "Disconnected")
        if d is not None:
            await det.sdk_version.write(os.path.basename(d.library_path)[:39])
            await det.firmware_version.write(f"generation {d.generation()}")
            await det.max_num_channels.write(d.num_channels)
            await det.num_cards.write(d.num_cards)
            await det.max_frames.write(d.frames_memory)
            await det.num_frames_config_rbv.write(d.frames_memory)
            circular_ok = det.circular_buffer.value == "Yes"
            await det.max_frames_driver.write(2**31 - 1 if circular_ok else d.frames_memory)
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
        await self._post_array_size(self._record_range()[1], channels)

    async def _post_array_size(self, bins: int, channels: int) -> None:
        """Shape of the arrays the IOC produces (ophyd's plugins check it before staging)."""
        det, hdf = self.det, self.hdf
        for pv, value in ((det.array_size_x, bins), (det.array_size0, bins),
                          (det.array_size_y, channels), (det.array_size1, channels),
                          (hdf.array_size0, bins), (hdf.array_size1, channels)):
            await pv.write(value)

    async def shutdown_ioc(self) -> None:
        """Stops the hardware, the threads, the files and the sockets (SIGTERM / Ctrl-C)."""
        if self._run is not None:
            try:
                await asyncio.wait_for(self.stop_run(), 10)
            except asyncio.TimeoutError:
                log.error("run did not stop within 10 s at shutdown")
        self.readout.shutdown()
        await asyncio.to_thread(self.files.close_now, "IOC shut down")
        if self.stream is not None:
            await asyncio.to_thread(self.stream.close)
        if self.monitor is not None:
            await asyncio.to_thread(self.monitor.close)
        await asyncio.to_thread(self.settings.flush)
        if self.driver is not None:
            await self.call(self.driver.close)
        self._control.shutdown(wait=True)

    # ---- event drain (runs on the loop) ------------------------------------------------
    async def _drain_events(self) -> None:
        while True:
            item = await self._events.get()
            try:
                if isinstance(item, FrameSummary):
                    await self._post_frame(item)
                elif isinstance(item, RunEnd):
                    await self._finish_run(item)
                elif callable(item):
                    await item()
            except Exception:
                log.exception("failed to process %s", type(item).__name__)

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
        det = self.det
        if attr in FIXED_DURING_RUN and self._run is not None:
            raise PutRejected(f"cannot change {attr} while acquiring")
        if attr == "num_images":
            memory = self.driver.frames_memory if self.driver else self.options.frames_memory
            if value > memory and det.circular_buffer_rbv.value != "Yes":
                raise PutRejected(f"NumImages {value} exceeds frame memory {memory} "
                                  "(set CircularBuffer to Yes for longer runs)")
            await self.hdf.num_capture.write(value, verify_value=False)
            await self.hdf.num_capture_rbv.write(value)
        elif attr == "circular_buffer":
            memory = self.driver.frames_memory if self.driver else self.options.frames_memory
            if value == "No" and int(det.num_images_rbv.value) > memory:
                raise PutRejected(f"NumImages is above frame memory {memory}; lower it first")
            await det.max_frames_driver.write(2**31 - 1 if value == "Yes" else memory)
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
            await det.data_type_rbv.write("Float64" if value == "Enable" else "UInt32")
            await self.hdf.data_type_rbv.write("Float64" if value == "Enable" else "UInt32")
            return "Enabled" if value == "Enable" else "Disabled"
        elif attr == "data_type":
            return det.data_type_rbv.value
        elif attr == "color_mode":
            return "Mono"
        elif attr == "num_channels":
            limit = self.driver.num_channels if self.driver else len(self.channels)
            limit = min(limit, len(self.channels))
            if value > limit:
                raise PutRejected(f"NUM_CHANNELS must be 1..{limit}")
        elif attr == "update_rate":
            self.readout.update_period = 1.0 / float(value)
        elif attr == "array_counter":
            await det.array_counter_rbv.write(value)
        return value

    # ---- file writing ----------------------------------------------------------------
    async def file_setting(self, attr: str, value: Any) -> Any:
        return await self.files.setting(attr, value)

    async def capture_put(self, instance, value) -> Any:
        return await self.files.capture_put(instance, value)

    # ---- periodic status ---------------------------------------------------------------
    async def heartbeat(self) -> None:
        await self._post_stream_stats()
        await self.files.post_status()


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
