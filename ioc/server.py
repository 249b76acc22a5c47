"""The IOC's root PVGroup and the acquisition state machine it owns.

Threads (see db_docs/adr/0001-architecture.md):
- the caproto event loop runs putters and PV updates only;
- one control worker thread (`self._control`) makes every SDK call that changes
  detector state, so putters await it instead of blocking the loop;
- the readout thread (`readout.Readout`) reads frames and reports back through
  `self._events`, which the loop drains in order (frame summaries, run ends);
- the stream sender and the file writer have their own threads (writers/).

One `ActiveRun` at a time is the whole state machine: Acquire=1 creates it, the
readout's `RunEnd` (after completion, abort or error) retires it; Acquire_RBV
goes 1 when it is created and 0 when it is retired, in that order.
"""
from __future__ import annotations

import asyncio
import concurrent.futures
import functools
import logging
import os
import time
from dataclasses import dataclass, field
from typing import Any, Optional

import numpy as np
from caproto.server import SubGroup, pvproperty

import xspress3
from xspress3.driver import FrameSource, ItfgTrigMode, Xspress3, Xspress3Error
from xspress3.writers.wire import SeriesStart, new_series_id, utc_now_iso

from . import enums
from .channel_logic import ChannelLogic
from .channel_pvs import channel_group
from .connection import ConnectionCommands
from .detector_pvs import DetectorPVs
from .file_pvs import FilePVs
from .filewriter import FileCapture
from .options import IocOptions
from .pvtypes import PutRejected, Xsp3Group, reason
from .readout import FrameSummary, Readout, RunEnd, RunPlan
from .rois import RoiTable
from .settings_store import SettingsStore
from .sim_pvs import SimPVs
from .streaming import StreamConsumer

log = logging.getLogger(__name__)

State = enums.State

# PV enum index -> (SDK frame source, ITFG trigger mode, starts at once)
TRIGGER_MODES = {
    "Software": (FrameSource.SOFTWARE, ItfgTrigMode.BURST, True),
    "Internal": (FrameSource.INTERNAL, ItfgTrigMode.BURST, True),
    "IDC": (FrameSource.IDC, ItfgTrigMode.BURST, False),
    "TTL Veto Only": (FrameSource.TTL_VETO_ONLY, ItfgTrigMode.BURST, False),
    "TTL Both": (FrameSource.TTL_BOTH, ItfgTrigMode.BURST, False),
    "LVDS Veto Only": (FrameSource.LVDS_VETO_ONLY, ItfgTrigMode.BURST, False),
    "LVDS Both": (FrameSource.LVDS_BOTH, ItfgTrigMode.BURST, False),
    "Software + Internal": (FrameSource.INTERNAL, ItfgTrigMode.SOFTWARE, True),
}
SOFTWARE_MODES = ("Software", "Software + Internal")

# caproto circuits batch subscription updates for up to 10 ms (HIGH_LOAD_TIMEOUT)
MONITOR_BATCH_S = 0.025

# det1 settings that cannot change while a run is active
FIXED_DURING_RUN = {"acquire_time", "num_images", "trigger_mode", "record_min_x", "record_size_x",
                    "circular_buffer", "ctrl_dtc", "invert_f0", "invert_veto", "debounce",
                    "run_flags", "num_channels"}


@dataclass
class ActiveRun:
    plan: RunPlan
    mode: str
    done: asyncio.Event = field(default_factory=asyncio.Event)
    stop_requested: bool = False
    ended: Optional[RunEnd] = None
    series_id: str = ""


