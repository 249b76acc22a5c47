"""The run controller in-process, against the simulator, with a recording publisher.

No Channel Access and no IOC process: each test opens the controller on an
event loop of its own and checks what it published, in order.
"""
from __future__ import annotations

import asyncio
import contextlib
import threading
from pathlib import Path

import numpy as np
import pytest

from xspress3.driver import ErrorCode
from xspress3.ioc.controller import Out, Rejected, RunController, RunSettings
from xspress3.ioc.enums import State, TsAction
from xspress3.ioc.filewriter import CaptureTarget, FileCapture
from xspress3.ioc.options import IocOptions
from xspress3.vocabulary import TriggerMode
from xspress3.writers.wire import FrameBlock, SeriesStart

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

    async def plugins_erased(self):
        self.calls.append(("plugins_erased",))

    async def plugins_idle(self):
        self.calls.append(("plugins_idle",))

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
            task = asyncio.create_task(c.acquire(settings(frames=60, exposure=0.1)))
            while not pub.frames:
                await asyncio.sleep(0.01)
            t0 = asyncio.get_running_loop().time()
            await c.stop()
            end = await task
            return pub, end, asyncio.get_running_loop().time() - t0

    pub, end, took = run(body())
    assert end.outcome == "aborted" and 0 < end.frames_read < 60
    assert took < 2.0          # the whole run would take 6 s
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
    assert view.rois[(1, 2)].shape == (8, 5) and view.times.shape == (8,)
    # the newest frame's statistics are the time series' last point, value by value
    assert np.array_equal(view.rois[(1, 2)][-1], summary.rois[1, 2])
    assert (np.diff(view.times) > 0).all()
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


# ---- file capture ----------------------------------------------------------------------

def capture_target(directory, name="cap", number=0, **kw) -> CaptureTarget:
    base = dict(directory=str(directory), template="%s%s_%6.6d.h5", name=name, number=number,
                create_directory=False, auto_increment=True, compression="None")
    base.update(kw)
    return CaptureTarget(**base)


def test_capture_opens_with_the_run_and_closes_at_num_capture(xsp3, sim_library, tmp_path):
    async def body():
        async with controller(xsp3, sim_library) as (c, pub):
            c.files.num_capture = 10
            capture = asyncio.create_task(c.capture(capture_target(tmp_path, number=7)))
            while not c.files.capturing:
                await asyncio.sleep(0.005)
            await c.acquire(settings(frames=10))
            await asyncio.wait_for(capture, 10)
            return c, pub

    c, pub = run(body())
    path = tmp_path / "cap_000007.h5"
    assert path.exists() and not c.files.capturing and not c.files.writer.is_open
    assert pub.values[Out.FILE_NAME] == str(path)
    assert pub.values[Out.FILE_NUMBER] == 8
    assert pub.values[Out.FILE_COUNTS] == (10, 0)
    assert pub.values[Out.WRITE_STATUS] == (True, f"Capture complete: {path}")
    assert pub.index(("publish", Out.CAPTURING, True)) < pub.index(("publish", Out.FILE_WRITING, True))
    assert pub.calls.index(("publish", Out.CAPTURING, False)) > pub.index(("publish", Out.FILE_WRITING, True))


def test_capture_refuses_a_missing_directory_and_an_existing_file(xsp3, sim_library, tmp_path):
    async def body():
        async with controller(xsp3, sim_library) as (c, pub):
            with pytest.raises(Rejected, match="does not exist"):
                await c.capture(capture_target(tmp_path / "missing"))
            (tmp_path / "cap_000003.h5").write_bytes(b"")
            with pytest.raises(Rejected, match="already exists"):
                await c.capture(capture_target(tmp_path, number=3))
            return c, pub

    c, pub = run(body())
    assert not c.files.capturing
    assert pub.values[Out.WRITE_STATUS][0] is False


def test_capture_stop_during_a_run_keeps_the_run_going(xsp3, sim_library, tmp_path):
    async def body():
        async with controller(xsp3, sim_library) as (c, pub):
            c.files.num_capture = 0
            capture = asyncio.create_task(c.capture(capture_target(tmp_path)))
            while not c.files.capturing:
                await asyncio.sleep(0.005)
            task = asyncio.create_task(c.acquire(settings(frames=60, exposure=0.02)))
            while len(pub.frames) < 3:
                await asyncio.sleep(0.005)
            await c.stop_capture()
            await capture
            return await task, pub

    end, pub = run(body())
    assert end.outcome == "completed" and end.frames_read == 60
    written, dropped = pub.values[Out.FILE_COUNTS]
    assert 0 < written < 60 and dropped == 0


