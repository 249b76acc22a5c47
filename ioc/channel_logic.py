"""Per-channel logic of the IOC: SDK windows/thresholds, ROIs and the ROI time series,
as a mixin of the root group (the PVs are in channel_pvs.py)."""
from __future__ import annotations

from typing import Any

from .channel_pvs import NUM_ROIS
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
        ts = self.readout.ts
        with self.readout.lock:
            if not ts.acquiring:
                ts.erase()
                ts.acquiring = True
                ts.manual = False

    def _stop_time_series(self) -> None:
        ts = self.readout.ts
        with self.readout.lock:
            if not ts.manual:
                ts.acquiring = False

    async def ts_num_points(self, ch, value: int) -> int:
        """One time-series length for all channels (they record the same frames)."""
        if self.readout.ts.acquiring:
            raise PutRejected("cannot change TSNumPoints while the time series is recording")
        with self.readout.lock:
            self.readout.ts.points = int(value)
            self.readout.ts.erase()
        for other in self.channels:
            if other is not ch:
                await other.ts_num_points.write(int(value), verify_value=False)
        return value

    async def ts_control(self, ch, value) -> Any:
        ts = self.readout.ts
        with self.readout.lock:
            if value == "Erase/Start":
                ts.erase()
                ts.acquiring, ts.manual = True, True
            elif value == "Start":
                ts.acquiring, ts.manual = True, True
            elif value == "Stop":
                ts.acquiring, ts.manual = False, False
        await self._post_time_series()
        return value

    async def _post_time_series(self) -> None:
        ts = self.readout.ts
        with self.readout.lock:
            current = ts.current
            acquiring = ts.acquiring
            arrays = {key: arr[:current].copy() for key, arr in ts.data.items()}
        for i, ch in enumerate(self.channels):
            await ch.ts_current_point.write(current)
            await ch.ts_acquiring.write("Acquiring" if acquiring else "Done")
            for r in range(NUM_ROIS):
                arr = arrays.get((i, r))
                roi = ch.rois[r]
                if arr is not None:
                    await roi.ts_total.write(arr if arr.size else [0.0])
                elif current == 0 and len(roi.ts_total.value) > 1:
                    await roi.ts_total.write([0.0])

