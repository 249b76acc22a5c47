"""Acquisition over Channel Access: Internal runs, every trigger mode, counters, edges."""
from __future__ import annotations

import threading
import time

import numpy as np
import pytest

from iochelp import close_context, run_tool

MODES = ("Software", "Internal", "IDC", "TTL Veto Only", "TTL Both", "LVDS Veto Only",
         "LVDS Both", "Software + Internal")


def configure(ioc, frames: int, exposure: float, mode: str = "Internal") -> None:
    ioc.put("det1:TriggerMode", mode)
    ioc.put("det1:AcquireTime", exposure)
    ioc.put("det1:NumImages", frames)
    assert ioc.get("det1:TriggerMode_RBV") == mode
    assert ioc.get("det1:NumImages_RBV") == frames


def test_caput_callback_returns_when_frames_are_in(ioc):
    configure(ioc, 25, 0.02)
    result = run_tool(ioc, "caput", "-c", "-w", "60", ioc.pv("det1:Acquire"), "1")
    assert result.returncode == 0, result.stdout + result.stderr
    # the put callback has completed: every frame is counted already
    assert ioc.get("det1:ArrayCounter_RBV") == 25
    assert ioc.get("det1:NumImagesCounter_RBV") == 25
    assert ioc.get("det1:Acquire_RBV") == "Done"
    assert ioc.get("det1:DetectorState_RBV") == "Idle"
    assert ioc.get("det1:StatusMessage_RBV").startswith("Completed Acquisition")
    spectrum = ioc.get("MCA1:ArrayData")
    assert len(spectrum) == 4096 and spectrum.sum() > 0


def test_caget_reports_missing_pv_with_nonzero_exit(ioc):
    result = run_tool(ioc, "caget", "-w", "1", ioc.pv("det1:NoSuchPV"))
    assert result.returncode != 0
    ok = run_tool(ioc, "caget", "-t", ioc.pv("det1:Manufacturer_RBV"))
    assert ok.returncode == 0 and ok.stdout.strip() == "Quantum Detectors"


def test_acquire_rbv_posts_one_then_zero_for_a_single_frame(ioc):
    configure(ioc, 1, 0.001)
    values, sub, ctx = ioc.monitor("det1:Acquire_RBV")
    deadline = time.monotonic() + 10
    while not values and time.monotonic() < deadline:
        time.sleep(0.02)
    ioc.put("det1:Acquire", 1, wait=True, timeout=30)
    deadline = time.monotonic() + 10
    seen = []
    while seen[-2:] != [1, 0] and time.monotonic() < deadline:
        time.sleep(0.05)
        seen = [int(v[0]) for v in values]
    sub.clear()
    close_context(ctx)
    assert seen[0] == 0 and seen[-2:] == [1, 0], seen


@pytest.mark.parametrize("mode", MODES)
def test_every_trigger_mode_yields_the_requested_frames(ioc, mode):
    frames = 5
    configure(ioc, frames, 0.005, mode)
    done = threading.Event()
    errors = []

    def acquire():
        try:
            ioc.put("det1:Acquire", 1, wait=True, timeout=60)
        except Exception as ex:  # reported below
            errors.append(ex)
        done.set()

    thread = threading.Thread(target=acquire, daemon=True)
    thread.start()
    if mode != "Internal":   # an Internal run may be over before a poll could see it
        ioc.wait_for("det1:Acquire_RBV", lambda v: v == "Acquiring", timeout=10)
    if mode in ("Software", "Software + Internal"):
        for _ in range(frames):
            ioc.put("det1:SoftTrigger", 1)
            time.sleep(0.02)
    elif mode in ("TTL Veto Only", "LVDS Veto Only"):
        assert ioc.get("det1:DetectorState_RBV") == "Waiting"
        for _ in range(frames):
            ioc.put("SIM:Gate", "Open")
            time.sleep(0.005)
            ioc.put("SIM:Gate", "Closed")
    elif mode != "Internal":
        assert ioc.get("det1:DetectorState_RBV") == "Waiting"
        ioc.put("SIM:Trigger", frames)
    assert done.wait(30), f"{mode}: run did not end"
    thread.join()
    assert not errors, errors
    assert ioc.get("det1:ArrayCounter_RBV") == frames
    assert ioc.get("det1:DetectorState_RBV") == "Idle"