def _block(first: int, n: int = 4) -> FrameBlock:
    return FrameBlock(first_frame=first, spectra=np.ones((n, 1, 8), np.uint32),
                      scalers=np.ones((n, 1, 9), np.uint32), dtfactor=np.ones((n, 1)),
                      dtpercent=np.zeros((n, 1)))


def test_offers_racing_a_capture_close_never_fail(tmp_path):
    """The readout thread offers while Capture=0 closes the file: an offer must find
    the file open and be taken, or find it closed and be ignored, never reach a
    closed writer (which raises and would fail the run as "readout failed")."""
    start = SeriesStart(series_id="race", channels=1, bins=8, full_bins=8)

    async def body():
        pub = RecordingPublisher()
        loop = asyncio.get_running_loop()
        files = FileCapture(IocOptions(file_stall_timeout=5.0, file_queue_frames=16), pub,
                            lambda fn: loop.call_soon_threadsafe(lambda: loop.create_task(fn())))
        files.num_capture = 0
        files.start()
        errors: list = []
        offered = [0]
        try:
            for i in range(60):
                await files.arm(capture_target(tmp_path, number=i))
                await asyncio.to_thread(files.begin_series, start)
                stop = threading.Event()

                def offer_until_stopped():
                    try:
                        while not stop.is_set():
                            # False (no room yet) is back-pressure, not the race
                            if files.offer(_block(offered[0]), 0.01):
                                offered[0] += 4
                    except Exception as ex:   # the race: reported below
                        errors.append(ex)

                thread = threading.Thread(target=offer_until_stopped)
                thread.start()
                await asyncio.sleep(0.001 * (i % 3))
                await files.stop("Capture stopped")
                stop.set()
                thread.join()
                assert not errors, f"iteration {i}: {errors[0]!r}"
        finally:
            await asyncio.to_thread(files.close_now, "test over")
        return offered[0]

    assert run(body(), timeout=120) > 0


class StallingConsumer:
    """A consumer that never takes a block: every frame must be counted lost, once."""

    name = "slow sink"
    stall_timeout = 0.02

    def __init__(self):
        self.counted: dict = {}
        self.series: list = []

    def begin_series(self, start):
        self.series.append(("begin", start.series_id))
        self.counted = {}

    def offer(self, block, timeout=0.0):
        return False

    def count_lost(self, frames, reason):
        self.counted[reason] = self.counted.get(reason, 0) + frames

    def losses(self):
        return dict(self.counted)

    def end_series(self, final_state):
        self.series.append(("end", final_state))


def test_frames_a_consumer_refuses_are_counted_once_and_reported(xsp3, sim_library):
    sink = StallingConsumer()

    async def body():
        async with controller(xsp3, sim_library) as (c, pub):
            c.consumers.append(sink)
            end = await c.acquire(settings(frames=6, exposure=0.01))
            return end, pub

    end, pub = run(body())
    reason = "slow sink stalled for 0.02 s"
    assert sink.counted == {reason: 6}
    assert end.lost == {f"slow sink: {reason}": 6}
    assert pub.statuses[-1] == (f"Completed Acquisition (slow sink: {reason}: 6 frames)", State.IDLE)
    assert [kind for kind, _ in sink.series] == ["begin", "end"]


def test_a_hardware_triggered_run_waits_then_acquires(xsp3, sim_library):
    async def body():
        async with controller(xsp3, sim_library) as (c, pub):
            task = asyncio.create_task(c.acquire(settings(frames=4, mode=TriggerMode.TTL_BOTH)))
            while c.run is None or not c.run.armed.is_set():
                await asyncio.sleep(0.005)
            waiting = pub.state
            await asyncio.to_thread(xsp3.sim.trigger, 4)
            end = await task
            return pub, waiting, end

    pub, waiting, end = run(body())
    assert waiting == State.WAITING
    assert ("publish", Out.DETECTOR_STATE, State.ACQUIRE) in pub.calls
    assert end.outcome == "completed" and end.frames_read == 4
