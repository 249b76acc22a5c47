"""The run controller: run, series, capture, ROI and time-series state, without Channel Access.

`RunController` holds the driver, the control worker, the readout thread and the
data consumers, and runs the acquisition state machine. It imports no caproto:
everything it has to show goes through the `Publisher` it is given (the IOC's
adapter writes PVs; tests pass a recording fake), and everything it needs from
the PVs comes in as typed arguments (`RunSettings`, ROI limits, ...).

One `ActiveRun` at a time is the whole state machine: `acquire` creates it
(plan, erase, arm, start, readout begins), the readout's `RunEnd` (after
completion, abort or error) retires it (`_finish_run`); ACQUIRING is published
True when it is created and False when it is retired, in that order.

Threads (see db_docs/adr/0001-architecture.md): the controller's coroutines run
on the event loop; blocking SDK calls go to one control worker (`call`); the
readout thread reports frame summaries and run ends through `post_from_thread`,
which `_drain_events` takes on the loop, in order.
"""
from __future__ import annotations

import asyncio
import concurrent.futures
import functools
import logging
from dataclasses import dataclass, field
from typing import Callable, Optional, Sequence

import numpy as np

import xspress3
from xspress3.driver import FrameSource, ItfgTrigMode, Xspress3, Xspress3Error, sim_controls
from xspress3.vocabulary import (EV_PER_BIN_AT_4096, DEFAULT_BINS, INT32_MAX,
                                 SCALER_NAMES, TriggerMode)
from xspress3.writers.consumer import SeriesConsumer
from xspress3.writers.monitor import MonitorServer
from xspress3.writers.stream_keys import server_keys
from xspress3.writers.wire import SeriesStart, new_series_id, utc_now_iso

from .enums import State
from .options import IocOptions
from .readout import FrameSummary, Outcome, Readout, RunEnd, RunPlan, TimeSeries
from .rois import RoiTable
from .publisher import Out, Publisher, Rejected, TimeSeriesView
from .filewriter import CaptureTarget, FileCapture
from .streaming import StreamStats, make_sender, stream_stats

log = logging.getLogger(__name__)

#: Trigger mode -> (SDK frame source, ITFG trigger mode): the areaDetector driver's mapping.
SDK_TRIGGER = {
    TriggerMode.SOFTWARE: (FrameSource.SOFTWARE, ItfgTrigMode.BURST),
    TriggerMode.INTERNAL: (FrameSource.INTERNAL, ItfgTrigMode.BURST),
    TriggerMode.IDC: (FrameSource.IDC, ItfgTrigMode.BURST),
    TriggerMode.TTL_VETO_ONLY: (FrameSource.TTL_VETO_ONLY, ItfgTrigMode.BURST),
    TriggerMode.TTL_BOTH: (FrameSource.TTL_BOTH, ItfgTrigMode.BURST),
    TriggerMode.LVDS_VETO_ONLY: (FrameSource.LVDS_VETO_ONLY, ItfgTrigMode.BURST),
    TriggerMode.LVDS_BOTH: (FrameSource.LVDS_BOTH, ItfgTrigMode.BURST),
    TriggerMode.SOFTWARE_INTERNAL: (FrameSource.INTERNAL, ItfgTrigMode.SOFTWARE),
}

#: Longest a stop waits for the readout to finish the run.
STOP_TIMEOUT_S = 10.0


@dataclass(frozen=True)
class RunSettings:
    """The settings a run is planned from (the det1 and channel readbacks)."""

    trigger_mode: TriggerMode
    num_images: int
    circular_allowed: bool
    channels: int
    first_bin: int
    num_bins: int
    event_width: tuple
    dtc: bool
    exposure: float
    invert_f0: bool = False
    invert_veto: bool = False
    debounce: int = 0
    erase_on_start: bool = True


@dataclass(frozen=True)
class ChannelSdkSettings:
    """A channel's SDK-held settings: good-event threshold and the two windows."""

    threshold: int
    windows: tuple   # ((low, high), (low, high))


@dataclass
class ActiveRun:
    plan: RunPlan
    settings: RunSettings
    start: Optional[SeriesStart] = None
    done: asyncio.Event = field(default_factory=asyncio.Event)
    armed: asyncio.Event = field(default_factory=asyncio.Event)   # the detector is running
    stop_requested: bool = False
    ended: Optional[RunEnd] = None


