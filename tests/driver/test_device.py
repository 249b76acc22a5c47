"""The Xspress3 class, driven through ctypes against the bundled simulator."""
from __future__ import annotations

import gc
import threading
import time
from pathlib import Path
from typing import Callable

import numpy as np
import pytest

from xspress3.driver import (
    FrameSource,
    ItfgTrigMode,
    Progress,
    Xspress3,
    _lib,
    compute,
    errors,
    sim_controls,
)
from xspress3.driver.constants import ErrorCode, ItfgGap, Scaler

TIMEOUT = 30.0  # generous: only stops a hung test
EXPOSURE = 0.001  # 80 000 ticks


def wait_for(condition: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + TIMEOUT
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.002)


def wait_idle(dev: Xspress3) -> None:
    wait_for(lambda: not dev.is_busy(), "the run to end")


def spectra(dev: Xspress3, n: int, first: int = 0) -> np.ndarray:
    return dev.read_spectra(np.zeros((n, dev.num_channels, dev.bins), np.uint32), first)


def scalers(dev: Xspress3, n: int, first: int = 0) -> np.ndarray:
    return dev.read_scalers(np.zeros((n, dev.num_channels, 9), np.uint32), first)


def burst(dev: Xspress3, n: int, exposure: float = EXPOSURE) -> None:
    dev.set_timing(FrameSource.INTERNAL)
    dev.setup_itfg(n, exposure)
    dev.clear(0, n)
    dev.start()
    wait_idle(dev)


# ---- opening, properties, closing ----


def test_properties(xsp3: Xspress3, sim_library: str) -> None:
    assert xsp3.simulated and xsp3.sim is not None
    assert xsp3.library_path == _lib.load(sim_library).path
    assert (xsp3.num_cards, xsp3.num_channels, xsp3.bins, xsp3.frames_memory) == (1, 4, 4096, 64)
    assert xsp3.generation(0) == 3 and xsp3.has_itfg(0)
    assert not xsp3.circular and not xsp3.closed
    assert "4 ch" in repr(xsp3)


def test_close_is_idempotent_and_later_calls_fail(sim_library: str) -> None:
    dev = Xspress3(library=sim_library, channels=2, frames_memory=4)
    path = dev._handle.path
    dev.close()
    dev.close()
    assert dev.closed and "closed" in repr(dev)
    with pytest.raises(errors.InvalidPathError):  # the SDK handle is really gone
        _lib.load(sim_library).xsp3_get_num_chan(path)
    for call in (dev.arm, dev.progress, lambda: dev.read_spectra(np.zeros((1, 1, 1), np.uint32), 0)):
        with pytest.raises(errors.DeviceClosedError, match="the Xspress3 system is closed"):
            call()
    with pytest.raises(errors.DeviceClosedError):
        dev.sim.trigger(1)  # type: ignore[union-attr]
    assert dev.num_channels == 2  # cached facts stay readable


def test_context_manager_and_garbage_collection_close(sim_library: str) -> None:
    lib = _lib.load(sim_library)
    with Xspress3(library=sim_library, channels=1, frames_memory=4) as dev:
        path = dev._handle.path
        assert lib.xsp3_get_num_chan(path) == 1
    with pytest.raises(errors.InvalidPathError):
        lib.xsp3_get_num_chan(path)
    dev = Xspress3(library=sim_library, channels=1, frames_memory=4)
    path = dev._handle.path
    del dev
    gc.collect()
    with pytest.raises(errors.InvalidPathError):
        lib.xsp3_get_num_chan(path)


def test_close_with_flag_form(sim_library: str) -> None:
    lib = _lib.load(sim_library)
    dev = Xspress3(library=sim_library, channels=1, frames_memory=4, close_takes_flag=True)
    path = dev._handle.path
    dev.close()
    with pytest.raises(errors.InvalidPathError):
        lib.xsp3_get_num_chan(path)


def test_close_flag_environment(monkeypatch: pytest.MonkeyPatch, sim_library: str) -> None:
    monkeypatch.setenv("XSPRESS3_CLOSE_TAKES_FLAG", "maybe")
    with pytest.raises(ValueError, match="XSPRESS3_CLOSE_TAKES_FLAG"):
        Xspress3(library=sim_library)
    monkeypatch.setenv("XSPRESS3_CLOSE_TAKES_FLAG", "yes")
    with Xspress3(library=sim_library, channels=1, frames_memory=4) as dev:
        assert dev._handle.close_takes_flag


