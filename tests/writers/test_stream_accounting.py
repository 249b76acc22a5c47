"""Exactly-accounted stream with real xspress3-receive processes: one receiver gets every
frame, a second is refused, and a receiver killed with SIGKILL loses only what it had
not stored, each of those frames counted lost with a reason."""
from __future__ import annotations

import signal
import subprocess
import sys
import threading
import time

import h5py
import numpy as np
import pytest

from xspress3.writers import layout, stream, wire

from writers_helpers import block_values, make_start

FULL = dict(channels=4, bins=4096)   # 64 KiB per frame, as the detector sends


def start_receiver(endpoint: str, out, env, *extra: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "xspress3.writers.receive", "--connect", endpoint,
                             "--output", str(out), "--quiet", *extra],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)


@pytest.fixture
def sender():
    s = stream.StreamSender("tcp://127.0.0.1:0", max_queued_frames=256, end_timeout=20)
    s.start()
    yield s
    s.close(linger=0)


def test_second_receiver_process_is_refused_and_the_first_gets_every_frame(sender, tmp_path, subprocess_env):
    one, two = tmp_path / "one", tmp_path / "two"
    one.mkdir()
    two.mkdir()
    first = start_receiver(sender.endpoint, one, subprocess_env, "--max-series", "1")
    second = None
    try:
        assert sender.wait_for_receivers(1, timeout=30)
        second = start_receiver(sender.endpoint, two, subprocess_env)
        _, err2 = second.communicate(timeout=60)
        assert second.returncode == 3, err2
        assert "refused this receiver" in err2 and "holds the stream" in err2
        assert sender.refused == 1
        sender.begin_series(make_start("only_one", frames_expected=400, **FULL))
        for i in range(50):
            assert sender.offer(block_values(i * 8, 8, **FULL), timeout=30)
        end = sender.end_series("done", timeout=30)
        _, err1 = first.communicate(timeout=60)
    finally:
        for proc in (first, second):
            if proc is not None and proc.poll() is None:
                proc.kill()
    assert first.returncode == 0, err1
    assert (end.frames_sent, end.frames_lost) == (400, 0)
    contents = layout.read_frames(one / "only_one.h5")
    np.testing.assert_array_equal(contents.frame_numbers, np.arange(400))
    np.testing.assert_array_equal(contents.spectra, block_values(0, 400, **FULL).spectra)
    assert contents.attrs["complete"] is True and contents.attrs["missing_frames"].shape == (0, 2)
    assert list(two.iterdir()) == []