def detector_model(driver: Optional[Xspress3], simulated_default: bool) -> str:
    simulated = driver.simulated if driver is not None else simulated_default
    return "Xspress3 (simulated)" if simulated else "Xspress3"


DRIVER_VERSION = f"xspress3-ioc {xspress3.__version__}"


class RunController:
    """Run, series, capture, ROI and time-series state of the IOC (module docstring)."""

    def __init__(self, options: IocOptions, publisher: Publisher,
                 driver: Optional[Xspress3] = None, driver_error: str = "",
                 channels: Optional[int] = None):
        self.options = options
        self.publisher = publisher
        self.driver = driver
        self.driver_error = driver_error
        self.channels = channels or options.channels
        self.bins = options.bins
        self._control = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="xsp3-control")
        self._events: Optional[asyncio.Queue] = None
        self._loop: Optional[asyncio.AbstractEventLoop] = None
        self._drain_task: Optional[asyncio.Task] = None
        self.run: Optional[ActiveRun] = None
        self._run_counter = 0
        self._frames_used = 0
        self._state = State.IDLE
        self.readout = Readout(self.post_from_thread, ts_points=options.ts_points)
        self.readout.rois = RoiTable.empty(self.channels, self.bins)
        keys = server_keys(options.stream_keys)   # --stream-keys: CURVE on both sockets
        self.stream = make_sender(options, keys) if options.stream else None
        self.files = FileCapture(options, publisher, self.post_from_thread)
        self.monitor = MonitorServer(options.monitor, keys=keys) if options.monitor else None
        #: Every consumer of a series, in the order they get each block
        self.consumers: list[SeriesConsumer] = [
            c for c in (self.monitor, self.stream, self.files) if c is not None]

    # ---- plumbing ----------------------------------------------------------------------
    async def call(self, fn: Callable, *args, **kwargs):
        """Run a blocking SDK call on the control worker; the loop stays free."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._control, functools.partial(fn, *args, **kwargs))

    async def sdk(self, fn: Callable, *args):
        """An SDK call whose failure is shown as the status and refuses the request."""
        try:
            return await self.call(fn, *args)
        except Xspress3Error as ex:
            await self.status(str(ex))
            raise Rejected(str(ex)) from ex

    def post_from_thread(self, item) -> None:
        """Any thread: queue a FrameSummary, a RunEnd or a coroutine function for the loop."""
        if self._loop is not None and self._events is not None:
            self._loop.call_soon_threadsafe(self._events.put_nowait, item)

    async def status(self, message: str, state: Optional[str] = None) -> None:
        if state is not None:
            self._state = state
        await self.publisher.status(message, state)

    async def _set_state(self, state: str) -> None:
        self._state = state
        await self.publisher.publish(Out.DETECTOR_STATE, state)

    def need_driver(self) -> Xspress3:
        if self.driver is None:
            raise Rejected("detector not connected (use det1:CONNECT)")
        return self.driver

    @property
    def running(self) -> bool:
        return self.run is not None

    @property
    def frames_memory(self) -> int:
        return self.driver.frames_memory if self.driver is not None else self.options.frames_memory

    def max_frames(self, circular_allowed: bool) -> int:
        """Longest run: unlimited (INT32_MAX) with the circular buffer, else frame memory."""
        return INT32_MAX if circular_allowed else self.frames_memory

    # ---- lifecycle ---------------------------------------------------------------------
    async def start(self, update_period: float) -> None:
        """On the loop: start the threads and the event drain."""
        self._loop = asyncio.get_running_loop()
        self._events = asyncio.Queue()
        self.readout.update_period = update_period
        self.readout.start()
        self.files.start()
        if self.stream is not None:
            self.stream.start()
            if self.stream.shared_pool is not None:   # blocks a receiver here maps, not copies
                self.readout.buffers.allocate = self.stream.shared_pool.arrays
        if self.monitor is not None:
            self.monitor.start()
        self.readout.consumers = self.consumers
        self.readout.erase(self.channels, self.bins)
        self._drain_task = asyncio.create_task(self._drain_events())

    async def shutdown(self) -> None:
        """Stops the hardware, the threads, the files and the sockets."""
        if self.run is not None:
            try:
                await asyncio.wait_for(self.stop(), STOP_TIMEOUT_S)
            except asyncio.TimeoutError:
                log.error("run did not stop within %g s at shutdown", STOP_TIMEOUT_S)
        self.readout.shutdown()
        await asyncio.to_thread(self.files.close_now, "IOC shut down")
        if self.stream is not None:
            await asyncio.to_thread(self.stream.close)
        if self.monitor is not None:
            await asyncio.to_thread(self.monitor.close)
        if self.driver is not None:
            await self.call(self.driver.close)
        self._control.shutdown(wait=True)
        if self._drain_task is not None:
            self._drain_task.cancel()

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

    # ---- connection --------------------------------------------------------------------
    async def connect(self, channel_settings: Sequence[ChannelSdkSettings]) -> None:
        """(Re)open the detector and give it the channel settings held in the IOC."""
        if self.run is not None:
            raise Rejected("cannot reconnect while acquiring")
        if self.driver is not None:
            await self.call(self.driver.close)
            self.driver = None
        await self.status("Connecting", State.INITIALIZING)
        try:
            self.driver = await self.call(self.options.open_driver)
        except Xspress3Error as ex:
            self.driver_error = str(ex)
            await self.publisher.publish(Out.CONNECTED, False)
            await self.status(f"connect failed: {ex}", State.DISCONNECTED)
            raise Rejected(str(ex)) from ex
        await self.publisher.detector_changed(self.driver)
        await self._apply_channel_settings(channel_settings)
        await self.status("Connected", State.IDLE)

    async def disconnect(self) -> None:
        if self.run is not None:
            await self.stop()
        if self.driver is not None:
            await self.call(self.driver.close)
            self.driver = None
        await self.publisher.publish(Out.CONNECTED, False)
        await self.status("Disconnected", State.DISCONNECTED)

    async def reset(self, channel_settings: Sequence[ChannelSdkSettings]) -> None:
        if self.run is not None:
            await self.stop()
        if self.driver is None:
            await self.connect(channel_settings)
            return
        try:
            await self.call(self.driver.stop)
        except Xspress3Error as ex:
            await self.status(f"reset failed: {ex}; try CONNECT", State.ERROR)
            raise Rejected(str(ex)) from ex
        await self.status("Idle", State.IDLE)

    async def _apply_channel_settings(self, settings: Sequence[ChannelSdkSettings]) -> None:
        d = self.driver
        for i, s in enumerate(settings[:d.num_channels]):
            try:
                await self.call(d.set_good_threshold, i, int(s.threshold))
                for w, (low, high) in enumerate(s.windows):
                    await self.call(d.set_window, i, w, int(low), int(high))
            except Xspress3Error as ex:
                log.warning("channel %d settings not applied: %s", i + 1, ex)

    async def save_sdk_settings(self, directory: str) -> None:
        await self.sdk(self.need_driver().save_settings, directory)
        await self.status(f"Settings saved to {directory}")

    async def restore_sdk_settings(self, directory: str) -> list[ChannelSdkSettings]:
        """Load the SDK's settings; returns what the channels now hold (for the readbacks)."""
        d = self.need_driver()
        await self.sdk(d.restore_settings, directory)
        out = []
        for i in range(min(self.channels, d.num_channels)):
            threshold = await self.call(d.get_good_threshold, i)
            windows = tuple([await self.call(d.get_window, i, w) for w in (0, 1)])
            out.append(ChannelSdkSettings(threshold, windows))
        return out

    async def set_threshold(self, channel: int, value: int) -> int:
        """Returns what the SDK holds now (the value as accepted)."""
        if self.driver is None:
            return value
        await self.sdk(self.driver.set_good_threshold, channel, int(value))
        return await self.sdk(self.driver.get_good_threshold, channel)

    async def set_window(self, channel: int, window: int, low: int, high: int) -> tuple[int, int]:
        """Returns the (low, high) the SDK holds now."""
        if low > high:
            raise Rejected(f"window {window + 1}: low limit {low} above high limit {high}")
        if self.driver is None:
            return low, high
        await self.sdk(self.driver.set_window, channel, window, low, high)
        return await self.sdk(self.driver.get_window, channel, window)

    async def sim_call(self, name: str, *args):
        if name in ("inject_fault", "clear_faults"):
            # library-wide: works while disconnected too (e.g. to fault the next connect)
            target = sim_controls(self.options.library)
        else:
            target = self.need_driver().sim
        if target is None:
            raise Rejected("the loaded library is not the simulator")
        try:
            return await self.call(getattr(target, name), *args)
        except Xspress3Error as ex:
            raise Rejected(str(ex)) from ex

    # ---- acquisition -------------------------------------------------------------------
    async def acquire(self, settings: RunSettings) -> RunEnd:
        """Acquire=1: start a run and wait for its end; an error end is refused."""
        run = await self.start_run(settings)
        await run.done.wait()
        if run.ended is not None and run.ended.outcome is Outcome.ERROR:
            raise Rejected(run.ended.message)
        return run.ended

    def _plan(self, run_id: int, s: RunSettings) -> RunPlan:
        d = self.need_driver()
        circular = s.num_images > d.frames_memory
        if circular and not s.circular_allowed:
            raise Rejected(f"NumImages {s.num_images} exceeds frame memory {d.frames_memory} "
                           "and CircularBuffer is No")
        return RunPlan(run_id=run_id, num_frames=s.num_images, channels=s.channels,
                       first_bin=s.first_bin, num_bins=s.num_bins, full_bins=self.bins,
                       circular=circular, memory=d.frames_memory,
                       event_width=np.array(s.event_width[:s.channels], dtype=float),
                       dtc=s.dtc, ts_points=self.options.ts_points, first_frame_number=0)

    def _arm(self, plan: RunPlan, s: RunSettings) -> None:
        """Control-worker side of Acquire=1 (the areaDetector call sequence)."""
        d = self.driver
        source, trig_mode = SDK_TRIGGER[s.trigger_mode]
        d.stop()
        d.clear(0, min(plan.num_frames, d.frames_memory))
        d.set_run_flags(plan.circular)
        d.set_timing(source, invert_f0=s.invert_f0, invert_veto=s.invert_veto, debounce=s.debounce)
        d.setup_itfg(plan.num_frames, s.exposure, trig_mode)
        if s.trigger_mode.starts_at_once:
            d.start()
        else:
            d.arm()

    def series_start(self, run: ActiveRun) -> SeriesStart:
        """The description of a run's series, handed to every consumer."""
        plan, s, d = run.plan, run.settings, self.driver
        return SeriesStart(
            series_id=new_series_id(), channels=plan.channels, bins=plan.num_bins,
            first_bin=plan.first_bin, full_bins=plan.full_bins,
            ev_per_bin=EV_PER_BIN_AT_4096 * DEFAULT_BINS / plan.full_bins,
            exposure_s=s.exposure, trigger_mode=s.trigger_mode.value,
            frames_expected=plan.num_frames, dtc_applied=plan.dtc,
            detector={"model": detector_model(d, self.options.simulated),
                      "driver_version": DRIVER_VERSION,
                      "simulated": bool(d.simulated), "library": d.library_path,
                      "frames_memory": d.frames_memory},
            scaler_names=list(SCALER_NAMES),
            event_width=[float(w) for w in plan.event_width], start_time=utc_now_iso())

    async def start_run(self, settings: RunSettings) -> ActiveRun:
        if self.run is not None:
            raise Rejected("acquisition already running; set Acquire to 0 first")
        self._run_counter += 1
        plan = self._plan(self._run_counter, settings)
        run = self.run = ActiveRun(plan=plan, settings=settings)
        pub = self.publisher
        begun: list[SeriesConsumer] = []
        try:
            if settings.erase_on_start:
                # the time series follows TSControl (see TimeSeries.run_started), not EraseOnStart
                self.readout.erase(self.channels, self.bins, time_series=False)
                await pub.zero_counters(spectra=False)
            await pub.publish(Out.ARRAY_COUNTER, 0)
            await pub.publish(Out.NUM_IMAGES_COUNTER, 0)
            await pub.publish(Out.FRAME_COUNT, 0)
            await pub.publish(Out.FRAMES_LOST, 0)
            await pub.publish(Out.ACQUIRING, True)
            await self.status("Acquiring Data",
                              State.ACQUIRE if settings.trigger_mode.starts_at_once else State.WAITING)
            with self.readout.lock:
                self.readout.ts.run_started()
            await pub.publish(Out.ARRAY_SIZE, (plan.num_bins, plan.channels))
            start = run.start = self.series_start(run)
            await asyncio.to_thread(self._begin_series, start, begun)
            self._frames_used = max(self._frames_used, min(plan.num_frames, self.driver.frames_memory))
            await asyncio.to_thread(self.readout.prepare, plan.channels, plan.num_bins)
            if run.stop_requested:
                # Acquire=0 came while the run was being set up and its stop call has
                # run already: arming now would leave the detector running unstopped
                armed = False
            else:
                armed = True
                await self.call(self._arm, plan, settings)
                run.armed.set()
        except Exception as ex:
            message = str(ex).replace("\n", " ") or type(ex).__name__
            log.error("acquisition did not start: %s", message)
            self.run = None
            run.done.set()
            await self._stop_quietly()
            await asyncio.to_thread(self._end_series, begun, State.ERROR)
            await self.files.post_status()
            await self.status(message, State.ERROR if isinstance(ex, Xspress3Error) else State.IDLE)
            await pub.publish(Out.ACQUIRING, False)
            raise Rejected(message) from ex
        if not armed:
            await self._finish_run(RunEnd(plan.run_id, Outcome.ABORTED, "stopped before arming", 0))
            return run
        self.readout.begin(self.driver, plan)
        if run.stop_requested:
            self.readout.request_stop()
        return run

    def _begin_series(self, start: SeriesStart, begun: list) -> None:
        """Worker thread: every consumer begins the series (`begun` lists those that did)."""
        for consumer in self.consumers:
            consumer.begin_series(start)
            begun.append(consumer)

    @staticmethod
    def _end_series(consumers: Sequence[SeriesConsumer], state: str) -> None:
        """Worker thread: end the series on each consumer, in order."""
        for consumer in consumers:
            try:
                consumer.end_series(state)
            except Exception:   # the others must still end; the failure is in the log
                log.exception("%s: ending the series failed", consumer.name)

    async def _stop_quietly(self) -> None:
        if self.driver is None:
            return
        try:
            await self.call(self.driver.stop)
        except Xspress3Error as ex:
            log.warning("stop after a failed start also failed: %s", ex)

    async def stop(self) -> None:
        """Acquire=0: stop the run and wait (up to STOP_TIMEOUT_S) until it is retired."""
        run = self.run
        if run is None:
            return
        run.stop_requested = True
        # tell the readout first, so a detector that goes idle is read as a stop, not a fault
        self.readout.request_stop()
        await self._set_state(State.ABORTING)
        try:
            await self.call(self.driver.stop)
        except Xspress3Error as ex:
            log.error("stop failed: %s", ex)
            await self.status(f"stop failed: {ex}", State.ERROR)
        try:
            await asyncio.wait_for(asyncio.shield(run.done.wait()), STOP_TIMEOUT_S)
        except asyncio.TimeoutError:
            log.error("readout did not finish within %g s of the stop", STOP_TIMEOUT_S)

    async def soft_trigger(self) -> None:
        run = self.run
        if run is None or not run.settings.trigger_mode.software:
            raise Rejected("SoftTrigger needs a running acquisition in a Software trigger mode")
        # a trigger that comes while the run is being set up waits for the detector to run
        if not run.armed.is_set():
            waiters = {asyncio.ensure_future(run.armed.wait()),
                       asyncio.ensure_future(run.done.wait())}
            _, pending = await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
            for waiter in pending:
                waiter.cancel()
            if not run.armed.is_set():
                raise Rejected("the run ended before the trigger")
        await self.call(self.driver.continue_)

    async def _post_frame(self, s: FrameSummary) -> None:
        run = self.run
        if run is not None and s.run_id == run.plan.run_id:
            if not run.settings.trigger_mode.starts_at_once and \
                    self._state == State.WAITING and s.frames_acquired > 0:
                await self._set_state(State.ACQUIRE)
        await self.publisher.post_frame(s, self.rois.use)

    async def _finish_run(self, end: RunEnd) -> None:
        run = self.run
        if run is None or end.run_id != run.plan.run_id:
            log.warning("end of an unknown run %s ignored", end.run_id)
            return
        pub = self.publisher
        if end.outcome is not Outcome.COMPLETED or run.stop_requested:
            await self._stop_quietly()
        if end.outcome is Outcome.ERROR:
            state, message = State.ERROR, end.message
        elif run.stop_requested or end.outcome is Outcome.ABORTED:
            state, message = State.ABORTED, "Stopped Acquiring"
        else:
            state, message = State.IDLE, "Completed Acquisition"
        if end.lost:
            detail = "; ".join(f"{k}: {v} frames" for k, v in end.lost.items())
            message = f"{message} ({detail})"
        # the stream drains its queue and sends its end message here
        await asyncio.to_thread(self._end_series, self.consumers, state)
        await self.post_stream_stats()
        await self.files.post_status()      # shows a capture that completed with the series
        with self.readout.lock:
            self.readout.ts.run_ended()
        await self.post_time_series()
        await pub.publish(Out.NUM_IMAGES_COUNTER, end.frames_read)
        await pub.publish(Out.FRAMES_LOST, end.lost.get("detector overrun", 0))
        await self.status(message, state)
        run.ended = end
        self.run = None
        await pub.publish(Out.ACQUIRING, False)
        await pub.plugins_idle()
        log.info("run %d %s: %d frames (%s)", end.run_id, end.outcome, end.frames_read, message)
        await pub.flush()
        run.done.set()

    async def post_stream_stats(self) -> None:
        if self.stream is None:
            return
        await self.publisher.publish(Out.STREAM_STATS, stream_stats(self.stream))

    async def heartbeat(self) -> None:
        await self.post_stream_stats()
        await self.files.post_status()
        if self.run is None:     # during a run the frame posts keep the rates
            await self.publisher.plugins_idle()

    # ---- file capture (HDF1:Capture) -------------------------------------------------------
    async def capture(self, target: CaptureTarget) -> None:
        """Capture=1: arm the file; it opens with the next series (or now, in a run).
        Returns when the capture has ended."""
        await self.files.arm(target)
        run = self.run
        if run is not None and run.start is not None:
            await asyncio.to_thread(self.files.begin_series, run.start)
        await self.files.wait()

    async def stop_capture(self) -> None:
        """Capture=0: close the file now."""
        await self.files.stop("Capture stopped")

    async def erase(self) -> None:
        if self.run is not None:
            raise Rejected("cannot erase while acquiring")
        if self.driver is not None and self._frames_used:
            await self.call(self.driver.clear, 0, self._frames_used)
        self.readout.erase(self.channels, self.bins)
        await self.publisher.zero_counters(spectra=True)
        await self.post_time_series()
        await self.publisher.publish(Out.ARRAY_COUNTER, 0)
        await self.publisher.plugins_erased()
        await self.status("Erased Data")

    def set_update_period(self, seconds: float) -> None:
        self.readout.update_period = seconds

    # ---- ROIs, sums and the time series ------------------------------------------------
    def set_roi(self, channel: int, index: int, *, lo: int, hi: int, use: bool, bgd: int) -> None:
        """Replace one ROI (channel and index from 0); the readout takes the new table."""
        self.readout.rois = self.rois.with_roi(channel, index, lo=lo, hi=hi, use=use, bgd=bgd)

    @property
    def rois(self) -> RoiTable:
        """The ROI table in force; the readout holds it (replaced whole on each change)."""
        return self.readout.rois

    def reset_sca_sums(self, channel: int) -> None:
        with self.readout.lock:
            sums = self.readout.sca_sums
            if sums is not None and channel < sums.shape[0]:
                sums[channel] = 0.0

    @property
    def time_series(self) -> TimeSeries:
        return self.readout.ts

    def set_ts_points(self, points: int) -> None:
        """One time-series length for all channels (they record the same frames)."""
        if self.readout.ts.acquiring:
            raise Rejected("cannot change TSNumPoints while the time series is recording")
        with self.readout.lock:
            self.readout.ts.points = int(points)
            self.readout.ts.erase()

    def set_ts_circular(self, circular: bool) -> None:
        if self.readout.ts.acquiring:
            raise Rejected("cannot change TSAcquireMode while the time series is recording")
        with self.readout.lock:
            self.readout.ts.circular = circular
            self.readout.ts.erase()

    def ts_control(self, action) -> None:
        """TSControl (a TsAction)."""
        with self.readout.lock:
            self.readout.ts.control(action)

    def ts_view(self) -> TimeSeriesView:
        ts = self.readout.ts
        with self.readout.lock:
            return TimeSeriesView(
                current=ts.current, acquiring=ts.acquiring,
                rois={key: ts.ordered(ts.roi(key)) for key in ts.columns},
                times=ts.ordered(ts.times) if ts.times is not None else None,
                sca=ts.ordered(ts.sca) if ts.sca is not None else None)

    async def post_time_series(self) -> None:
        await self.publisher.post_time_series(self.ts_view())


__all__ = ["RunController", "Publisher", "Out", "RunSettings", "ChannelSdkSettings",
           "TimeSeriesView", "StreamStats", "Rejected", "ActiveRun", "SDK_TRIGGER",
           "DRIVER_VERSION", "detector_model"]