def test_failed_connect_releases_the_handle(sim_library: str) -> None:
    controls = sim_controls(sim_library)
    lib = _lib.load(sim_library)
    controls.inject_fault("xsp3_format_run", ErrorCode.ERROR, after_calls=2)
    try:
        with pytest.raises(errors.GeneralError, match="xsp3_format_run"):
            Xspress3(library=sim_library, channels=4, frames_memory=4)
    finally:
        controls.clear_faults()
    # no system is left open: the lowest path is free again
    with pytest.raises(errors.InvalidPathError):
        lib.xsp3_get_num_chan(0)


def test_constructor_validates(sim_library: str) -> None:
    with pytest.raises(ValueError):
        Xspress3(library=sim_library, channels=0)


def test_sim_controls_need_no_open_system(sim_library: str) -> None:
    controls = sim_controls(sim_library)
    assert controls.version() >= 1
    controls.inject_fault("xsp3_config", ErrorCode.OUT_OF_MEMORY)
    try:
        with pytest.raises(errors.OutOfMemoryError):
            Xspress3(library=sim_library)
    finally:
        controls.clear_faults()
    with pytest.raises(errors.GeneralError, match="unknown function"):
        controls.inject_fault("xsp3_not_a_function", -1)


# ---- configuration ----


def test_windows_and_threshold(xsp3: Xspress3) -> None:
    xsp3.set_window(1, 0, 100, 200)
    xsp3.set_window(1, 1, 300, 4000)
    assert xsp3.get_window(1, 0) == (100, 200)
    assert xsp3.get_window(1, 1) == (300, 4000)
    assert xsp3.get_window(0, 0) == (0, 4095)
    xsp3.set_good_threshold(2, 17)
    assert xsp3.get_good_threshold(2) == 17
    assert xsp3.get_good_threshold(3) == 0
    with pytest.raises(errors.RangeCheckError):
        xsp3.set_window(0, 2, 0, 10)


def test_settings_round_trip(xsp3: Xspress3, tmp_path: Path, sim_library: str) -> None:
    xsp3.set_window(0, 0, 11, 22)
    xsp3.set_good_threshold(3, 9)
    xsp3.save_settings(tmp_path)
    xsp3.set_window(0, 0, 1, 2)
    xsp3.set_good_threshold(3, 0)
    xsp3.restore_settings(tmp_path)
    assert xsp3.get_window(0, 0) == (11, 22) and xsp3.get_good_threshold(3) == 9
    with Xspress3(library=sim_library, channels=4, frames_memory=4, config_dir=tmp_path) as other:
        assert other.get_window(0, 0) == (11, 22)
    with pytest.raises(errors.CannotOpenFileError) as info:
        xsp3.restore_settings(tmp_path / "empty")
    assert isinstance(info.value, OSError)
    with pytest.raises(errors.FileWriteError):
        xsp3.save_settings(tmp_path / "missing")


def test_setup_itfg_validates(xsp3: Xspress3) -> None:
    assert xsp3.setup_itfg(3, 0.5) == 40_000_000
    assert xsp3.setup_itfg(3, 1e-8) == 1  # rounds 0.8 ticks up to one
    for frames, exposure in ((0, 1.0), (2**31, 1.0), (1, 0.0), (1, 4e-9), (1, 60.0), (1, float("nan"))):
        with pytest.raises(ValueError):
            xsp3.setup_itfg(frames, exposure)
    with pytest.raises(errors.RangeCheckError):  # longer than memory without circular mode
        xsp3.setup_itfg(65, 0.1)
    xsp3.set_run_flags(circular=True)
    assert xsp3.circular
    xsp3.setup_itfg(1000, 0.1, ItfgTrigMode.SOFTWARE, ItfgGap.GAP_25NS)


def test_set_timing_validates_and_slaves_other_cards(sim_library: str) -> None:
    with Xspress3(library=sim_library, cards=2, channels=8, frames_memory=4) as dev:
        assert dev.num_cards == 2
        with pytest.raises(ValueError, match="debounce"):
            dev.set_timing(FrameSource.TTL_BOTH, debounce=256)
        with pytest.raises(ValueError):
            dev.set_timing(9)  # type: ignore[arg-type]
        # the second glob_timeA call (card 1) is the one that fails: both cards are written
        assert dev.sim is not None
        dev.sim.inject_fault("xsp3_set_glob_timeA", ErrorCode.ILLEGAL_CARD, after_calls=1)
        with pytest.raises(errors.IllegalCardError):
            dev.set_timing(FrameSource.TTL_BOTH, invert_f0=True, invert_veto=True, debounce=3)
        dev.sim.clear_faults()
        dev.set_timing(FrameSource.TTL_BOTH, invert_f0=True, invert_veto=True, debounce=3)


