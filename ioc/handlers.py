"""What the PV groups ask of the root group, declared once and typed.

`RootHandlers` is the interface the PV modules (detector_pvs, channel_pvs,
file_pvs, sim_pvs) rely on; `server.IocBase` implements it (tests check that
each member exists there with the same parameters). The functions below are the
putters and commands those modules wire to PVs: each names its root method in
code, not in a string, so a misspelt handler fails when the PV module is
imported (the module attribute is missing), and a type checker follows every
call from PV to root method.
"""
from __future__ import annotations

from typing import Any, Awaitable, Callable, Protocol, runtime_checkable


@runtime_checkable
class RootHandlers(Protocol):
    """The root group's methods that PV putters call."""

    # det1: acquisition and commands
    async def acquire_put(self, instance: Any, value: Any) -> Any: ...
    async def soft_trigger_put(self, instance: Any, value: Any) -> Any: ...
    async def erase(self) -> None: ...
    async def update_arrays(self) -> None: ...
    async def connect(self) -> None: ...
    async def disconnect(self) -> None: ...
    async def reset(self) -> None: ...
    async def save_sdk_settings(self) -> None: ...
    async def restore_sdk_settings(self) -> None: ...
    async def apply_setting(self, attr: str, value: Any) -> Any: ...
    def setting_changed(self) -> None: ...
    # channels, ROIs, SCAs, time series
    async def channel_setting(self, ch: Any, attr: str, value: Any) -> Any: ...
    async def roi_setting(self, roi: Any, attr: str, value: Any) -> Any: ...
    async def ts_num_points(self, ch: Any, value: int) -> int: ...
    async def ts_acquire_mode(self, instance: Any, value: Any) -> Any: ...
    async def ts_control(self, ch: Any, value: Any) -> Any: ...
    async def sca_ts_acquire(self, instance: Any, value: Any) -> Any: ...
    async def time_series_read(self, instance: Any, value: Any) -> Any: ...
    async def reset_roi_stats(self, instance: Any, value: Any) -> str: ...
    async def reset_sca_sums(self, instance: Any, value: Any) -> str: ...
    async def sca_attr_name(self, instance: Any, value: Any) -> str: ...
    # file writing and the simulator
    async def file_setting(self, attr: str, value: Any) -> Any: ...
    async def capture_put(self, instance: Any, value: Any) -> Any: ...
    async def sim_call(self, name: str, *args: Any) -> Any: ...


#: A putter's work on the root: (root, instance, value) -> the value the PV stores.
RootPut = Callable[[RootHandlers, Any, Any], Awaitable[Any]]
#: A command's work on the root: (root) -> None.
RootCommand = Callable[[RootHandlers], Awaitable[None]]


def root_of(group: Any) -> RootHandlers:
    """The root group of a PV group, as the interface the PV modules may use."""
    return group.root


# ---- putters: (root, instance, value) -------------------------------------------------

async def acquire_put(root: RootHandlers, instance: Any, value: Any) -> Any:
    return await root.acquire_put(instance, value)


async def soft_trigger_put(root: RootHandlers, instance: Any, value: Any) -> Any:
    return await root.soft_trigger_put(instance, value)


async def capture_put(root: RootHandlers, instance: Any, value: Any) -> Any:
    return await root.capture_put(instance, value)


async def time_series_read(root: RootHandlers, instance: Any, value: Any) -> Any:
    return await root.time_series_read(instance, value)


async def sca_attr_name(root: RootHandlers, instance: Any, value: Any) -> Any:
    return await root.sca_attr_name(instance, value)


async def sca_ts_acquire(root: RootHandlers, instance: Any, value: Any) -> Any:
    return await root.sca_ts_acquire(instance, value)


async def ts_acquire_mode(root: RootHandlers, instance: Any, value: Any) -> Any:
    return await root.ts_acquire_mode(instance, value)


# ---- commands: (root) ----------------------------------------------------------------

async def erase(root: RootHandlers) -> None:
    await root.erase()


async def update_arrays(root: RootHandlers) -> None:
    await root.update_arrays()


async def connect(root: RootHandlers) -> None:
    await root.connect()


async def disconnect(root: RootHandlers) -> None:
    await root.disconnect()


async def reset(root: RootHandlers) -> None:
    await root.reset()


async def save_sdk_settings(root: RootHandlers) -> None:
    await root.save_sdk_settings()


async def restore_sdk_settings(root: RootHandlers) -> None:
    await root.restore_sdk_settings()
