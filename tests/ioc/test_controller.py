"""The run controller in-process, against the simulator, with a recording publisher.

No Channel Access and no IOC process: each test opens the controller on an
event loop of its own and checks what it published, in order.
"""
from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path

import numpy as np
import pytest

from xspress3.driver import ErrorCode
from xspress3.ioc.controller import Out, Rejected, RunController, RunSettings
from xspress3.ioc.enums import State, TsAction
from xspress3.ioc.options import IocOptions
from xspress3.vocabulary import TriggerMode

REPO = Path(__file__).resolve().parents[2]


class RecordingPublisher:
    """controller.Publisher that remembers every call, in order."""

    def __init__(self):
        self.calls: list = []
        self.values: dict = {}
        self.frames: list = []
        self.statuses: list = []
        self.time_series: list = []
        self.state = None

    async def publish(self, key, value):
        self.calls.append(("publish", key, value))
        self.values[key] = value
        if key is Out.DETECTOR_STATE:
            self.state = value

    async def status(self, message, state=None):
        self.calls.append(("status", message, state))
        self.statuses.append((message, state))
        if state is not None:
            self.state = state

    async def post_frame(self, summary, rois_used):
        self.calls.append(("frame", summary.frames_read))
        self.frames.append((summary, rois_used.copy()))

    async def post_time_series(self, view):
        self.calls.append(("time_series", view.current))
        self.time_series.append(view)

    async def zero_counters(self, spectra):
        self.calls.append(("zero", spectra))

    async def detector_changed(self, driver):
        self.calls.append(("detector", driver))

    async def flush(self):
        self.calls.append(("flush",))

    def index(self, entry) -> int:
        return self.calls.index(entry)


def settings(frames=10, exposure=0.001, mode=TriggerMode.INTERNAL, **kw) -> RunSettings:
    base = dict(trigger_mode=mode, num_images=frames, circular_allowed=False, channels=4,
                first_bin=0, num_bins=4096, event_width=(6.0,) * 4, dtc=False, exposure=exposure)
    base.update(kw)
    return RunSettings(**base)


@contextlib.asynccontextmanager
async def controller(xsp3, sim_library, **options):
    opts = IocOptions(library=sim_library, channels=4, frames_memory=64, stream=None,
                      monitor=None, **options)
    pub = RecordingPublisher()
    c = RunController(opts, pub, driver=xsp3)
    await c.start(update_period=0.0)
    try:
        yield c, pub
    finally:
        await c.stop()
        c.driver = None          # the xsp3 fixture closes the detector
        await c.shutdown()


def run(coro, timeout=20.0):
    return asyncio.run(asyncio.wait_for(coro, timeout))


def test_a_run_publishes_start_frames_and_end_in_order(xsp3, sim_library):
    async def body():
        async with controller(xsp3, sim_library) as (c, pub):
            end = await c.acquire(settings(frames=12))
            return c, pub, end

    c, pub, end = run(body())
    assert (end.outcome, end.frames_read, end.lost) == ("completed", 12, {})
    started = pub.index(("publish", Out.ACQUIRING, True))
    ended = pub.index(("publish", Out.ACQUIRING, False))
    frames = [i for i, call in enumerate(pub.calls) if call[0] == "frame"]
    assert frames and started < frames[0] and frames[-1] < ended
    assert pub.frames[-1][0].frames_read == 12
    assert pub.statuses[0] == ("Acquiring Data", State.ACQUIRE)
    assert pub.statuses[-1] == ("Completed Acquisition", State.IDLE)
    assert pub.values[Out.NUM_IMAGES_COUNTER] == 12
    assert pub.values[Out.ARRAY_SIZE] == (4096, 4)
    assert pub.calls[-1] == ("flush",) and c.run is None
    # the simulator counts: the last frame's spectra and SCAs are not empty
    last = pub.frames[-1][0]
    assert last.spectra.sum() > 0 and last.sca[:, 3].min() > 0


def test_the_series_description_is_built_once_from_the_settings(xsp3, sim_library):
    async def body():
        async with controller(xsp3, sim_library) as (c, pub):
            run_ = await c.start_run(settings(frames=3, first_bin=100, num_bins=1000,
                                              exposure=0.002, mode=TriggerMode.SOFTWARE_INTERNAL))
            start = run_.start
            await c.stop()
            return start

    start = run(body())
    assert (start.first_bin, start.bins, start.full_bins, start.frames_expected) == (100, 1000, 4096, 3)
    assert start.trigger_mode == "Software + Internal" and start.exposure_s == 0.002
    assert start.detector["simulated"] is True and start.ev_per_bin == 10.0