# ---- frame sources: each yields exactly the requested frames ----


def _assert_exact(dev: Xspress3, n: int) -> None:
    wait_idle(dev)
    assert dev.progress() == Progress(n, False, False)
    sc = scalers(dev, n + 1)
    assert np.all(sc[:n, :, Scaler.TIME] > 0)
    assert not sc[n].any()  # nothing beyond the run


def test_internal_burst(xsp3: Xspress3) -> None:
    burst(xsp3, 5)
    _assert_exact(xsp3, 5)
    assert np.all(scalers(xsp3, 5)[:, :, Scaler.TIME] == 80_000)


def test_software_source(xsp3: Xspress3) -> None:
    xsp3.set_timing(FrameSource.SOFTWARE)
    xsp3.setup_itfg(4, EXPOSURE)
    xsp3.clear(0, 5)
    xsp3.arm()
    for i in range(4):
        assert xsp3.progress().frames == i
        xsp3.continue_()
    xsp3.continue_()  # beyond the run: ignored
    _assert_exact(xsp3, 4)


@pytest.mark.parametrize("source", [FrameSource.IDC, FrameSource.TTL_BOTH, FrameSource.LVDS_BOTH])
def test_trigger_sources(xsp3: Xspress3, source: FrameSource) -> None:
    xsp3.set_timing(source)
    xsp3.setup_itfg(6, EXPOSURE)
    xsp3.clear(0, 7)
    xsp3.arm()
    assert xsp3.sim is not None
    xsp3.sim.trigger(2)
    assert xsp3.progress().frames == 2
    xsp3.sim.trigger(10)  # more pulses than frames left
    _assert_exact(xsp3, 6)


@pytest.mark.parametrize("source", [FrameSource.TTL_VETO_ONLY, FrameSource.LVDS_VETO_ONLY])
def test_veto_gate_sources(xsp3: Xspress3, source: FrameSource) -> None:
    xsp3.set_timing(source)
    xsp3.setup_itfg(3, EXPOSURE)
    xsp3.clear(0, 4)
    xsp3.arm()
    assert xsp3.sim is not None
    for i in range(3):
        xsp3.sim.gate(True)
        assert xsp3.progress().frames == i
        xsp3.sim.gate(False)
    _assert_exact(xsp3, 3)


def test_internal_software_trigger(xsp3: Xspress3) -> None:
    xsp3.set_timing(FrameSource.INTERNAL)
    xsp3.setup_itfg(3, EXPOSURE, ItfgTrigMode.SOFTWARE)
    xsp3.clear(0, 4)
    xsp3.arm()
    for i in range(3):
        xsp3.continue_()
        wait_for(lambda: xsp3.progress().frames == i + 1, f"frame {i + 1}")
    _assert_exact(xsp3, 3)
    assert np.all(scalers(xsp3, 3)[:, :, Scaler.TIME] == 80_000)


def test_internal_hardware_trigger(xsp3: Xspress3) -> None:
    xsp3.set_timing(FrameSource.INTERNAL)
    xsp3.setup_itfg(3, EXPOSURE, ItfgTrigMode.HARDWARE)
    xsp3.clear(0, 4)
    xsp3.arm()
    assert xsp3.sim is not None
    for i in range(3):
        xsp3.sim.trigger(1)
        wait_for(lambda: xsp3.progress().frames == i + 1, f"frame {i + 1}")
    _assert_exact(xsp3, 3)


def test_pause_continue_stop(xsp3: Xspress3) -> None:
    xsp3.set_timing(FrameSource.INTERNAL)
    xsp3.setup_itfg(60, 10.0)  # ten minutes: it can only end by stop
    xsp3.start()
    assert xsp3.is_busy()
    xsp3.pause()
    xsp3.continue_()
    xsp3.stop()
    assert not xsp3.is_busy()
    assert xsp3.progress().frames < 60


# ---- read-out ----


@pytest.fixture
def acquired(xsp3: Xspress3) -> Xspress3:
    """Five internally timed frames in memory, with windows and a threshold set."""
    xsp3.set_window(-1, 0, 630, 650)
    xsp3.set_window(2, 1, 790, 820)
    xsp3.set_good_threshold(1, 200)
    burst(xsp3, 5, exposure=0.002)
    return xsp3