def test_receiver_killed_with_sigkill_loses_only_what_it_had_not_stored(sender, tmp_path, subprocess_env):
    """2 000 frames offered at a steady pace; the receiver is killed mid-run. Every frame
    is then either in its file (read back with h5py) or counted lost with a reason."""
    total, per_block = 2000, 4
    proc = start_receiver(sender.endpoint, tmp_path, subprocess_env)
    try:
        assert sender.wait_for_receivers(1, timeout=30)
        sender.begin_series(make_start("killed", frames_expected=total, **FULL))
        path = tmp_path / "killed.h5"
        offered = 0
        killed = threading.Event()

        def kill_when_stored() -> None:
            deadline = time.monotonic() + 60
            while sender.frames_sent < 300 and time.monotonic() < deadline:
                time.sleep(0.005)
            proc.send_signal(signal.SIGKILL)
            killed.set()

        killer = threading.Thread(target=kill_when_stored)
        killer.start()
        while offered < total:
            # The readout's way: offer, and on back-pressure keep offering (never drop here).
            while not sender.offer(block_values(offered, per_block, **FULL), timeout=1.0):
                pass
            offered += per_block
            time.sleep(0.002)
        killer.join(60)
        assert killed.is_set() and proc.wait(30) == -signal.SIGKILL
        end = sender.end_series("done", timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    with h5py.File(path, "r", swmr=True) as f:   # the killed receiver's file opens as it is
        in_file = int(f[layout.FRAME_NUMBERS].shape[0])
        numbers = f[layout.FRAME_NUMBERS][()]
        assert f[layout.DATA].shape[0] >= in_file
        np.testing.assert_array_equal(f[layout.DATA][:in_file], block_values(0, in_file, **FULL).spectra)
    np.testing.assert_array_equal(numbers, np.arange(in_file))
    assert 0 < in_file < total
    reasons = dict(r.split(": ") for r in end.lost_reason.split("; "))
    assert sum(int(v) for v in reasons.values()) == end.frames_lost
    assert set(reasons) <= {stream.REASON_RECEIVER_GONE, stream.REASON_NO_RECEIVER}, reasons
    assert end.frames_sent == in_file
    assert in_file + end.frames_lost == total, (in_file, end)
    assert sender.lost_reasons == {k: int(v) for k, v in reasons.items()}


def test_window_bounds_what_is_in_flight_and_the_receiver_sets_the_pace(sender, caplog):
    """A receiver that reads slowly: the sender never has more than its window in flight,
    waits instead (logged once, timed in paced_s) and loses nothing."""
    window = 1 << 20   # 16 frames of 64 KiB
    caplog.set_level("INFO", logger="xspress3.writers.stream")
    seen_in_flight: list[int] = []
    with stream.StreamReceiver(sender.endpoint, window_bytes=window, auto_ack=False) as receiver:
        assert sender.wait_for_receivers(1, timeout=10)
        got: list[wire.FrameBlock] = []

        def slow_reader() -> None:
            received = 0
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                msg = receiver.recv(timeout=0.5)
                if isinstance(msg, wire.FrameBlock):
                    got.append(msg)
                    received += msg.count
                    seen_in_flight.append(sender._holder.in_flight_bytes if sender._holder else 0)
                    time.sleep(0.01)   # a slow disk
                    receiver.ack(wire.Ack("paced", received, received))
                elif isinstance(msg, wire.SeriesEnd):
                    return

        reader = threading.Thread(target=slow_reader)
        reader.start()
        sender.begin_series(make_start("paced", **FULL))
        for i in range(40):
            while not sender.offer(block_values(i * 4, 4, **FULL), timeout=1.0):
                pass
        end = sender.end_series(timeout=30)
        reader.join(60)
    assert (end.frames_sent, end.frames_lost) == (160, 0)
    assert sum(b.count for b in got) == 160
    assert max(seen_in_flight) <= window
    assert sender.paced_s > 0.05
    assert any("the receiver sets the pace" in r.getMessage() for r in caplog.records)
    assert any("the receiver set the pace for" in r.getMessage() for r in caplog.records)


def test_end_asks_the_receiver_to_store_now_and_waits_for_its_ack(sender):
    """A receiver that acknowledges only when asked (sync): end_series waits for that
    acknowledgement and reports exactly what the receiver said it stored."""
    synced: list[str] = []
    with stream.StreamReceiver(sender.endpoint, auto_ack=False, on_sync=synced.append) as receiver:
        assert sender.wait_for_receivers(1, timeout=10)
        sender.begin_series(make_start("synced"))
        for i in range(3):
            assert sender.offer(block_values(i * 5, 5), timeout=10)
        result: list[wire.SeriesEnd] = []
        ender = threading.Thread(target=lambda: result.append(sender.end_series(timeout=20)))
        ender.start()
        frames = 0
        deadline = time.monotonic() + 20
        while not synced and time.monotonic() < deadline:
            msg = receiver.recv(timeout=0.2)
            if isinstance(msg, wire.FrameBlock):
                frames += msg.count
        assert synced == ["synced"] and frames == 15
        assert ender.is_alive(), "end_series did not wait for the acknowledgement"
        receiver.ack(wire.Ack("synced", 15, 12, 3, "disk full"))
        end_msg = receiver.recv(timeout=20)
        ender.join(20)
    assert isinstance(end_msg, wire.SeriesEnd) and result == [end_msg]
    assert (end_msg.frames_sent, end_msg.frames_lost) == (12, 3)
    assert end_msg.lost_reason == f"{stream.REASON_RECEIVER_FAILED}: 3"


def _peak_rss_mib(pid: int) -> float:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    raise AssertionError("no VmHWM")


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_receiver_memory_stays_bounded_whatever_is_offered(tmp_path, subprocess_env):
    """6 000 full frames (375 MiB) pushed as fast as zmq takes them (no high-water mark
    on the sender) to a receiver with a 16 MiB window: the window fills, so the
    receiver sets the pace (the sender waited for its credit) instead of buffering,
    and its peak RSS stays below 256 MiB. (On this machine the page cache takes the
    writes fast enough that a 1 000 MiB window is never filled by one sender; the
    pacing assertion is what tells the window is in force.)"""
    sender = stream.StreamSender("tcp://127.0.0.1:0", max_queued_frames=8192, sndhwm=0, end_timeout=60)
    sender.start()
    proc = start_receiver(sender.endpoint, tmp_path, subprocess_env, "--window-mb", "16")
    try:
        assert sender.wait_for_receivers(1, timeout=30)
        sender.begin_series(make_start("bounded", **FULL))
        blocks = [block_values(i * 64, 64, **FULL) for i in range(4)]
        for i in range(6000 // 64):
            b = blocks[i % 4]
            block = wire.FrameBlock(i * 64, b.spectra, b.scalers, b.dtfactor, b.dtpercent)
            while not sender.offer(block, timeout=1.0):
                pass
        end = sender.end_series(timeout=60)
        peak = _peak_rss_mib(proc.pid)
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
        sender.close(linger=0)
    assert (end.frames_sent, end.frames_lost) == (5952, 0), err
    assert peak < 256, f"receiver peak RSS {peak:.0f} MiB"
    assert sender.paced_s > 0, "the receiver never set the pace: the test did not load it"
    assert layout.read_frames(tmp_path / "bounded.h5").count == 5952
