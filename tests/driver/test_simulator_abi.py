"""Behaviour of the C simulator (driver/sim/xsp3sim.c), called directly with ctypes.

These tests load the built shared library without the Python binding, so a
fault here is the simulator's and not the binding's. Prototypes are declared
locally on purpose: they test the library against the contract in the header.
"""
from __future__ import annotations

import ctypes
import importlib.util
import threading
import time
from ctypes import POINTER, c_char_p, c_double, c_int, c_int32, c_int64, c_uint, c_uint32, c_uint64, c_void_p
from pathlib import Path
from typing import Callable, Iterator

import numpy as np
import pytest

OK = 0
ERROR = -1
INVALID_PATH = -2
ILLEGAL_CARD = -3
RANGE_CHECK = -6
ERR_DEV_NOT_FOUND = -9
CANNOT_OPEN_FILE = -10
FILE_READ_FAILED = -11
FILE_WRITE_FAILED = -12

CIRCULAR = 0x100
SCALERS_HIST = 0x04 | 0x08

SRC_SOFTWARE, SRC_INTERNAL, SRC_SWENB, SRC_IDC = 0, 1, 2, 3
SRC_TTL_VETO, SRC_TTL_BOTH, SRC_LVDS_VETO, SRC_LVDS_BOTH = 4, 5, 6, 7
BURST, SOFTWARE, HARDWARE, SOFTWARE_ONLY_FIRST, HARDWARE_ONLY_FIRST = 0, 1, 2, 5, 6
GAP_25NS = 0

TIME, RESET_TICKS, RESET_COUNT, ALL_EVENT, ALL_GOOD, WIN0, WIN1, PILEUP, TOTAL_TICKS = range(9)
FLAG_OVERRUN = 0x1
EVENT_WIDTH = 6

BINS = 4096
NCHAN = 4
DEADLINE_S = 20.0  # generous: only prevents hangs on a loaded machine


def _load() -> ctypes.CDLL:
    spec = importlib.util.find_spec("xspress3.driver._xsp3sim")
    assert spec is not None and spec.origin, "simulator not built: pip install -e ."
    lib = ctypes.CDLL(spec.origin)
    u = c_uint
    protos: dict[str, tuple[type | None, list]] = {
        "xsp3_config": (c_int, [c_int, c_int, c_char_p, c_int, c_char_p, c_int, c_int, c_char_p, c_int, c_int]),
        "xsp3_close": (c_int, [c_int]),
        "xsp3_get_error_message": (c_char_p, []),
        "xsp3_get_num_chan": (c_int, [c_int]),
        "xsp3_get_num_cards": (c_int, [c_int]),
        "xsp3_get_bins_per_mca": (c_int, [c_int]),
        "xsp3_get_num_tf": (c_int, [c_int]),
        "xsp3_get_generation": (c_int, [c_int, c_int]),
        "xsp3_has_itfg": (c_int, [c_int, c_int]),
        "xsp3_clocks_setup": (c_int, [c_int, c_int, c_int, c_int, c_int]),
        "xsp3_restore_settings": (c_int, [c_int, c_char_p, c_int]),
        "xsp3_save_settings": (c_int, [c_int, c_char_p]),
        "xsp3_format_run": (c_int, [c_int] * 8),
        "xsp3_set_run_flags": (c_int, [c_int, c_int]),
        "xsp3_set_glob_timeA": (c_int, [c_int, c_int, c_uint32]),
        "xsp3_set_glob_timeFixed": (c_int, [c_int, c_int, c_uint32]),
        "xsp3_itfg_setup": (c_int, [c_int, c_int, c_int, c_uint32, c_int, c_int]),
        "xsp3_itfg_setup2": (c_int, [c_int, c_int, c_int, c_uint32, c_int, c_int, c_int, c_int, c_int]),
        "xsp3_itfg_start": (c_int, [c_int, c_int]),
        "xsp3_itfg_stop": (c_int, [c_int, c_int]),
        "xsp3_histogram_clear": (c_int, [c_int] * 5),
        "xsp3_histogram_arm": (c_int, [c_int, c_int]),
        "xsp3_histogram_start": (c_int, [c_int, c_int]),
        "xsp3_histogram_continue": (c_int, [c_int, c_int]),
        "xsp3_histogram_pause": (c_int, [c_int, c_int]),
        "xsp3_histogram_stop": (c_int, [c_int, c_int]),
        "xsp3_histogram_is_any_busy": (c_int, [c_int]),
        "xsp3_scaler_check_progress": (c_int, [c_int]),
        "xsp3_scaler_check_progress_details": (c_int64, [c_int, POINTER(c_int32), c_int, POINTER(c_int64)]),
        "xsp3_histogram_read4d": (c_int, [c_int, c_void_p, u, u, u, u, u, u, u, u]),
        "xsp3_scaler_read": (c_int, [c_int, c_void_p, u, u, u, u, u, u]),
        "xsp3_hist_dtc_read4d": (c_int, [c_int, c_void_p, c_void_p, u, u, u, u, u, u, u, u]),
        "xsp3_histogram_circ_ack": (c_int, [c_int, c_int, u, u, u]),
        "xsp3_set_window": (c_int, [c_int] * 5),
        "xsp3_get_window": (c_int, [c_int, c_int, c_int, POINTER(c_uint32), POINTER(c_uint32)]),
        "xsp3_set_good_thres": (c_int, [c_int, c_int, c_uint32]),
        "xsp3_get_good_thres": (c_int, [c_int, c_int, POINTER(c_uint32)]),
        "xsp3_get_dtcfactor": (c_int, [c_int, c_void_p, POINTER(c_double), POINTER(c_double), c_int]),
        "xsp3sim_trigger": (c_int, [c_int, c_int, c_int]),
        "xsp3sim_gate": (c_int, [c_int, c_int, c_int]),
        "xsp3sim_set_rate": (c_int, [c_int, c_int, c_double]),
        "xsp3sim_set_seed": (c_int, [c_int, c_uint64]),
        "xsp3sim_inject_fault": (c_int, [c_char_p, c_int, c_int]),
        "xsp3sim_clear_faults": (c_int, []),
        "xsp3sim_refuse_address": (c_int, [c_char_p]),
        "xsp3sim_version": (c_int, []),
    }
    for name, (restype, argtypes) in protos.items():
        fn = getattr(lib, name)
        fn.restype = restype
        fn.argtypes = argtypes
    return lib