def test_subranges_equal_slices_of_full_read(acquired: Xspress3) -> None:
    full = spectra(acquired, 5)
    assert full.sum() > 0
    part = acquired.read_spectra(np.zeros((3, 2, 100), np.uint32), 1, first_bin=600, first_channel=2)
    np.testing.assert_array_equal(part, full[1:4, 2:4, 600:700])
    one = acquired.read_spectra(np.zeros((1, 1, 4096), np.uint32), 4, first_channel=3)
    np.testing.assert_array_equal(one[0, 0], full[4, 3])
    sc = scalers(acquired, 5)
    sub = acquired.read_scalers(np.zeros((2, 3, 9), np.uint32), 3, first_channel=1)
    np.testing.assert_array_equal(sub, sc[3:5, 1:4])


def test_reads_are_repeatable(acquired: Xspress3) -> None:
    """Two reads of the same frames give the same data, and it is real data: each
    read overwrites every element of a buffer filled with a different sentinel,
    every frame of every channel has counts, and the frames are not all alike."""
    shape = (5, acquired.num_channels, acquired.bins)
    first = acquired.read_spectra(np.full(shape, 0xDEADBEEF, np.uint32), 0)
    second = acquired.read_spectra(np.full(shape, 0x12345678, np.uint32), 0)
    np.testing.assert_array_equal(first, second)
    assert not np.isin(first, (0xDEADBEEF, 0x12345678)).any()
    assert (first.sum(axis=2) > 0).all()
    assert any(not np.array_equal(first[0], first[i]) for i in range(1, 5))
    sc_shape = (5, acquired.num_channels, 9)
    sc1 = acquired.read_scalers(np.full(sc_shape, 0xDEADBEEF, np.uint32), 0)
    sc2 = acquired.read_scalers(np.full(sc_shape, 0x12345678, np.uint32), 0)
    np.testing.assert_array_equal(sc1, sc2)
    np.testing.assert_array_equal(sc1[..., Scaler.ALL_GOOD], first.sum(axis=2))


def test_scalers_consistent_with_spectra(acquired: Xspress3) -> None:
    hist = spectra(acquired, 5).astype(np.int64)
    sc = scalers(acquired, 5).astype(np.int64)
    np.testing.assert_array_equal(sc[..., Scaler.ALL_GOOD], hist.sum(axis=2))
    np.testing.assert_array_equal(sc[..., Scaler.IN_WINDOW0], hist[:, :, 630:651].sum(axis=2))
    np.testing.assert_array_equal(sc[:, 2, Scaler.IN_WINDOW1], hist[:, 2, 790:821].sum(axis=1))
    assert not hist[:, 1, :200].any()  # below the good threshold of channel 1
    assert np.all(sc[..., Scaler.TIME] == 160_000)
    assert np.all(sc[..., Scaler.ALL_EVENT] >= sc[..., Scaler.ALL_GOOD])


def test_read_dtc(acquired: Xspress3) -> None:
    assert acquired.has_dtc_read
    hist = spectra(acquired, 5)
    factor_expected, _ = compute(scalers(acquired, 5))
    corrected = np.zeros((5, 4, 4096))
    factors = np.zeros((5, 4))
    acquired.read_dtc(corrected, factors, 0)
    np.testing.assert_allclose(factors, factor_expected, rtol=1e-12)
    np.testing.assert_allclose(corrected, hist * factor_expected[:, :, None], rtol=1e-12)
    part = acquired.read_dtc(np.zeros((2, 1, 50)), None, 3, first_bin=620, first_channel=1)
    np.testing.assert_allclose(part, corrected[3:5, 1:2, 620:670], rtol=1e-12)
    with pytest.raises(ValueError, match="factor_out"):
        acquired.read_dtc(np.zeros((2, 1, 50)), np.zeros((2, 2)), 0)


def test_clear_zeroes_frames(acquired: Xspress3) -> None:
    acquired.clear(1, 2)
    sc = scalers(acquired, 5)
    assert not sc[1:3].any() and sc[0].any() and sc[3].any()
    with pytest.raises(ValueError):
        acquired.clear(60, 10)