def test_stop_aborts_a_long_run_promptly(xsp3, sim_library):
    async def body():
        async with controller(xsp3, sim_library) as (c, pub):
            task = asyncio.create_task(c.acquire(settings(frames=60, exposure=0.05)))
            while not pub.frames:
                await asyncio.sleep(0.01)
            t0 = asyncio.get_running_loop().time()
            await c.stop()
            end = await task
            return pub, end, asyncio.get_running_loop().time() - t0

    pub, end, took = run(body())
    assert end.outcome == "aborted" and 0 < end.frames_read < 60
    assert took < 1.0
    assert pub.values[Out.DETECTOR_STATE] == State.ABORTING
    assert pub.statuses[-1] == ("Stopped Acquiring", State.ABORTED)
    assert pub.values[Out.ACQUIRING] is False


def test_a_detector_fault_fails_the_run_with_the_sdk_error(xsp3, sim_library):
    async def body():
        async with controller(xsp3, sim_library) as (c, pub):
            xsp3.sim.inject_fault("xsp3_scaler_read", ErrorCode.ERROR, after_calls=1)
            with pytest.raises(Rejected, match="xsp3_scaler_read") as info:
                await c.acquire(settings(frames=20, exposure=0.002))
            xsp3.sim.clear_faults()
            # the controller recovers: the next run completes
            end = await c.acquire(settings(frames=5))
            return pub, info.value, end

    pub, error, end = run(body())
    failed = [s for s in pub.statuses if s[1] == State.ERROR]
    assert failed and "xsp3_scaler_read" in failed[0][0]
    assert end.outcome == "completed" and end.frames_read == 5


def test_a_fault_while_arming_refuses_the_start_and_leaves_no_run(xsp3, sim_library):
    async def body():
        async with controller(xsp3, sim_library) as (c, pub):
            xsp3.sim.inject_fault("xsp3_itfg_setup", ErrorCode.ERROR)
            with pytest.raises(Rejected, match="xsp3_itfg_setup"):
                await c.acquire(settings(frames=5))
            xsp3.sim.clear_faults()
            return c, pub

    c, pub = run(body())
    assert c.run is None
    assert pub.values[Out.ACQUIRING] is False
    assert pub.statuses[-1][1] == State.ERROR


def test_requests_the_state_forbids_are_refused(xsp3, sim_library):
    async def body():
        async with controller(xsp3, sim_library) as (c, pub):
            with pytest.raises(Rejected, match="SoftTrigger"):
                await c.soft_trigger()
            with pytest.raises(Rejected, match="CircularBuffer"):
                await c.start_run(settings(frames=65))
            await c.start_run(settings(frames=50, exposure=0.05))
            with pytest.raises(Rejected, match="already running"):
                await c.start_run(settings())
            with pytest.raises(Rejected, match="erase"):
                await c.erase()
            await c.stop()
            await c.erase()
            return pub

    pub = run(body())
    assert pub.statuses[-1] == ("Erased Data", None)
    assert ("zero", True) in pub.calls


def test_software_trigger_mode_advances_frame_by_frame(xsp3, sim_library):
    async def body():
        async with controller(xsp3, sim_library) as (c, pub):
            task = asyncio.create_task(c.acquire(settings(frames=3, exposure=0.001,
                                                          mode=TriggerMode.SOFTWARE_INTERNAL)))
            while c.run is None or not xsp3.is_busy():     # armed and started
                await asyncio.sleep(0.005)
            for _ in range(3):
                await asyncio.sleep(0.02)
                await c.soft_trigger()
            return await task

    end = run(body())
    assert end.outcome == "completed" and end.frames_read == 3


def test_rois_and_time_series_follow_the_run(xsp3, sim_library):
    async def body():
        async with controller(xsp3, sim_library) as (c, pub):
            c.set_roi(1, 2, lo=0, hi=4096, use=True, bgd=0)
            c.set_ts_points(100)
            await c.acquire(settings(frames=8))
            return c, pub

    c, pub = run(body())
    summary, used = pub.frames[-1]
    assert used[1, 2] and used.sum() == 1
    # ROI 3 of channel 2 covers the whole spectrum: its total is the spectrum's
    assert summary.rois[1, 2, 0] == pytest.approx(summary.spectra[1].sum())
    view = pub.time_series[-1]
    assert view.current == 8 and not view.acquiring
    assert np.array_equal(view.totals[(1, 2)].shape, (8,))
    with pytest.raises(Rejected):
        c.ts_control(TsAction.START)
        c.set_ts_points(10)


def test_the_controller_imports_no_caproto():
    import ast
    for name in ("controller.py", "readout.py", "rois.py", "streaming.py", "options.py", "enums.py"):
        tree = ast.parse((REPO / "ioc" / name).read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom):
                assert "caproto" not in (node.module or "") and node.module != "pvtypes", name
            elif isinstance(node, ast.Import):
                assert not any("caproto" in a.name for a in node.names), name
