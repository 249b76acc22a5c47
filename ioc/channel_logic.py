"""Per-channel logic of the IOC: SDK windows/thresholds, ROIs and the ROI time series,
as a mixin of the root group (the PVs are in channel_pvs.py)."""
from __future__ import annotations

from typing import Any

from .channel_pvs import NUM_ROIS, NUM_SCAS
from .pvtypes import PutRejected


class ChannelLogic:
    """Mixed into server.IocBase: uses its driver, readout, channels and _sdk()."""

    async def channel_setting(self, ch, attr: str, value: Any) -> Any:
        index = ch.number - 1
        if attr == "event_width":
            return value
        d = self.driver
        if attr == "threshold":
            if d is None:
                return value
            await self._sdk(d.set_good_threshold, index, int(value))
            return await self._sdk(d.get_good_threshold, index)   # what the SDK holds
        # window limits: win{w}_low / win{w}_high
        w = int(attr[3])
        low = int(value) if attr.endswith("low") else int(getattr(ch, f"win{w}_low_rbv").value)
        high = int(value) if attr.endswith("high") else int(getattr(ch, f"win{w}_high_rbv").value)
        if low > high:
            raise PutRejected(f"window {w + 1}: low limit {low} above high limit {high}")
        if d is None:
            return value
        await self._sdk(d.set_window, index, w, low, high)
        low, high = await self._sdk(d.get_window, index, w)
        return low if attr.endswith("low") else high

    async def roi_setting(self, roi, attr: str, value: Any) -> Any:
        ch, r = roi.channel - 1, roi.index - 1
        lo, size = int(roi.min_x_rbv.value), int(roi.size_x_rbv.value)
        use, bgd = roi.use_rbv.value == "Yes", int(roi.bgd_width_rbv.value)
        if attr == "min_x":
            lo = int(value)
            if lo >= self.bins:
                raise PutRejected(f"MinX must be below {self.bins}")
            size = min(int(roi.size_x.value), self.bins - lo)
            await roi.size_x_rbv.write(size)
        elif attr == "size_x":
            size = value = min(int(value), self.bins - lo)
        elif attr == "use":
            use = value == "Yes"
        elif attr == "bgd_width":
            bgd = int(value)
        self._rois = self._rois.with_roi(ch, r, lo=lo, hi=lo + size, use=use, bgd=bgd)
        self.readout.rois = self._rois
        return value

    def _start_time_series(self) -> None:
        with self.readout.lock:
            self.readout.ts.run_started()

    def _stop_time_series(self) -> None:
        with self.readout.lock:
            self.readout.ts.run_ended()

    async def ts_num_points(self, ch, value: int) -> int:
        """One time-series length for all channels (they record the same frames)."""
        if self.readout.ts.acquiring:
            raise PutRejected("cannot change TSNumPoints while the time series is recording")
        with self.readout.lock:
            self.readout.ts.points = int(value)
            self.readout.ts.erase()
        for other in self.channels:
            for pv in (other.ts_num_points, other.sca_ts_num_points):
                if pv.value != int(value):
                    await pv.write(int(value), verify_value=False)
        await self._post_time_series()
        return value

    async def ts_acquire_mode(self, instance, value) -> Any:
        if self.readout.ts.acquiring:
            raise PutRejected("cannot change TSAcquireMode while the time series is recording")
        with self.readout.lock:
            self.readout.ts.circular = value == "Circ. buffer"
            self.readout.ts.erase()
        for ch in self.channels:
            if ch.sca_ts_acquire_mode is not instance:
                await ch.sca_ts_acquire_mode.write(value, verify_value=False)
        await self._post_time_series()
        return value

    async def ts_control(self, ch, value) -> Any:
        self._control_time_series(value)
        await self._post_time_series()
        return value

    def _control_time_series(self, action: str) -> None:
        with self.readout.lock:
            self.readout.ts.control(action)

    async def sca_ts_acquire(self, instance, value) -> Any:
        """C{n}SCA:TS:TSAcquire: 1 erases and starts (as TSControl Erase/Start), 0 stops."""
        self._control_time_series("Erase/Start" if value in ("Acquire", 1) else "Stop")
        await self._post_time_series()
        return "Acquire" if self.readout.ts.acquiring else "Done"

    async def time_series_read(self, instance, value) -> Any:
        await self._post_time_series()
        return value if isinstance(value, int) else "Done"

    async def reset_roi_stats(self, instance, value) -> str:
        for roi in instance.group.rois:
            for pv in roi.stats:
                if pv.value != 0.0:
                    await pv.write(0.0)
        return "Done"

    async def reset_sca_sums(self, instance, value) -> str:
        ch = instance.group
        with self.readout.lock:
            if self.readout.sca_sums is not None and ch.number <= self.readout.sca_sums.shape[0]:
                self.readout.sca_sums[ch.number - 1] = 0.0
        for k in range(NUM_SCAS):
            await getattr(ch, f"sca_sum{k}").write(0.0)
        return "Done"

    async def sca_attr_name(self, instance, value) -> str:
        rbv = getattr(instance.group, instance.pvspec.attr + "_rbv")
        if value != rbv.value:
            raise PutRejected(f"attribute names are fixed here: {instance.pvname} is {rbv.value!r}")
        return value

    async def _post_time_series(self) -> None:
        ts = self.readout.ts
        with self.readout.lock:
            current = ts.current
            acquiring = ts.acquiring
            arrays = {key: ts.ordered(arr) for key, arr in ts.data.items()}
            sca = ts.ordered(ts.sca) if ts.sca is not None else None
        for i, ch in enumerate(self.channels):
            for pv, value in ((ch.ts_current_point, current), (ch.sca_ts_current_point, current),
                              (ch.ts_acquiring, "Acquiring" if acquiring else "Done"),
                              (ch.sca_ts_acquiring, "Acquiring" if acquiring else "Done"),
                              (ch.sca_ts_acquire, "Acquire" if acquiring else "Done")):
                if pv.value != value:
                    await pv.write(value, verify_value=False)
            for r in range(NUM_ROIS):
                await _post_series(ch.rois[r].ts_total, arrays.get((i, r)), current)
            for k in range(NUM_SCAS):
                column = sca[:, i, k] if sca is not None and i < sca.shape[1] else None
                await _post_series(getattr(ch, f"sca_ts{k}"), column, current)
                await _post_series(getattr(ch, f"sca_ts_series{k}"), column, current)


async def _post_series(pv, values, current: int) -> None:
    """Post one time-series waveform; an empty series reads as one 0 (CA has no empty arrays)."""
    if values is not None:
        await pv.write(values if values.size else [0.0])
    elif current == 0 and len(pv.value) > 1:
        await pv.write([0.0])