@pytest.mark.parametrize(
    "out, match",
    [
        (np.zeros((2, 4, 4096), np.int32), "dtype uint32"),
        (np.zeros((2, 4, 4096), np.float64), "dtype uint32"),
        (np.zeros((4, 4096), np.uint32), "3 dimensions"),
        (np.zeros((2, 4, 8192), np.uint32)[:, :, ::2], "C-contiguous"),
        (np.zeros((4096, 4, 2), np.uint32).T, "C-contiguous"),
        ([[[0]]], "numpy array"),
        (np.zeros((2, 5, 16), np.uint32), "channels"),
        (np.zeros((2, 4, 4097), np.uint32), "bins"),
        (np.zeros((65, 1, 1), np.uint32), "frames"),
    ],
)
def test_bad_spectra_buffers(xsp3: Xspress3, out: object, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        xsp3.read_spectra(out, 0)  # type: ignore[arg-type]


def test_bad_ranges_and_buffers(xsp3: Xspress3) -> None:
    readonly = np.zeros((1, 1, 16), np.uint32)
    readonly.flags.writeable = False
    with pytest.raises(ValueError, match="writeable"):
        xsp3.read_spectra(readonly, 0)
    with pytest.raises(ValueError, match="bins"):
        xsp3.read_spectra(np.zeros((1, 1, 16), np.uint32), 0, first_bin=4090)
    with pytest.raises(ValueError, match="channels"):
        xsp3.read_spectra(np.zeros((1, 2, 16), np.uint32), 0, first_channel=3)
    with pytest.raises(ValueError, match="first_frame"):
        xsp3.read_spectra(np.zeros((1, 1, 16), np.uint32), -1)
    with pytest.raises(ValueError, match="9 scalers"):
        xsp3.read_scalers(np.zeros((1, 4, 8), np.uint32), 0)
    with pytest.raises(ValueError, match="dtype uint32"):
        xsp3.read_scalers(np.zeros((1, 4, 9), np.uint64), 0)
    with pytest.raises(ValueError, match="dtype float64"):
        xsp3.read_dtc(np.zeros((1, 4, 16), np.float32), None, 0)
    with pytest.raises(ValueError, match="shape"):
        xsp3.dtc_factor(np.zeros(8, np.uint32), 0)
    empty = np.zeros((0, 4, 16), np.uint32)
    assert xsp3.read_spectra(empty, 0) is empty


# ---- circular buffer ----


def test_overrun_when_not_acked(sim_library: str) -> None:
    with Xspress3(library=sim_library, channels=2, frames_memory=8) as dev:
        dev.set_run_flags(circular=True)
        dev.set_timing(FrameSource.IDC)
        dev.setup_itfg(20, EXPOSURE)
        dev.arm()
        assert dev.sim is not None
        dev.sim.trigger(8)
        assert dev.progress() == Progress(8, False, False)
        dev.sim.trigger(1)  # slot 0 still holds unacknowledged frame 0
        wait_idle(dev)
        assert dev.progress() == Progress(8, True, False)


def _run_triggered(dev: Xspress3, total: int, chunks: list[int], circular: bool) -> tuple[np.ndarray, np.ndarray]:
    """Trigger ``total`` IDC frames in chunks, reading (and acking) after each chunk."""
    assert dev.sim is not None
    dev.sim.set_seed(1234)
    dev.sim.set_rate(1e6)  # ~1000 events per frame: no two frames alike
    dev.set_run_flags(circular=circular)
    dev.set_timing(FrameSource.IDC)
    dev.setup_itfg(total, EXPOSURE)
    dev.clear(0, min(total, dev.frames_memory))
    dev.arm()
    hist = np.zeros((total, dev.num_channels, 64), np.uint32)
    sc = np.zeros((total, dev.num_channels, 9), np.uint32)
    done = 0
    for n in chunks:
        dev.sim.trigger(n)
        progress = dev.progress()
        assert not progress.overrun and progress.frames == done + n
        dev.read_spectra(hist[done : done + n], done, first_bin=600)
        dev.read_scalers(sc[done : done + n], done)
        if circular:
            dev.ack(done, n)
        done += n
    wait_idle(dev)
    assert dev.progress() == Progress(total, False, False)
    return hist, sc


def test_long_circular_run_with_acks_delivers_every_frame(sim_library: str) -> None:
    chunks = [5, 16, 3, 11, 7, 16, 1, 9, 13, 16, 2, 15, 6] * 3  # crosses the wrap often
    total = sum(chunks)
    with Xspress3(library=sim_library, channels=2, frames_memory=total) as flat:
        ref_hist, ref_sc = _run_triggered(flat, total, chunks, circular=False)
    with Xspress3(library=sim_library, channels=2, frames_memory=16) as ring:
        hist, sc = _run_triggered(ring, total, chunks, circular=True)
    assert total > 10 * 16
    assert np.all(sc[:, :, Scaler.TIME] == 80_000)
    assert len({h.tobytes() + s.tobytes() for h, s in zip(hist, sc)}) == total  # every frame is distinct
    np.testing.assert_array_equal(sc, ref_sc)
    np.testing.assert_array_equal(hist, ref_hist)


def test_circular_read_splits_at_the_wrap(sim_library: str) -> None:
    with Xspress3(library=sim_library, channels=1, frames_memory=8) as dev:
        _run_triggered(dev, 6, [6], circular=True)
        # absolute frames 6..9 live in slots 6, 7, 0, 1
        dev.set_run_flags(circular=True)
        block = scalers(dev, 4, first=6)
        slots = dev.read_scalers(np.zeros((8, 1, 9), np.uint32), 0)
        np.testing.assert_array_equal(block, slots[[6, 7, 0, 1]])
        with pytest.raises(ValueError, match="circular buffer of 8"):
            scalers(dev, 9)


# ---- concurrency ----


def test_concurrent_readout_and_control(xsp3: Xspress3) -> None:
    """A reader loops over blocks while a controller runs, stops and reconfigures.

    Each thread also makes calls that fail, and checks it gets its own SDK
    error text: the lock keeps the SDK's global last-error message paired
    with the call that set it.
    """
    assert xsp3.sim is not None
    xsp3.set_timing(FrameSource.INTERNAL)
    stop = threading.Event()
    problems: list[BaseException] = []
    reads = [0]

    def reader() -> None:
        out = np.zeros((8, 4, 4096), np.uint32)
        sc = np.zeros((8, 4, 9), np.uint32)
        try:
            while not stop.is_set():
                xsp3.read_spectra(out, 0)
                xsp3.read_scalers(sc, 0)
                xsp3.progress()
                reads[0] += 1
                try:
                    xsp3.get_window(7, 0)
                except errors.RangeCheckError as exc:
                    assert exc.function == "xsp3_get_window" and "channel 7" in exc.sdk_message
                else:
                    raise AssertionError("get_window(7) should fail")
        except BaseException as exc:  # reported to the main thread
            problems.append(exc)

    def controller() -> None:
        try:
            for i in range(200):
                xsp3.stop()
                xsp3.set_window(i % 4, i % 2, i, i + 100)
                xsp3.setup_itfg(8, 0.0005)
                xsp3.clear(0, 8)
                xsp3.start()
                try:
                    xsp3.set_good_threshold(0, 5000)
                except errors.RangeCheckError as exc:
                    assert exc.function == "xsp3_set_good_thres" and "threshold 5000" in exc.sdk_message
                else:
                    raise AssertionError("threshold 5000 should fail")
            xsp3.stop()
        except BaseException as exc:
            problems.append(exc)

    threads = [threading.Thread(target=reader), threading.Thread(target=controller)]
    threads[0].start()
    threads[1].start()
    threads[1].join(TIMEOUT)
    stop.set()
    threads[0].join(TIMEOUT)
    assert not any(t.is_alive() for t in threads)
    assert problems == []
    assert reads[0] > 0
    assert xsp3.get_window(3, 1) == (199, 299)
    # the system is still sane: a fresh burst reads back consistently
    burst(xsp3, 4)
    hist = spectra(xsp3, 4).astype(np.int64)
    np.testing.assert_array_equal(scalers(xsp3, 4)[..., Scaler.ALL_GOOD], hist.sum(axis=2))


def test_error_text_stays_with_its_call(xsp3: Xspress3) -> None:
    """Two threads failing different calls each get their own SDK text.

    Without the library lock the SDK's global last-error message is often
    read after the other thread has overwritten it.
    """
    mismatches: list[str] = []

    def hammer(call: Callable[[], None], expected: str) -> None:
        for _ in range(3000):
            try:
                call()
            except errors.RangeCheckError as exc:
                if expected not in exc.sdk_message:
                    mismatches.append(exc.sdk_message)
            else:
                mismatches.append("call did not fail")

    threads = [
        threading.Thread(target=hammer, args=(lambda: xsp3.get_window(7, 0), "channel 7")),
        threading.Thread(target=hammer, args=(lambda: xsp3.set_good_threshold(0, 5000), "threshold 5000")),
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(TIMEOUT)
    assert not any(t.is_alive() for t in threads)
    assert mismatches == []


def test_concurrent_close(sim_library: str) -> None:
    dev = Xspress3(library=sim_library, channels=1, frames_memory=4)
    threads = [threading.Thread(target=dev.close) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(TIMEOUT)
    assert dev.closed