class IocBase(ConnectionCommands, ChannelLogic, Xsp3Group):
    """Logic of the root group; `build_ioc_class` adds the subgroups.

    Connection commands and per-channel logic live in connection.py and
    channel_logic.py (mixins); acquisition, settings and status live here."""

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

    async def _post_frame(self, s: FrameSummary) -> None:
        run = self._run
        det = self.det
        if run is not None and s.run_id == run.plan.run_id:
            if run.mode not in ("Internal", "Software", "Software + Internal") and \
                    det.detector_state.value == State.WAITING and s.frames_acquired > 0:
                await det.detector_state.write(State.ACQUIRE)
        await det.array_counter_rbv.write(s.frame_number)
        await det.array_counter.write(s.frame_number, verify_value=False)
        await det.num_images_counter.write(s.frames_read)
        await det.frame_count.write(s.frames_acquired)
        await det.unique_id.write(s.frame_number)
        for i, ch in enumerate(self.channels[:s.spectra.shape[0]]):
            await asyncio.sleep(0)   # let a waiting caget in between channels
            await ch.spectrum.write(s.spectra[i])
            if s.sums is not None:
                await ch.spectrum_sum.write(s.sums[i])
            for k in range(11):
                await getattr(ch, f"sca{k}").write(float(s.sca[i, k]))
                if s.sca_sums is not None:
                    await getattr(ch, f"sca_sum{k}").write(float(s.sca_sums[i, k]))
            await ch.dt_factor.write(float(s.sca[i, 9]))
            await ch.dead_time.write(float(s.sca[i, 10]))
            for r, roi in enumerate(ch.rois):
                if self._rois.use[i, r]:
                    total, net, vmin, vmax, mean = s.rois[i, r]
                    await roi.total.write(float(total))
                    await roi.net.write(float(net))
                    await roi.min_value.write(float(vmin))
                    await roi.max_value.write(float(vmax))
                    await roi.mean_value.write(float(mean))
            if ch.ts_current_point.value != s.ts_point:
                await ch.ts_current_point.write(s.ts_point)
                await ch.sca_ts_current_point.write(s.ts_point)

    # ---- acquisition -------------------------------------------------------------------
    async def acquire_put(self, instance, value) -> str:
        if value in ("Acquire", 1):
            run = await self.start_run(instance)
            await run.done.wait()
            if run.ended is not None and run.ended.outcome == "error":
                raise PutRejected(run.ended.message)
            return "Done"
        await self.stop_run()
        return "Done"

    def _plan(self, run_id: int) -> tuple[RunPlan, str]:
        det, d = self.det, self._need_driver()
        mode = det.trigger_mode_rbv.value
        frames = int(det.num_images_rbv.value)
        circular = frames > d.frames_memory
        if circular and det.circular_buffer_rbv.value != "Yes":
            raise PutRejected(f"NumImages {frames} exceeds frame memory {d.frames_memory} "
                              "and CircularBuffer is No")
        channels = int(det.num_channels_rbv.value)
        first_bin, size = self._record_range()
        widths = np.array([float(ch.event_width_rbv.value) for ch in self.channels[:channels]])
        plan = RunPlan(run_id=run_id, num_frames=frames, channels=channels, first_bin=first_bin,
                       num_bins=size, full_bins=self.bins, circular=circular,
                       memory=d.frames_memory, event_width=widths,
                       dtc=det.ctrl_dtc_rbv.value == "Enabled", ts_points=self.options.ts_points,
                       first_frame_number=0)
        return plan, mode

    def _arm(self, plan: RunPlan, mode: str, exposure: float, invert_f0: bool,
             invert_veto: bool, debounce: int) -> None:
        """Control-worker side of Acquire=1 (the areaDetector call sequence)."""
        d = self.driver
        source, trig_mode, starts = TRIGGER_MODES[mode]
        d.stop()
        d.clear(0, min(plan.num_frames, d.frames_memory))
        d.set_run_flags(plan.circular)
        d.set_timing(source, invert_f0=invert_f0, invert_veto=invert_veto, debounce=debounce)
        d.setup_itfg(plan.num_frames, exposure, trig_mode)
        if starts:
            d.start()
        else:
            d.arm()

    async def start_run(self, instance) -> ActiveRun:
        if self._run is not None:
            raise PutRejected("acquisition already running; set Acquire to 0 first")
        det = self.det
        self._run_counter += 1
        plan, mode = self._plan(self._run_counter)
        run = self._run = ActiveRun(plan=plan, mode=mode)
        starts = TRIGGER_MODES[mode][2]
        try:
            if det.erase_on_start.value == "Yes":
                # the time series follows TSControl (see _start_time_series), not EraseOnStart
                self.readout.erase(len(self.channels), self.bins, time_series=False)
                await self._zero_counters()
            await det.array_counter.write(0, verify_value=False)
            await det.array_counter_rbv.write(0)
            await det.num_images_counter.write(0)
            await det.frame_count.write(0)
            await det.frames_lost.write(0)
            await instance.write("Acquire", verify_value=False)
            await det.acquire_rbv.write("Acquiring")
            await self.status("Acquiring Data", State.ACQUIRE if starts else State.WAITING)
            self._start_time_series()
            await self._post_array_size(plan.num_bins, plan.channels)
            run.series_id = new_series_id()
            start = self._series_start(run)
            if self.stream is not None:
                await asyncio.to_thread(self.stream.begin_series, start)
            if self.monitor is not None:
                self.monitor.set_series(start)
            await self.files.begin_run(start)
            self._frames_used = max(self._frames_used, min(plan.num_frames, self.driver.frames_memory))
            await self.call(self._arm, plan, mode, float(det.acquire_time_rbv.value),
                            bool(det.invert_f0_rbv.value), bool(det.invert_veto_rbv.value),
                            int(det.debounce_rbv.value))
        except Exception as ex:
            message = reason(ex)
            log.error("acquisition did not start: %s", message)
            self._run = None
            await self._stop_quietly()
            if self.stream is not None:
                await asyncio.to_thread(self.stream.end_series, State.ERROR)
            await self.files.end_run(State.ERROR)
            await self.status(message, State.ERROR if isinstance(ex, Xspress3Error) else State.IDLE)
            await det.acquire_rbv.write("Done")
            await instance.write("Done", verify_value=False)
            raise PutRejected(message) from ex
        self.readout.begin(self.driver, plan)
        if run.stop_requested:
            self.readout.request_stop()
        return run

    async def _stop_quietly(self) -> None:
        if self.driver is None:
            return
        try:
            await self.call(self.driver.stop)
        except Xspress3Error as ex:
            log.warning("stop after a failed start also failed: %s", ex)

    async def stop_run(self) -> None:
        run = self._run
        if run is None:
            return
        run.stop_requested = True
        # tell the readout first, so a detector that goes idle is read as a stop, not a fault
        self.readout.request_stop()
        await self.det.detector_state.write(State.ABORTING)
        try:
            await self.call(self.driver.stop)
        except Xspress3Error as ex:
            log.error("stop failed: %s", ex)
            await self.status(f"stop failed: {ex}", State.ERROR)
        try:
            await asyncio.wait_for(asyncio.shield(run.done.wait()), 10.0)
        except asyncio.TimeoutError:
            log.error("readout did not finish within 10 s of the stop")

    async def _finish_run(self, end: RunEnd) -> None:
        run = self._run
        if run is None or end.run_id != run.plan.run_id:
            log.warning("end of an unknown run %s ignored", end.run_id)
            return
        det = self.det
        if end.outcome != "completed" or run.stop_requested:
            await self._stop_quietly()
        if end.outcome == "error":
            state, message = State.ERROR, end.message
        elif run.stop_requested or end.outcome == "aborted":
            state, message = State.ABORTED, "Stopped Acquiring"
        else:
            state, message = State.IDLE, "Completed Acquisition"
        if end.lost:
            detail = "; ".join(f"{k}: {v} frames" for k, v in end.lost.items())
            message = f"{message} ({detail})"
        if self.stream is not None:
            await asyncio.to_thread(self.stream.end_series, state)   # sends the end message
            await self._post_stream_stats()
        await self.files.end_run(state)
        self._stop_time_series()
        await self._post_time_series()
        await det.num_images_counter.write(end.frames_read)
        await det.frames_lost.write(end.lost.get("detector overrun", 0))
        await self.status(message, state)
        run.ended = end
        self._run = None
        await det.acquire_rbv.write("Done")
        await det.acquire.write("Done", verify_value=False)
        log.info("run %d %s: %d frames (%s)", end.run_id, end.outcome, end.frames_read, message)
        await self._flush_monitors()
        run.done.set()

    async def _flush_monitors(self) -> None:
        """Let the final updates of a run reach subscribers before the Acquire put
        completes, as in an EPICS IOC: a client reading its monitored values right
        after `caput -c` must see the end state, not the one before."""
        ctx = self.ca_context
        if ctx is None:
            return
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 0.5
        while not ctx.subscription_queue.empty() and loop.time() < deadline:
            await asyncio.sleep(0.001)
        await asyncio.sleep(MONITOR_BATCH_S)

    def _series_start(self, run: ActiveRun) -> SeriesStart:
        plan, det, d = run.plan, self.det, self.driver
        return SeriesStart(
            series_id=run.series_id, channels=plan.channels, bins=plan.num_bins,
            first_bin=plan.first_bin, full_bins=plan.full_bins, ev_per_bin=10.0 * 4096 / plan.full_bins,
            exposure_s=float(det.acquire_time_rbv.value), trigger_mode=run.mode,
            frames_expected=plan.num_frames, dtc_applied=plan.dtc,
            detector={"model": det.model.value, "driver_version": det.driver_version.value,
                      "simulated": bool(d.simulated), "library": d.library_path,
                      "frames_memory": d.frames_memory},
            scaler_names=["TIME", "RESET_TICKS", "RESET_COUNT", "ALL_EVENT", "ALL_GOOD",
                          "IN_WINDOW0", "IN_WINDOW1", "PILEUP", "TOTAL_TICKS"],
            event_width=[float(w) for w in plan.event_width], start_time=utc_now_iso())

    async def _post_stream_stats(self) -> None:
        if self.stream is None:
            return
        stats = self.stream.stats()
        det = self.det
        await det.stream_receivers.write(stats["receivers"])
        await det.stream_frames_sent.write(stats["frames_sent"])
        await det.stream_frames_lost.write(stats["frames_lost"])
        await det.stream_lost_reason.write(stats["lost_reason"][:255])

    async def soft_trigger_put(self, instance, value):
        if value in (0, "Idle", "Do Nothing"):
            return value
        run = self._run
        if run is None or run.mode not in SOFTWARE_MODES:
            raise PutRejected("SoftTrigger needs a running acquisition in a Software trigger mode")
        await self.call(self.driver.continue_)
        return 0

    async def _zero_counters(self) -> None:
        for ch in self.channels:
            await ch.spectrum_sum.write([0.0] * self.bins)
            for k in range(11):
                await getattr(ch, f"sca{k}").write(0.0)
                await getattr(ch, f"sca_sum{k}").write(0.0)
            await ch.dt_factor.write(1.0)
            await ch.dead_time.write(0.0)
            for roi in ch.rois:
                for pv in (roi.total, roi.net, roi.min_value, roi.max_value, roi.mean_value):
                    if pv.value != 0.0:
                        await pv.write(0.0)

    async def erase(self) -> None:
        if self._run is not None:
            raise PutRejected("cannot erase while acquiring")
        if self.driver is not None and self._frames_used:
            await self.call(self.driver.clear, 0, self._frames_used)
        self.readout.erase(len(self.channels), self.bins)
        await self._zero_counters()
        for ch in self.channels:
            await ch.spectrum.write([0.0] * self.bins)
        await self._post_time_series()
        await self.det.array_counter.write(0, verify_value=False)
        await self.det.array_counter_rbv.write(0)
        await self.status("Erased Data")

    async def update_arrays(self) -> None:
        await self._post_time_series()

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