LIB = _load()


def message() -> str:
    return LIB.xsp3_get_error_message().decode()


def ok(rc: int) -> int:
    """Asserts success and passes the value through, showing the simulator's text if not."""
    assert rc >= 0, f"rc={rc}: {message()}"
    return rc


def config(ncards: int = 1, num_tf: int = 64, nchan: int = NCHAN, address: bytes = b"192.168.0.1") -> int:
    return LIB.xsp3_config(ncards, num_tf, address, -1, None, nchan, 1, None, 0, 0)


@pytest.fixture(autouse=True)
def _clean_globals() -> Iterator[None]:
    LIB.xsp3sim_clear_faults()
    LIB.xsp3sim_refuse_address(None)
    yield
    LIB.xsp3sim_clear_faults()
    LIB.xsp3sim_refuse_address(None)


@pytest.fixture
def make_system() -> Iterator[Callable[..., int]]:
    opened: list[int] = []

    def make(**kwargs: int) -> int:
        path = ok(config(**kwargs))
        opened.append(path)
        return path

    yield make
    for path in opened:
        LIB.xsp3_close(path)


@pytest.fixture
def sysp(make_system: Callable[..., int]) -> int:
    return make_system()


def wait_idle(path: int) -> None:
    deadline = time.monotonic() + DEADLINE_S
    while ok(LIB.xsp3_histogram_is_any_busy(path)):
        assert time.monotonic() < deadline, "run did not finish"
        time.sleep(0.002)


def wait_frames(path: int, n: int) -> None:
    deadline = time.monotonic() + DEADLINE_S
    while ok(LIB.xsp3_scaler_check_progress(path)) < n:
        assert time.monotonic() < deadline, f"only {LIB.xsp3_scaler_check_progress(path)} of {n} frames"
        time.sleep(0.002)


def read_hist(path: int, tf: int, num_tf: int, chan: int = 0, num_chan: int = NCHAN,
              eng: int = 0, num_eng: int = BINS) -> np.ndarray:
    out = np.full((num_tf, num_chan, num_eng), 0xDEADBEEF, dtype=np.uint32)
    ok(LIB.xsp3_histogram_read4d(path, out.ctypes.data, eng, 0, chan, tf, num_eng, 1, num_chan, num_tf))
    return out


def read_scalers(path: int, tf: int, num_tf: int, chan: int = 0, num_chan: int = NCHAN) -> np.ndarray:
    out = np.full((num_tf, num_chan, 9), 0xDEADBEEF, dtype=np.uint32)
    ok(LIB.xsp3_scaler_read(path, out.ctypes.data, 0, chan, tf, 9, num_chan, num_tf))
    return out


def progress_details(path: int) -> tuple[int, int, int]:
    flags = c_int32(-1)
    furthest = c_int64(-1)
    frames = LIB.xsp3_scaler_check_progress_details(path, ctypes.byref(flags), 0, ctypes.byref(furthest))
    return frames, flags.value, furthest.value


def setup_timing(path: int, source: int, frames: int, col_time: int, trig: int = BURST) -> None:
    ok(LIB.xsp3_set_glob_timeA(path, 0, source))
    ok(LIB.xsp3_itfg_setup(path, 0, frames, col_time, trig, GAP_25NS))


def acquire_ttl(path: int, frames: int, col_time: int = 80_000) -> None:
    """A run of `frames` frames completed by trigger pulses (no wall-clock dependence)."""
    setup_timing(path, SRC_TTL_BOTH, frames, col_time)
    ok(LIB.xsp3_histogram_arm(path, -1))
    ok(LIB.xsp3sim_trigger(path, 0, frames))
    assert LIB.xsp3_histogram_is_any_busy(path) == 0


# ----------------------------------------------------------------- lifecycle

def test_config_sizes_and_close() -> None:
    path = ok(config(ncards=2, num_tf=100, nchan=20))
    try:
        assert LIB.xsp3_get_num_chan(path) == 20
        assert LIB.xsp3_get_num_cards(path) == 2
        assert LIB.xsp3_get_bins_per_mca(path) == BINS
        assert LIB.xsp3_get_num_tf(path) == 100
        assert LIB.xsp3_get_generation(path, 1) == 3
        assert LIB.xsp3_has_itfg(path, 0) == 1
        assert LIB.xsp3_clocks_setup(path, -1, 1, 3, 0) == OK
        assert LIB.xsp3_clocks_setup(path, 2, 1, 3, 0) == ILLEGAL_CARD
        assert LIB.xsp3_get_generation(path, 2) == ILLEGAL_CARD
        assert LIB.xsp3_format_run(path, -1, 0, 0, 0, 0, 0, 10) == OK
        assert LIB.xsp3_get_bins_per_mca(path) == 1024
        assert LIB.xsp3_format_run(path, 0, 0, 0, 0, 0, 0, 13) == RANGE_CHECK
        assert LIB.xsp3_format_run(path, 0, 0, 0, 0, 0, 0, 0) == RANGE_CHECK
        assert LIB.xsp3sim_version() == 1
    finally:
        assert LIB.xsp3_close(path) == OK
    assert LIB.xsp3_get_num_chan(path) == INVALID_PATH
    assert LIB.xsp3_close(path) == INVALID_PATH
    assert "not open" in message()
    assert LIB.xsp3_histogram_start(99, -1) == INVALID_PATH
    assert LIB.xsp3_histogram_start(-1, -1) == INVALID_PATH


