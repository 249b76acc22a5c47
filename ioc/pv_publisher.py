"""The controller's publisher on Channel Access: `controller.Publisher` as PV writes.

The run controller says what to show (`Out` keys, frame summaries, time series);
this adapter knows which PVs show it. It runs on the event loop only.
"""
from __future__ import annotations

import asyncio
import logging
from typing import Any, Optional

import numpy as np

from xspress3.driver import Xspress3
from xspress3.vocabulary import NUM_ROIS, NUM_SCAS, Sca

from . import enums
from .plugin_stats import PluginStats
from .publisher import Out, TimeSeriesView
from .readout import FrameSummary

log = logging.getLogger(__name__)

#: Longest the end of a run waits for its last updates to reach CA clients
MONITOR_FLUSH_TIMEOUT_S = 0.5


async def _command_and_readback(command, command_strings, readback, readback_strings,
                                on: bool) -> None:
    """A busy-style command (Acquire, Capture) and its readback. Going on, the command
    then the readback; going off, the readback first, so a client that sees the
    command back at Done finds its readback done too."""
    if on:
        await command.write(command_strings[1], verify_value=False)
        await readback.write(readback_strings[1])
    else:
        await readback.write(readback_strings[0])
        await command.write(command_strings[0], verify_value=False)


class PvPublisher:
    """Implements controller.Publisher for the root group `ioc` (server.IocBase)."""

    def __init__(self, ioc):
        self.ioc = ioc
        #: HDF1:'s NDPluginBase counters: the frames the file writer wrote while capturing
        self.file_stats = PluginStats()
        self._capture_dropped = 0   # FramesDropped_RBV of the current capture, as last shown

    # ---- single values -----------------------------------------------------------------
    async def publish(self, key: Out, value: Any) -> None:
        det, hdf = self.ioc.det, self.ioc.hdf
        if key is Out.ACQUIRING:
            if value:
                for ch in self.ioc.channels:   # plugin frame counts follow the new run
                    ch.plugins_run_started()
            await _command_and_readback(det.acquire, enums.ACQUIRE, det.acquire_rbv,
                                        enums.ACQUIRE_RBV, bool(value))
        elif key is Out.DETECTOR_STATE:
            await det.detector_state.write(value)
        elif key is Out.ARRAY_COUNTER:
            await det.array_counter.write(value, verify_value=False)
            await det.array_counter_rbv.write(value)
        elif key is Out.NUM_IMAGES_COUNTER:
            await det.num_images_counter.write(value)
        elif key is Out.FRAME_COUNT:
            await det.frame_count.write(value)
        elif key is Out.FRAMES_LOST:
            await det.frames_lost.write(value)
        elif key is Out.ARRAY_SIZE:
            await self.ioc.post_array_size(*value)
        elif key is Out.STREAM_STATS:
            await det.stream_receivers.write(value.receivers)
            await det.stream_frames_sent.write(value.frames_sent)
            await det.stream_frames_lost.write(value.frames_lost)
            await det.stream_paced.write(round(value.paced_s, 3))
            await det.stream_shared.write(enums.NO_YES[bool(value.shared)])
            await det.stream_lost_reason.write(value.lost_reason[:255])
        elif key is Out.CONNECTED:
            await det.connected.write(enums.CONNECTED[1 if value else 0])
        elif key is Out.CAPTURING:
            if value:
                self.file_stats.run_started()     # each file counts its frames from 0
                self._capture_dropped = 0
            await _command_and_readback(hdf.capture, enums.CAPTURE, hdf.capture_rbv,
                                        enums.CAPTURE_RBV, bool(value))
        elif key is Out.FILE_WRITING:
            await hdf.write_file_rbv.write(enums.WRITE_FILE_RBV[bool(value)])
        elif key is Out.FILE_NAME:
            await hdf.full_file_name.write(value)
        elif key is Out.FILE_NUMBER:
            await hdf.file_number.write(value, verify_value=False)
            await hdf.file_number_rbv.write(value)
            self.ioc.setting_changed()
        elif key is Out.FILE_PATH_EXISTS:
            await hdf.file_path_exists.write(enums.NO_YES[bool(value)])
        elif key is Out.FILE_COUNTS:
            written, dropped = value
            await hdf.num_captured.write(written)
            await hdf.frames_dropped.write(dropped)
            self.file_stats.handled(written)
            # DroppedArrays_RBV sums the captures' FramesDropped_RBV until ERASE or a write
            self.file_stats.drop(dropped - self._capture_dropped)
            self._capture_dropped = max(self._capture_dropped, dropped)
            await self._post_file_counters()
        elif key is Out.WRITE_STATUS:
            ok, message = value
            await hdf.write_status.write(0 if ok else 1)
            await hdf.write_message.write(message[:255])
        else:
            raise KeyError(key)

    async def _post_file_counters(self) -> None:
        hdf, s = self.ioc.hdf, self.file_stats
        if hdf.array_counter_rbv.value != s.counter:
            await hdf.array_counter_rbv.write(s.counter)
        if hdf.ad_arrayrate_rbv.value != s.rate:
            await hdf.ad_arrayrate_rbv.write(s.rate)
        if hdf.dropped_arrays_rbv.value != s.dropped:
            await hdf.dropped_arrays_rbv.write(s.dropped)

    def set_file_counter(self, value: int) -> None:
        """HDF1:ArrayCounter: the file writer's count goes on from `value`."""
        self.file_stats.counter = int(value)

    def set_file_dropped(self, value: int) -> None:
        """HDF1:DroppedArrays: the writer's dropped count goes on from `value`."""
        self.file_stats.dropped = int(value)

    async def plugins_erased(self) -> None:
        for ch in self.ioc.channels:
            for plugin in ch.plugins:
                await plugin.reset_counters()
        self.file_stats.reset()
        await self.ioc.hdf.array_counter.write(0, verify_value=False)
        await self.ioc.hdf.dropped_arrays.write(0, verify_value=False)
        await self._post_file_counters()

    async def plugins_idle(self) -> None:
        for ch in self.ioc.channels:
            for plugin in ch.plugins:
                await plugin.idle()
        self.file_stats.idle()
        await self._post_file_counters()

    async def status(self, message: str, state: Optional[str] = None) -> None:
        det = self.ioc.det
        await det.status_message.write(message[:255])
        if state is not None:
            await det.detector_state.write(state)

    async def detector_changed(self, driver: Optional[Xspress3]) -> None:
        await self.ioc.describe_detector()

    async def flush(self) -> None:
        """Let the final updates of a run reach subscribers before the Acquire put
        completes, as in an EPICS IOC: a client reading its monitored values right
        after `caput -c` must see the end state, not the one before."""
        ctx = self.ioc.ca_context
        if ctx is not None and not await ctx.updates_sent(MONITOR_FLUSH_TIMEOUT_S):
            log.warning("the run's last value updates were not all sent within %.1f s",
                        MONITOR_FLUSH_TIMEOUT_S)

    # ---- frames ------------------------------------------------------------------------
    async def post_frame(self, s: FrameSummary, rois_used: np.ndarray) -> None:
        """The one place a frame summary reaches the PVs, channel by channel."""
        det = self.ioc.det
        await det.array_counter_rbv.write(s.frame_number)
        await det.array_counter.write(s.frame_number, verify_value=False)
        await det.num_images_counter.write(s.frames_read)
        await det.frame_count.write(s.frames_acquired)
        await det.unique_id.write(s.frame_number)
        # Every await of asyncio.sleep(0) below lets the loop serve clients: a caget
        # needs a few loop passes, so one update's ~100 writes go in small slices
        # rather than a channel at a time. The values are ours (read-only PVs), so
        # caproto's put checks (verify_value) are skipped.
        for i, ch in enumerate(self.ioc.channels[:s.spectra.shape[0]]):
            await asyncio.sleep(0)
            # spectra go through the channel's plugin groups (ROI crop, EnableCallbacks,
            # ArrayCounter/ArrayRate_RBV): channel_pvs.post_spectra
            await ch.post_spectra(s, i)
            await asyncio.sleep(0)
            if ch.working("sca_plugin"):            # C{n}SCA: EnableCallbacks
                for k, value in enumerate(s.sca[i].tolist()):
                    await _changed(getattr(ch, f"sca{k}"), value)
            await _changed(ch.dt_factor, float(s.sca[i, Sca.DT_FACTOR]))
            await _changed(ch.dead_time, float(s.sca[i, Sca.DT_PERCENT]))
            if s.sca_sums is not None and ch.working("sca_plugin"):
                await asyncio.sleep(0)
                for k, value in enumerate(s.sca_sums[i].tolist()):
                    await _changed(getattr(ch, f"sca_sum{k}"), value)
            if ch.working("roistat_plugin"):        # MCA{n}ROI: EnableCallbacks
                for r in np.flatnonzero(rois_used[i]):
                    await asyncio.sleep(0)
                    roi = ch.rois[r]
                    for pv, value in zip(roi.stats, s.rois[i, r].tolist()):
                        await _changed(pv, value)
                if ch.ts_current_point.value != s.ts_point:
                    await ch.ts_current_point.write(s.ts_point)
            if ch.working("sca_ts_plugin") and ch.sca_ts_current_point.value != s.ts_point:
                await ch.sca_ts_current_point.write(s.ts_point)

    async def zero_counters(self, spectra: bool) -> None:
        """Counters back to their erased values; values already there are not posted
        again (this runs at the start of every run of a step scan)."""
        bins = self.ioc.bins
        zeros = np.zeros(bins)
        for ch in self.ioc.channels:
            if np.any(ch.spectrum_sum.value) and ch.working("mcasum_plugin"):
                await ch.spectrum_sum.write(zeros, verify_value=False)
            # a plugin that does not work (EnableCallbacks) keeps what it shows
            scalars = [(ch.dt_factor, 1.0), (ch.dead_time, 0.0)]
            if ch.working("sca_plugin"):
                scalars += [(getattr(ch, f"sca{k}"), 0.0) for k in range(NUM_SCAS)]
                scalars += [(getattr(ch, f"sca_sum{k}"), 0.0) for k in range(NUM_SCAS)]
            if ch.working("roistat_plugin"):
                for roi in ch.rois:
                    scalars += [(pv, 0.0) for pv in roi.stats]
            for pv, value in scalars:
                if pv.value != value:
                    await pv.write(value, verify_value=False)
        if spectra:
            for ch in self.ioc.channels:
                if ch.working("mca_plugin"):
                    await ch.spectrum.write([0.0] * bins)

    # ---- time series ---------------------------------------------------------------------
    async def post_time_series(self, view: TimeSeriesView) -> None:
        """Each channel's series through its plugins: MCA{n}ROI: (ROI statistics),
        C{n}SCA: (TSArrayValue) and C{n}SCA:TS: (TimeSeries); a plugin that does not
        work (EnableCallbacks Disable, see channel_pvs.working) is not updated."""
        current, acquiring, sca = view.current, view.acquiring, view.sca
        acquiring_string = enums.TS_ACQUIRING[acquiring]
        for i, ch in enumerate(self.ioc.channels):
            roistat, sca_attr, sca_ts = (ch.working("roistat_plugin"), ch.working("sca_plugin"),
                                         ch.working("sca_ts_plugin"))
            for pv, value, works in (
                    (ch.ts_current_point, current, roistat),
                    (ch.ts_acquiring, acquiring_string, roistat),
                    (ch.sca_ts_current_point, current, sca_ts),
                    (ch.sca_ts_acquiring, acquiring_string, sca_ts),
                    (ch.sca_ts_acquire, enums.TS_ACQUIRE[acquiring], sca_ts)):
                if works and pv.value != value:
                    await pv.write(value, verify_value=False)
            if roistat:
                for r in range(NUM_ROIS):
                    roi, stats = ch.rois[r], view.rois.get((i, r))
                    for column, pv in enumerate(roi.ts_stats):
                        await _post_series(pv, None if stats is None else stats[:, column],
                                           current)
                    await _post_series(roi.ts_timestamp, None if stats is None else view.times,
                                       current)
            if sca_ts:
                await _post_series(ch.sca_ts_plugin.pv_named("TSTimestamp"), view.times,
                                   current)
            for k in range(NUM_SCAS):
                column = sca[:, i, k] if sca is not None and i < sca.shape[1] else None
                if sca_attr:
                    await _post_series(getattr(ch, f"sca_ts{k}"), column, current)
                if sca_ts:
                    await _post_series(getattr(ch, f"sca_ts_series{k}"), column, current)


async def _changed(pv, value) -> None:
    """Write one of our read-only scalars if its value changed: a write costs ~10 us
    (caproto's timestamps, alarms and subscriptions), a comparison next to nothing, and
    several hundred scalars are offered at every display update."""
    if pv.value != value:
        await pv.write(value, verify_value=False)


async def _post_series(pv, values, current: int) -> None:
    """Post one time-series waveform; an empty series reads as one 0 (CA has no empty arrays)."""
    if values is not None:
        await pv.write(values if values.size else [0.0])
    elif current == 0 and len(pv.value) > 1:
        await pv.write([0.0])

