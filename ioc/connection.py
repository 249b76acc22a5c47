"""Connection and SDK calibration commands of the IOC (det1:CONNECT, DISCONNECT, RESET,
SAVE_SETTINGS, RESTORE_SETTINGS) and the simulator controls, as a mixin of the root group."""
from __future__ import annotations

import logging

from xspress3.driver import Xspress3Error, sim_controls

from .enums import State
from .pvtypes import PutRejected

log = logging.getLogger(__name__)


class ConnectionCommands:
    """Mixed into server.IocBase: uses its driver, call(), status() and run state."""

    async def connect(self) -> None:
        if self._run is not None:
            raise PutRejected("cannot reconnect while acquiring")
        if self.driver is not None:
            await self.call(self.driver.close)
            self.driver = None
        await self.status("Connecting", State.INITIALIZING)
        try:
            self.driver = await self.call(self.options.open_driver)
        except Xspress3Error as ex:
            self.driver_error = str(ex)
            await self.det.connected.write("Disconnected")
            await self.status(f"connect failed: {ex}", State.DISCONNECTED)
            raise PutRejected(str(ex)) from ex
        await self._describe_detector()
        await self._apply_channel_settings()
        await self.status("Connected", State.IDLE)

    async def disconnect(self) -> None:
        if self._run is not None:
            await self.stop_run()
        if self.driver is not None:
            await self.call(self.driver.close)
            self.driver = None
        await self.det.connected.write("Disconnected")
        await self.status("Disconnected", State.DISCONNECTED)

    async def reset(self) -> None:
        if self._run is not None:
            await self.stop_run()
        if self.driver is None:
            await self.connect()
            return
        try:
            await self.call(self.driver.stop)
        except Xspress3Error as ex:
            await self.status(f"reset failed: {ex}; try CONNECT", State.ERROR)
            raise PutRejected(str(ex)) from ex
        await self.status("Idle", State.IDLE)

    def _directory(self, pv, name: str) -> str:
        if not pv.value:
            raise PutRejected(f"{name} is empty")
        return pv.value

    async def save_sdk_settings(self) -> None:
        path = self._directory(self.det.config_save_path_rbv, "CONFIG_SAVE_PATH")
        await self._sdk(self._need_driver().save_settings, path)
        await self.status(f"Settings saved to {path}")

    async def restore_sdk_settings(self) -> None:
        path = self._directory(self.det.config_path_rbv, "CONFIG_PATH")
        await self._sdk(self._need_driver().restore_settings, path)
        await self._read_back_channel_settings()
        await self.status(f"Settings restored from {path}")

    async def _read_back_channel_settings(self) -> None:
        d = self._need_driver()
        for i, ch in enumerate(self.channels[:d.num_channels]):
            thr = await self.call(d.get_good_threshold, i)
            await ch.threshold.write(thr, verify_value=False)
            await ch.threshold_rbv.write(thr)
            for w in (0, 1):
                low, high = await self.call(d.get_window, i, w)
                for attr, value in ((f"win{w}_low", low), (f"win{w}_high", high)):
                    await getattr(ch, attr).write(value, verify_value=False)
                    await getattr(ch, attr + "_rbv").write(value)

    async def _apply_channel_settings(self) -> None:
        """Writes the channel settings held in PVs to a (re)connected detector."""
        d = self.driver
        for i, ch in enumerate(self.channels[:d.num_channels]):
            try:
                await self.call(d.set_good_threshold, i, int(ch.threshold_rbv.value))
                for w in (0, 1):
                    await self.call(d.set_window, i, w, int(getattr(ch, f"win{w}_low_rbv").value),
                                    int(getattr(ch, f"win{w}_high_rbv").value))
            except Xspress3Error as ex:
                log.warning("channel %d settings not applied: %s", i + 1, ex)

    async def sim_call(self, name: str, *args):
        if name in ("inject_fault", "clear_faults"):
            # library-wide: works while disconnected too (e.g. to fault the next connect)
            target = sim_controls(self.options.library)
        else:
            target = self._need_driver().sim
        if target is None:
            raise PutRejected("the loaded library is not the simulator")
        try:
            return await self.call(getattr(target, name), *args)
        except Xspress3Error as ex:
            raise PutRejected(str(ex)) from ex