@pytest.mark.parametrize("ncards, num_tf, nchan", [(0, 10, 1), (17, 10, 4), (1, 0, 4), (1, 10, 0), (1, 10, 17)])
def test_config_rejects_bad_arguments(ncards: int, num_tf: int, nchan: int) -> None:
    assert config(ncards=ncards, num_tf=num_tf, nchan=nchan) == RANGE_CHECK
    assert message().startswith("xsp3_config: ")


def test_sixteen_systems_with_independent_state(make_system: Callable[..., int]) -> None:
    paths = [make_system(num_tf=4, nchan=1 + i % 4) for i in range(16)]
    assert len(set(paths)) == 16
    assert config() < 0
    assert [LIB.xsp3_get_num_chan(p) for p in paths] == [1 + i % 4 for i in range(16)]


def test_refused_address_names_the_address() -> None:
    ok(LIB.xsp3sim_refuse_address(b"10.9.8.7"))
    assert config(address=b"10.9.8.7") == ERR_DEV_NOT_FOUND
    assert "10.9.8.7" in message() and message().startswith("xsp3_config:")
    path = ok(config(address=b"10.9.8.6"))
    LIB.xsp3_close(path)
    ok(LIB.xsp3sim_refuse_address(b""))
    path = ok(config(address=b"10.9.8.7"))
    LIB.xsp3_close(path)


def test_card_and_null_checks(sysp: int) -> None:
    assert LIB.xsp3_histogram_arm(sysp, 1) == ILLEGAL_CARD
    assert LIB.xsp3_set_glob_timeA(sysp, 5, 1) == ILLEGAL_CARD
    assert LIB.xsp3_itfg_setup(sysp, -2, 4, 100, 0, 0) == ILLEGAL_CARD
    assert LIB.xsp3_histogram_read4d(sysp, None, 0, 0, 0, 0, 1, 1, 1, 1) == RANGE_CHECK
    assert LIB.xsp3_scaler_read(sysp, None, 0, 0, 0, 1, 1, 1) == RANGE_CHECK
    assert LIB.xsp3_get_window(sysp, 0, 0, None, None) == RANGE_CHECK
    assert LIB.xsp3_get_good_thres(sysp, 0, None) == RANGE_CHECK
    assert LIB.xsp3_get_dtcfactor(sysp, None, None, None, 0) == RANGE_CHECK
    assert LIB.xsp3_save_settings(sysp, None) == RANGE_CHECK
    assert LIB.xsp3_scaler_check_progress_details(sysp, None, 0, None) == 0


def test_itfg_validation(sysp: int) -> None:
    assert LIB.xsp3_itfg_setup(sysp, 0, 64, 0, BURST, 0) == RANGE_CHECK
    assert LIB.xsp3_itfg_setup(sysp, 0, 0, 100, BURST, 0) == RANGE_CHECK
    assert LIB.xsp3_itfg_setup(sysp, 0, 4, 100, 3, 0) == RANGE_CHECK
    assert LIB.xsp3_itfg_setup(sysp, 0, 4, 100, BURST, 4) == RANGE_CHECK
    assert LIB.xsp3_itfg_setup(sysp, 0, 65, 100, BURST, 0) == RANGE_CHECK
    assert "exceeds frame memory" in message()
    ok(LIB.xsp3_set_run_flags(sysp, SCALERS_HIST | CIRCULAR))
    ok(LIB.xsp3_itfg_setup(sysp, 0, 1_000_000, 100, BURST, 0))
    ok(LIB.xsp3_itfg_setup2(sysp, 0, 4, 100, SOFTWARE, 3, 1, 0, 0))
    word = SRC_TTL_BOTH | (1 << 3) | (1 << 4) | (5 << 16)
    ok(LIB.xsp3_set_glob_timeA(sysp, -1, word))
    ok(LIB.xsp3_set_glob_timeFixed(sysp, 0, 0x1234))


# ----------------------------------------------------------- frame sources

def test_internal_burst_short_frames(make_system: Callable[..., int]) -> None:
    path = make_system(num_tf=2000)
    setup_timing(path, SRC_INTERNAL, 2000, 1600)  # 20 us frames
    ok(LIB.xsp3_histogram_start(path, -1))
    wait_idle(path)
    assert LIB.xsp3_scaler_check_progress(path) == 2000
    sc = read_scalers(path, 0, 2000)
    assert (sc[:, :, TIME] == 1600).all()
    assert (sc[:, :, TOTAL_TICKS] == 1600).all()


def test_internal_burst_progresses_without_polling(sysp: int) -> None:
    setup_timing(sysp, SRC_INTERNAL, 20, 80_000)  # 1 ms frames
    ok(LIB.xsp3_histogram_arm(sysp, -1))
    assert LIB.xsp3_histogram_is_any_busy(sysp) == 1
    time.sleep(0.05)
    assert LIB.xsp3_scaler_check_progress(sysp) == 0, "arm alone must not start internal frames"
    ok(LIB.xsp3_histogram_start(sysp, -1))
    deadline = time.monotonic() + DEADLINE_S
    while progress_details(sysp)[0] < 20:  # details path polled only, no is_busy calls
        assert time.monotonic() < deadline
        time.sleep(0.01)
    assert LIB.xsp3_histogram_is_any_busy(sysp) == 0