def test_stop_mid_run_aborts_cleanly(ioc):
    configure(ioc, 100000, 0.01)
    thread = ioc.acquire_in_background(timeout=60)
    ioc.wait_for("det1:Acquire_RBV", lambda v: v == "Acquiring", timeout=20)
    ioc.wait_for("det1:ArrayCounter_RBV", lambda v: v >= 3, timeout=20)
    ioc.put("det1:Acquire", 0, wait=True, timeout=20)
    thread.join(20)
    assert not thread.is_alive()
    assert ioc.get("det1:DetectorState_RBV") == "Aborted"
    assert ioc.get("det1:StatusMessage_RBV").startswith("Stopped Acquiring")
    assert ioc.get("det1:Acquire_RBV") == "Done"
    counted = ioc.get("det1:ArrayCounter_RBV")
    assert 3 <= counted < 100000
    # a new run after an abort works
    configure(ioc, 3, 0.001)
    ioc.put("det1:Acquire", 1, wait=True, timeout=30)
    assert ioc.get("det1:ArrayCounter_RBV") == 3


def test_stop_while_the_first_run_is_being_set_up(fresh_ioc):
    """Acquire=0 right behind Acquire=1 on a new IOC lands while the run is still
    being set up (the block pool is allocated then): the detector must not be
    armed after that stop, or it runs on with the run stuck in Aborting."""
    ioc = fresh_ioc
    configure(ioc, 100000, 0.01)
    ioc.put("det1:Acquire", 1, wait=False)
    ioc.put("det1:Acquire", 0, wait=True, timeout=20)
    ioc.wait_for("det1:Acquire_RBV", lambda v: v == "Done", timeout=20)
    assert ioc.get("det1:DetectorState_RBV") == "Aborted"
    assert ioc.get("det1:StatusMessage_RBV").startswith("Stopped Acquiring")
    configure(ioc, 3, 0.001)
    ioc.put("det1:Acquire", 1, wait=True, timeout=30)
    assert ioc.get("det1:DetectorState_RBV") == "Idle"
    assert ioc.get("det1:ArrayCounter_RBV") == 3


def test_rapid_acquire_toggles_never_leave_a_stuck_state(ioc):
    configure(ioc, 1000, 0.005)
    for _ in range(5):
        ioc.put("det1:Acquire", 1, wait=False)
        ioc.put("det1:Acquire", 0, wait=False)
    ioc.put("det1:Acquire", 1, wait=False)
    time.sleep(0.2)
    ioc.put("det1:Acquire", 0, wait=True, timeout=20)
    ioc.wait_for("det1:Acquire_RBV", lambda v: v == "Done", timeout=20)
    assert ioc.get("det1:DetectorState_RBV") in ("Idle", "Aborted")
    configure(ioc, 2, 0.001)
    ioc.put("det1:Acquire", 1, wait=True, timeout=30)
    assert ioc.get("det1:ArrayCounter_RBV") == 2
    assert ioc.get("det1:DetectorState_RBV") == "Idle"


def test_caget_stays_responsive_during_a_fast_run(ioc):
    configure(ioc, 20000, 0.0001)
    thread = ioc.acquire_in_background(timeout=120)
    ioc.wait_for("det1:Acquire_RBV", lambda v: v == "Acquiring", timeout=10)
    latencies = []
    while thread.is_alive() and len(latencies) < 50:
        t0 = time.monotonic()
        ioc.get("det1:NumImages_RBV", timeout=2.0)  # a hang guard, not a speed test
        latencies.append(time.monotonic() - t0)
    thread.join(120)
    assert not thread.is_alive()
    assert ioc.get("det1:ArrayCounter_RBV") == 20000
    assert latencies, "run ended before any caget"


def test_erase_zeroes_counters_and_sums(ioc):
    configure(ioc, 5, 0.001)
    ioc.put("det1:Acquire", 1, wait=True, timeout=30)
    assert ioc.get("MCASUM1:ArrayData").sum() > 0
    ioc.put("det1:ERASE", 1, wait=True)
    assert ioc.get("det1:StatusMessage_RBV") == "Erased Data"
    assert ioc.get("det1:ArrayCounter_RBV") == 0
    assert ioc.get("MCASUM1:ArrayData").sum() == 0
    assert ioc.get("MCA1:ArrayData").sum() == 0


def test_sum_accumulates_every_frame_of_the_run(ioc):
    configure(ioc, 40, 0.001)
    ioc.put("det1:Acquire", 1, wait=True, timeout=30)
    total_sum = ioc.get("MCASUM2:ArrayData").sum()
    # ALL_GOOD counts the histogrammed events of each frame; the sum holds all of them
    assert total_sum > 0
    last = ioc.get("MCA2:ArrayData")
    assert total_sum > last.sum()
    np.testing.assert_array_equal(ioc.get("MCASUM2:ArrayData") >= last, True)
