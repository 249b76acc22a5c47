"""Acquisition: the run state machine and the PV posts of a run, as a mixin of the root group.

One `ActiveRun` at a time is the whole state machine: Acquire=1 creates it
(`start_run`: plan, erase, arm, start, readout begins), the readout's `RunEnd`
(after completion, abort or error) retires it (`_finish_run`); Acquire_RBV goes
1 when it is created and 0 when it is retired, in that order. Frame summaries
from the readout are posted by `_post_frame` at the display rate.
"""
from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from typing import Optional

import numpy as np

from xspress3.driver import FrameSource, ItfgTrigMode, Xspress3Error
from xspress3.writers.wire import SeriesStart, new_series_id, utc_now_iso

from . import enums
from .pvtypes import PutRejected, reason
from .readout import FrameSummary, RunEnd, RunPlan

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

#: Longest an Acquire put waits for the run's last updates to reach its clients
MONITOR_FLUSH_TIMEOUT_S = 0.5


@dataclass
class ActiveRun:
    plan: RunPlan
    mode: str
    done: asyncio.Event = field(default_factory=asyncio.Event)
    stop_requested: bool = False
    ended: Optional[RunEnd] = None
    series_id: str = ""


class Acquisition:
    """Mixed into server.IocBase: uses its driver, readout, consumers, det and channels."""

    # ---- frame posts (from the readout, on the loop) ---------------------------------
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
        # Every await of asyncio.sleep(0) below lets the loop serve clients: a caget
        # needs a few loop passes, so one update's ~100 writes go in small slices
        # rather than a channel at a time. The values are ours (read-only PVs), so
        # caproto's put checks (verify_value) are skipped.
        for i, ch in enumerate(self.channels[:s.spectra.shape[0]]):
            await asyncio.sleep(0)
            # plugin_pvs: spectra go through the channel's plugin groups (ROI crop,
            # EnableCallbacks, ArrayCounter/ArrayRate_RBV); see channel_pvs.post_spectra
            await ch.post_spectra(s, i)
            await asyncio.sleep(0)
            for k in range(11):
                await getattr(ch, f"sca{k}").write(float(s.sca[i, k]), verify_value=False)
            await ch.dt_factor.write(float(s.sca[i, 9]), verify_value=False)
            await ch.dead_time.write(float(s.sca[i, 10]), verify_value=False)
            if s.sca_sums is not None:
                await asyncio.sleep(0)
                for k in range(11):
                    await getattr(ch, f"sca_sum{k}").write(float(s.sca_sums[i, k]), verify_value=False)
            for r in np.flatnonzero(self._rois.use[i]):
                await asyncio.sleep(0)
                roi = ch.rois[r]
                for pv, value in zip(roi.stats, s.rois[i, r]):
                    await pv.write(float(value), verify_value=False)
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
        for ch in self.channels:   # plugin_pvs: plugin frame counts follow the new numbering
            ch.plugins_run_started()
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
            await asyncio.to_thread(self.readout.prepare, plan.channels, plan.num_bins)
            if run.stop_requested:
                # Acquire=0 came while the run was being set up and its stop call has
                # run already: arming now would leave the detector running unstopped
                armed = False
            else:
                armed = True
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
        if not armed:
            await self._finish_run(RunEnd(plan.run_id, "aborted", "stopped before arming", 0))
            return run
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
        if ctx is not None and not await ctx.updates_sent(MONITOR_FLUSH_TIMEOUT_S):
            log.warning("the run's last value updates were not all sent within %.1f s",
                        MONITOR_FLUSH_TIMEOUT_S)

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
        """Counters back to their erased values; values already there are not posted
        again (this runs at the start of every run of a step scan)."""
        zeros = np.zeros(self.bins)
        for ch in self.channels:
            if np.any(ch.spectrum_sum.value):
                await ch.spectrum_sum.write(zeros, verify_value=False)
            scalars = [(getattr(ch, f"sca{k}"), 0.0) for k in range(11)]
            scalars += [(getattr(ch, f"sca_sum{k}"), 0.0) for k in range(11)]
            scalars += [(ch.dt_factor, 1.0), (ch.dead_time, 0.0)]
            for roi in ch.rois:
                scalars += [(pv, 0.0) for pv in roi.stats]
            for pv, value in scalars:
                if pv.value != value:
                    await pv.write(value, verify_value=False)

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