def test_stop_ends_a_run_and_keeps_frames(sysp: int) -> None:
    setup_timing(sysp, SRC_INTERNAL, 64, 8_000_000)  # 0.1 s frames
    ok(LIB.xsp3_histogram_start(sysp, -1))
    wait_frames(sysp, 1)
    ok(LIB.xsp3_histogram_stop(sysp, -1))
    assert LIB.xsp3_histogram_is_any_busy(sysp) == 0
    done = LIB.xsp3_scaler_check_progress(sysp)
    assert 1 <= done < 64
    time.sleep(0.15)
    assert LIB.xsp3_scaler_check_progress(sysp) == done
    assert (read_scalers(sysp, 0, done)[:, :, TIME] == 8_000_000).all()
    assert (read_hist(sysp, done, 64 - done) == 0).all()


def test_software_source_continue(sysp: int) -> None:
    ok(LIB.xsp3_set_glob_timeA(sysp, 0, SRC_SOFTWARE))
    ok(LIB.xsp3_itfg_setup(sysp, 0, 3, 1000, BURST, GAP_25NS))  # sets the run length
    ok(LIB.xsp3_histogram_start(sysp, -1))
    for i in range(3):
        time.sleep(0.01)
        assert LIB.xsp3_scaler_check_progress(sysp) == i
        ok(LIB.xsp3_histogram_continue(sysp, 0))
    assert LIB.xsp3_scaler_check_progress(sysp) == 3
    assert LIB.xsp3_histogram_is_any_busy(sysp) == 0
    ok(LIB.xsp3_histogram_continue(sysp, 0))  # beyond the run: ignored
    assert LIB.xsp3_scaler_check_progress(sysp) == 3
    live = read_scalers(sysp, 0, 3)[:, 0, TIME]
    assert (live >= 0.01 * 80e6 * 0.9).all(), live  # wall time between continues, at least the sleep
    assert LIB.xsp3sim_trigger(sysp, 0, 1) == ERROR
    assert "xsp3sim_trigger" in message()


@pytest.mark.parametrize("trig", [SOFTWARE, SOFTWARE_ONLY_FIRST])
def test_internal_software_continue(sysp: int, trig: int) -> None:
    setup_timing(sysp, SRC_INTERNAL, 5, 800, trig)
    ok(LIB.xsp3_histogram_start(sysp, -1))
    time.sleep(0.02)
    assert LIB.xsp3_scaler_check_progress(sysp) == 0
    n_continue = 5 if trig == SOFTWARE else 1
    for _ in range(n_continue):
        ok(LIB.xsp3_histogram_continue(sysp, 0))
    wait_idle(sysp)
    assert LIB.xsp3_scaler_check_progress(sysp) == 5
    assert (read_scalers(sysp, 0, 5)[:, :, TIME] == 800).all()


def test_internal_software_pause_lets_current_frame_finish(sysp: int) -> None:
    setup_timing(sysp, SRC_INTERNAL, 10, 8_000_000, SOFTWARE)  # 0.1 s frames
    ok(LIB.xsp3_histogram_arm(sysp, -1))
    for _ in range(3):  # three frames queued back to back
        ok(LIB.xsp3_histogram_continue(sysp, 0))
    ok(LIB.xsp3_histogram_pause(sysp, 0))  # drops the queued frames, not the running one
    wait_frames(sysp, 1)
    time.sleep(0.3)
    assert LIB.xsp3_scaler_check_progress(sysp) in (1, 2)  # 2 only if pause came >0.1 s late
    assert LIB.xsp3_histogram_is_any_busy(sysp) == 1


@pytest.mark.parametrize("trig", [HARDWARE, HARDWARE_ONLY_FIRST])
def test_internal_hardware_trigger(sysp: int, trig: int) -> None:
    setup_timing(sysp, SRC_INTERNAL, 6, 800, trig)
    ok(LIB.xsp3_histogram_start(sysp, -1))
    time.sleep(0.02)
    assert LIB.xsp3_scaler_check_progress(sysp) == 0
    if trig == HARDWARE:
        ok(LIB.xsp3sim_trigger(sysp, 0, 4))
        wait_frames(sysp, 4)
        assert LIB.xsp3_histogram_is_any_busy(sysp) == 1
        ok(LIB.xsp3sim_trigger(sysp, 0, 5))  # only 2 more fit in the run
    else:
        ok(LIB.xsp3sim_trigger(sysp, 0, 1))
    wait_idle(sysp)
    assert LIB.xsp3_scaler_check_progress(sysp) == 6
    assert LIB.xsp3sim_gate(sysp, 0, 1) == ERROR


@pytest.mark.parametrize("source", [SRC_IDC, SRC_TTL_BOTH, SRC_LVDS_BOTH, SRC_SWENB])
def test_external_trigger_sources(sysp: int, source: int) -> None:
    setup_timing(sysp, source, 7, 4000)
    ok(LIB.xsp3sim_trigger(sysp, 0, 2))  # not armed: ignored
    ok(LIB.xsp3_histogram_arm(sysp, -1))
    assert LIB.xsp3_scaler_check_progress(sysp) == 0
    ok(LIB.xsp3sim_trigger(sysp, 0, 3))
    assert LIB.xsp3_scaler_check_progress(sysp) == 3
    ok(LIB.xsp3sim_trigger(sysp, -1, 10))
    assert LIB.xsp3_scaler_check_progress(sysp) == 7
    assert LIB.xsp3_histogram_is_any_busy(sysp) == 0
    assert (read_scalers(sysp, 0, 7)[:, :, TIME] == 4000).all()
    assert LIB.xsp3sim_gate(sysp, 0, 1) == ERROR
    assert message().startswith("xsp3sim_gate:")


def test_external_trigger_without_itfg_uses_time_between_pulses(sysp: int) -> None:
    ok(LIB.xsp3_set_glob_timeA(sysp, 0, SRC_TTL_BOTH))
    ok(LIB.xsp3_histogram_arm(sysp, -1))
    time.sleep(0.02)
    ok(LIB.xsp3sim_trigger(sysp, 0, 1))
    assert LIB.xsp3_scaler_check_progress(sysp) == 1
    assert read_scalers(sysp, 0, 1)[0, 0, TIME] >= 0.02 * 80e6 * 0.9


@pytest.mark.parametrize("source", [SRC_TTL_VETO, SRC_LVDS_VETO])
def test_veto_only_gate_and_trigger(sysp: int, source: int) -> None:
    setup_timing(sysp, source, 5, 1234)
    ok(LIB.xsp3_histogram_arm(sysp, -1))
    for _ in range(3):
        ok(LIB.xsp3sim_gate(sysp, 0, 1))
        time.sleep(0.005)
        ok(LIB.xsp3sim_gate(sysp, 0, 0))
    ok(LIB.xsp3sim_gate(sysp, 0, 0))  # closing a closed gate is ignored
    assert LIB.xsp3_scaler_check_progress(sysp) == 3
    ok(LIB.xsp3sim_trigger(sysp, 0, 2))
    assert LIB.xsp3_scaler_check_progress(sysp) == 5
    assert LIB.xsp3_histogram_is_any_busy(sysp) == 0
    live = read_scalers(sysp, 0, 5)[:, 0, TIME]
    assert (live[:3] >= 0.005 * 80e6 * 0.9).all(), live
    assert (live[3:] == 1234).all()


# ------------------------------------------------------------ data layout

def test_read4d_subsets_equal_slices_of_full_read(sysp: int) -> None:
    acquire_ttl(sysp, 6, col_time=800_000)  # 10 ms at 50 kcps: ~500 events per channel
    full = read_hist(sysp, 0, 6)
    assert full.sum() > 0
    assert (read_hist(sysp, 0, 6) == full).all(), "reads are not deterministic"
    sub = read_hist(sysp, 2, 3, chan=1, num_chan=2, eng=600, num_eng=300)
    assert (sub == full[2:5, 1:3, 600:900]).all()
    one = read_hist(sysp, 5, 1, chan=3, num_chan=1, eng=4095, num_eng=1)
    assert (one == full[5:6, 3:4, 4095:4096]).all()
    assert (read_hist(sysp, 6, 58) == 0).all()
    sc = read_scalers(sysp, 1, 4, chan=2, num_chan=2)
    assert (sc == read_scalers(sysp, 0, 6)[1:5, 2:4]).all()


def test_read_range_checks_name_the_function(sysp: int) -> None:
    buf = np.zeros(BINS * 8, dtype=np.uint32)
    assert LIB.xsp3_histogram_read4d(sysp, buf.ctypes.data, 0, 0, 3, 0, BINS, 1, 2, 1) == RANGE_CHECK
    assert message().startswith("xsp3_histogram_read4d:") and "channel" in message()
    assert LIB.xsp3_histogram_read4d(sysp, buf.ctypes.data, 1, 0, 0, 0, BINS, 1, 1, 1) == RANGE_CHECK
    assert LIB.xsp3_histogram_read4d(sysp, buf.ctypes.data, 0, 1, 0, 0, 16, 1, 1, 1) == RANGE_CHECK
    assert LIB.xsp3_histogram_read4d(sysp, buf.ctypes.data, 0, 0, 0, 0, 16, 2, 1, 1) == RANGE_CHECK
    assert LIB.xsp3_histogram_read4d(sysp, buf.ctypes.data, 0, 0, 0, 63, 16, 1, 1, 2) == RANGE_CHECK
    assert "frame" in message()
    assert LIB.xsp3_scaler_read(sysp, buf.ctypes.data, 5, 0, 0, 5, 1, 1) == RANGE_CHECK
    assert message().startswith("xsp3_scaler_read:")
    assert LIB.xsp3_scaler_read(sysp, buf.ctypes.data, 0, 0, 60, 9, 1, 5) == RANGE_CHECK


def test_scalers_consistent_with_spectra(sysp: int) -> None:
    ok(LIB.xsp3_set_window(sysp, -1, 0, 600, 700))
    ok(LIB.xsp3_set_window(sysp, 2, 1, 790, 820))
    ok(LIB.xsp3_set_good_thres(sysp, -1, 300))
    acquire_ttl(sysp, 4, col_time=4_000_000)  # 50 ms: ~2500 events per channel
    hist = read_hist(sysp, 0, 4).astype(np.int64)
    sc = read_scalers(sysp, 0, 4).astype(np.int64)
    assert (sc[..., TIME] == 4_000_000).all() and (sc[..., TOTAL_TICKS] == sc[..., TIME]).all()
    assert (sc[..., ALL_GOOD] == hist.sum(axis=2)).all()
    assert (sc[..., WIN0] == hist[:, :, 600:701].sum(axis=2)).all()
    assert (sc[:, 2, WIN1] == hist[:, 2, 790:821].sum(axis=1)).all()
    assert (sc[:, 0, WIN1] == sc[:, 0, ALL_GOOD]).all()  # default window is every bin
    assert (hist[:, :, :300] == 0).all()
    assert (sc[..., ALL_EVENT] > sc[..., ALL_GOOD]).all()  # below-threshold noise and pile-up
    dead = sc[..., ALL_EVENT] * (EVENT_WIDTH + 1) + sc[..., RESET_TICKS]
    assert (dead < sc[..., TIME]).all()
    assert (sc[..., RESET_COUNT] > 0).all() and (sc[..., PILEUP] > 0).all()
    # the spectrum has its lines where the model puts them (10 eV per bin)
    total = hist.sum(axis=(0, 1))
    fe_ka = total[630:650].sum()
    assert fe_ka > 5 * total[1500:1520].sum()
    assert 630 + int(total[630:650].argmax()) in range(636, 645)


def test_channels_differ_in_line_intensity(sysp: int) -> None:
    ok(LIB.xsp3sim_set_rate(sysp, -1, 2e6))
    acquire_ttl(sysp, 1, col_time=80_000_000)  # 1 s at 2 Mcps input
    hist = read_hist(sysp, 0, 1)[0].astype(np.float64)
    fe = hist[:, 620:660].sum(axis=1) / hist.sum(axis=1)
    assert np.ptp(fe) > 0.003, fe  # line fractions differ between channels beyond Poisson noise


def test_dtc_read_and_factor_grow_with_rate(sysp: int) -> None:
    factors, pileup = [], []
    for rate in (5e4, 1e6):
        ok(LIB.xsp3sim_set_rate(sysp, -1, rate))
        ok(LIB.xsp3_histogram_clear(sysp, 0, NCHAN, 0, 2))
        acquire_ttl(sysp, 2, col_time=8_000_000)
        hist = read_hist(sysp, 0, 2)
        sc = read_scalers(sysp, 0, 2)
        dtc = np.zeros(hist.shape, dtype=np.float64)
        fac = np.zeros((2, NCHAN), dtype=np.float64)
        ok(LIB.xsp3_hist_dtc_read4d(sysp, dtc.ctypes.data, fac.ctypes.data, 0, 0, 0, 0, BINS, 1, NCHAN, 2))
        ticks = sc[..., TIME].astype(np.float64)
        dead = sc[..., ALL_EVENT].astype(np.float64) * (EVENT_WIDTH + 1) + sc[..., RESET_TICKS]
        expected = ticks / (ticks - dead)
        np.testing.assert_allclose(fac, expected, rtol=1e-12)
        np.testing.assert_allclose(dtc, hist * fac[:, :, None], rtol=1e-12)
        row = np.ascontiguousarray(sc[1, 3])
        f, ae = c_double(), c_double()
        ok(LIB.xsp3_get_dtcfactor(sysp, row.ctypes.data, ctypes.byref(f), ctypes.byref(ae), 3))
        assert f.value == pytest.approx(expected[1, 3], rel=1e-12)
        assert ae.value == pytest.approx(row[ALL_EVENT] * expected[1, 3], rel=1e-12)
        factors.append(fac.mean())
        pileup.append(sc[..., PILEUP].sum() / sc[..., ALL_EVENT].sum())
        dtc_no_scal = np.zeros(hist.shape, dtype=np.float64)
        ok(LIB.xsp3_hist_dtc_read4d(sysp, dtc_no_scal.ctypes.data, None, 0, 0, 0, 0, BINS, 1, NCHAN, 2))
        assert (dtc_no_scal == dtc).all()
    assert 1.0 < factors[0] < 1.03
    assert factors[1] > 1.1 and factors[1] > factors[0]
    assert pileup[1] > pileup[0] > 0


# --------------------------------------------------------- frame memory

def test_memory_accumulates_until_cleared(sysp: int) -> None:
    acquire_ttl(sysp, 3, col_time=800_000)
    first = read_hist(sysp, 0, 3)
    acquire_ttl(sysp, 3, col_time=800_000)
    both = read_hist(sysp, 0, 3)
    assert (both >= first).all() and both.sum() > first.sum()
    sc = read_scalers(sysp, 0, 3)
    assert (sc[..., TIME] == 1_600_000).all()
    assert (sc[..., ALL_GOOD] == both.sum(axis=2)).all()
    ok(LIB.xsp3_histogram_clear(sysp, 1, 1, 0, 3))  # one channel only
    partial = read_hist(sysp, 0, 3)
    assert (partial[:, 1] == 0).all() and (partial[:, [0, 2, 3]] == both[:, [0, 2, 3]]).all()
    ok(LIB.xsp3_histogram_clear(sysp, 0, NCHAN, 0, 64))
    assert (read_hist(sysp, 0, 3) == 0).all()
    assert (read_scalers(sysp, 0, 3) == 0).all()
    for _ in range(7):  # beyond the layer limit, live time keeps adding up
        acquire_ttl(sysp, 1, col_time=1000)
    assert (read_scalers(sysp, 0, 1)[..., TIME] == 7000).all()
    assert LIB.xsp3_histogram_clear(sysp, 0, NCHAN + 1, 0, 1) == RANGE_CHECK
    assert LIB.xsp3_histogram_clear(sysp, 0, NCHAN, 60, 5) == RANGE_CHECK


def test_clear_of_large_memory_is_metadata_only(make_system: Callable[..., int]) -> None:
    path = make_system(num_tf=200_000)
    acquire_ttl(path, 3, col_time=1000)
    ok(LIB.xsp3_histogram_clear(path, 0, NCHAN, 0, 200_000))
    assert (read_scalers(path, 0, 3) == 0).all()


def test_circular_mode_with_acks_runs_past_memory(make_system: Callable[..., int]) -> None:
    path = make_system(num_tf=8)
    ok(LIB.xsp3_set_run_flags(path, SCALERS_HIST | CIRCULAR))
    setup_timing(path, SRC_TTL_BOTH, 40, 2000)
    ok(LIB.xsp3_histogram_arm(path, -1))
    read = 0
    while read < 40:
        ok(LIB.xsp3sim_trigger(path, 0, 5))
        frames, flags, furthest = progress_details(path)
        assert flags == 0 and furthest == frames
        while read < frames:
            slot = read % 8
            n = min(frames - read, 8 - slot)
            sc = read_scalers(path, slot, n)
            assert (sc[..., TIME] == 2000).all(), "frame memory was not emptied by the ack"
            ok(LIB.xsp3_histogram_circ_ack(path, 0, read, NCHAN, n))
            read += n
    assert progress_details(path) == (40, 0, 40)
    assert LIB.xsp3_histogram_is_any_busy(path) == 0


def test_circular_overrun_is_flagged_and_stops(make_system: Callable[..., int]) -> None:
    path = make_system(num_tf=8)
    ok(LIB.xsp3_set_run_flags(path, SCALERS_HIST | CIRCULAR))
    setup_timing(path, SRC_TTL_BOTH, 100, 2000)
    ok(LIB.xsp3_histogram_arm(path, -1))
    ok(LIB.xsp3sim_trigger(path, 0, 8))
    assert progress_details(path) == (8, 0, 8)
    ok(LIB.xsp3sim_trigger(path, 0, 1))
    frames, flags, furthest = progress_details(path)
    assert frames == 8 and furthest == 8
    assert flags & FLAG_OVERRUN
    assert LIB.xsp3_histogram_is_any_busy(path) == 0
    assert "overrun" in message()
    assert (read_scalers(path, 0, 8)[..., TIME] == 2000).all(), "unacked frames must survive"


def test_circular_internal_burst_overruns_without_reader(make_system: Callable[..., int]) -> None:
    path = make_system(num_tf=16)
    ok(LIB.xsp3_set_run_flags(path, SCALERS_HIST | CIRCULAR))
    setup_timing(path, SRC_INTERNAL, 1000, 1600)
    ok(LIB.xsp3_histogram_start(path, -1))
    wait_idle(path)
    frames, flags, _ = progress_details(path)
    assert frames == 16 and flags & FLAG_OVERRUN


# ----------------------------------------------------- faults and errors

def test_fault_injection_is_one_shot(sysp: int) -> None:
    setup_timing(sysp, SRC_TTL_BOTH, 2, 1000)
    ok(LIB.xsp3sim_inject_fault(b"xsp3_histogram_arm", ERROR, 1))
    ok(LIB.xsp3sim_inject_fault(b"xsp3_scaler_read", -10, 0))
    ok(LIB.xsp3sim_inject_fault(b"xsp3_scaler_check_progress_details", -20, 0))
    ok(LIB.xsp3sim_inject_fault(b"xsp3_histogram_read4d", -8, 2))
    ok(LIB.xsp3sim_inject_fault(b"xsp3_scaler_check_progress", -5, 0))
    ok(LIB.xsp3_histogram_arm(sysp, -1))
    ok(LIB.xsp3_histogram_stop(sysp, -1))
    assert LIB.xsp3_histogram_arm(sysp, -1) == ERROR
    assert message() == "simulated fault in xsp3_histogram_arm"
    ok(LIB.xsp3_histogram_arm(sysp, -1))
    buf = np.zeros((1, NCHAN, 9), dtype=np.uint32)
    assert LIB.xsp3_scaler_read(sysp, buf.ctypes.data, 0, 0, 0, 9, NCHAN, 1) == -10
    ok(LIB.xsp3_scaler_read(sysp, buf.ctypes.data, 0, 0, 0, 9, NCHAN, 1))
    assert LIB.xsp3_scaler_check_progress_details(sysp, None, 0, None) == -20
    assert "xsp3_scaler_check_progress_details" in message()
    assert LIB.xsp3_scaler_check_progress_details(sysp, None, 0, None) == 0
    assert LIB.xsp3_scaler_check_progress(sysp) == -5
    assert LIB.xsp3_scaler_check_progress(sysp) == 0
    read_hist(sysp, 0, 1)
    read_hist(sysp, 0, 1)
    hist = np.zeros((1, NCHAN, BINS), dtype=np.uint32)
    assert LIB.xsp3_histogram_read4d(sysp, hist.ctypes.data, 0, 0, 0, 0, BINS, 1, NCHAN, 1) == -8
    assert message() == "simulated fault in xsp3_histogram_read4d"
    read_hist(sysp, 0, 1)


def test_fault_in_config_and_clearing(sysp: int) -> None:
    ok(LIB.xsp3sim_inject_fault(b"xsp3_config", ERR_DEV_NOT_FOUND, 0))
    assert config() == ERR_DEV_NOT_FOUND
    assert message() == "simulated fault in xsp3_config"
    path = ok(config())
    LIB.xsp3_close(path)
    ok(LIB.xsp3sim_inject_fault(b"xsp3_histogram_start", ERROR, 0))
    ok(LIB.xsp3sim_clear_faults())
    setup_timing(sysp, SRC_TTL_BOTH, 2, 1000)
    ok(LIB.xsp3_histogram_start(sysp, -1))
    assert LIB.xsp3sim_inject_fault(b"xsp3_no_such_function", ERROR, 0) == ERROR
    assert "xsp3_no_such_function" in message()
    assert LIB.xsp3sim_inject_fault(None, ERROR, 0) == RANGE_CHECK


# ------------------------------------------------ windows, settings, seed

def test_window_and_threshold_round_trip_and_checks(sysp: int) -> None:
    lo, hi, thr = c_uint32(), c_uint32(), c_uint32()
    ok(LIB.xsp3_get_window(sysp, 0, 1, ctypes.byref(lo), ctypes.byref(hi)))
    assert (lo.value, hi.value) == (0, BINS - 1)
    ok(LIB.xsp3_set_window(sysp, 2, 1, 10, 20))
    ok(LIB.xsp3_get_window(sysp, 2, 1, ctypes.byref(lo), ctypes.byref(hi)))
    assert (lo.value, hi.value) == (10, 20)
    for args in [(2, 1, 20, 10), (2, 1, -1, 10), (2, 1, 0, BINS), (2, 2, 0, 1), (NCHAN, 0, 0, 1)]:
        assert LIB.xsp3_set_window(sysp, *args) == RANGE_CHECK, args
    assert message().startswith("xsp3_set_window:")
    ok(LIB.xsp3_set_good_thres(sysp, 1, 123))
    ok(LIB.xsp3_get_good_thres(sysp, 1, ctypes.byref(thr)))
    assert thr.value == 123
    assert LIB.xsp3_get_good_thres(sysp, NCHAN, ctypes.byref(thr)) == RANGE_CHECK


def test_settings_save_and_restore(sysp: int, tmp_path: Path) -> None:
    ok(LIB.xsp3_set_window(sysp, 3, 0, 100, 200))
    ok(LIB.xsp3_set_good_thres(sysp, 2, 77))
    ok(LIB.xsp3_save_settings(sysp, str(tmp_path).encode()))
    ok(LIB.xsp3_set_window(sysp, 3, 0, 0, 5))
    ok(LIB.xsp3_set_good_thres(sysp, 2, 0))
    ok(LIB.xsp3_restore_settings(sysp, str(tmp_path).encode(), 0))
    lo, hi, thr = c_uint32(), c_uint32(), c_uint32()
    ok(LIB.xsp3_get_window(sysp, 3, 0, ctypes.byref(lo), ctypes.byref(hi)))
    ok(LIB.xsp3_get_good_thres(sysp, 2, ctypes.byref(thr)))
    assert (lo.value, hi.value, thr.value) == (100, 200, 77)
    missing = str(tmp_path / "missing").encode()
    assert LIB.xsp3_save_settings(sysp, missing) == FILE_WRITE_FAILED
    assert LIB.xsp3_restore_settings(sysp, missing, 0) == CANNOT_OPEN_FILE
    empty = tmp_path / "empty"
    empty.mkdir()
    assert LIB.xsp3_restore_settings(sysp, str(empty).encode(), 0) == CANNOT_OPEN_FILE
    files = list(tmp_path.glob("*.txt"))
    assert len(files) == 1
    files[0].write_text(files[0].read_text().replace("win0 100 200", "win0 one two"))
    assert LIB.xsp3_restore_settings(sysp, str(tmp_path).encode(), 0) == FILE_READ_FAILED
    assert message().startswith("xsp3_restore_settings:")


def test_seed_makes_data_deterministic(make_system: Callable[..., int]) -> None:
    def run(seed: int) -> tuple[np.ndarray, np.ndarray]:
        path = make_system()
        ok(LIB.xsp3sim_set_seed(path, seed))
        acquire_ttl(path, 3, col_time=800_000)
        return read_hist(path, 0, 3), read_scalers(path, 0, 3)

    h1, s1 = run(42)
    h2, s2 = run(42)
    h3, _ = run(43)
    assert (h1 == h2).all() and (s1 == s2).all()
    assert not (h1 == h3).all()
    assert not (h1[:, 0] == h1[:, 1]).all(), "channels must not repeat each other"


def test_concurrent_readout_and_control(sysp: int) -> None:
    setup_timing(sysp, SRC_INTERNAL, 64, 8000)
    errors: list[str] = []
    stop = threading.Event()

    def reader() -> None:
        buf = np.zeros((8, NCHAN, BINS), dtype=np.uint32)
        sc = np.zeros((8, NCHAN, 9), dtype=np.uint32)
        while not stop.is_set():
            for rc in (LIB.xsp3_histogram_read4d(sysp, buf.ctypes.data, 0, 0, 0, 0, BINS, 1, NCHAN, 8),
                       LIB.xsp3_scaler_read(sysp, sc.ctypes.data, 0, 0, 0, 9, NCHAN, 8),
                       LIB.xsp3_scaler_check_progress(sysp)):
                if rc < 0:
                    errors.append(f"rc={rc}")

    thread = threading.Thread(target=reader)
    thread.start()
    try:
        for _ in range(20):
            ok(LIB.xsp3_histogram_clear(sysp, 0, NCHAN, 0, 64))
            ok(LIB.xsp3_histogram_start(sysp, -1))
            time.sleep(0.002)
            ok(LIB.xsp3_histogram_stop(sysp, -1))
    finally:
        stop.set()
        thread.join(timeout=DEADLINE_S)
    assert not thread.is_alive() and not errors


def test_close_while_running_and_reconfigure() -> None:
    for _ in range(5):
        path = ok(config(num_tf=100))
        setup_timing(path, SRC_INTERNAL, 100, 1600)
        ok(LIB.xsp3_histogram_start(path, -1))
        assert LIB.xsp3_close(path) == OK


@pytest.mark.skipif(Path("/proc/sys/vm/overcommit_memory").exists()
                    and Path("/proc/sys/vm/overcommit_memory").read_text().strip() == "1",
                    reason="the kernel grants any allocation (overcommit_memory=1)")
def test_config_reports_out_of_memory() -> None:
    assert config(num_tf=2**31 - 1) == -8  # XSP3_OUT_OF_MEMORY: the slot table cannot be allocated
    assert message().startswith("xsp3_config:")
