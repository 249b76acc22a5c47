"""xspress3-receive: as a subprocess against a real StreamSender, and its Session logic."""
from __future__ import annotations

import io
import signal
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest

from xspress3.writers import layout, receive, stream, wire

from writers_helpers import block_values, make_start, wait_for


def start_receiver(args: list[str], env: dict[str, str]) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "xspress3.writers.receive", *args],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)


@pytest.fixture
def sender():
    s = stream.StreamSender("tcp://127.0.0.1:0", max_queued_frames=256)
    s.start()
    yield s
    s.close()


def test_receiver_writes_the_same_values(sender, tmp_path, subprocess_env):
    proc = start_receiver(["--connect", sender.endpoint, "--output", str(tmp_path), "--compression", "BSLZ4",
                           "--max-series", "1", "--quiet"], subprocess_env)
    try:
        assert sender.wait_for_receivers(1, timeout=30), "receiver did not connect"
        start = make_start("rx_0001", channels=3, bins=100, frames_expected=60)
        sender.begin_series(start)
        first = 0
        for n in (10, 1, 20, 29):
            assert sender.offer(block_values(first, n, channels=3, bins=100), timeout=30)
            first += n
        end = sender.end_series("done", timeout=30)
        _, err = proc.communicate(timeout=60)
    finally:
        proc.kill() if proc.poll() is None else None
    assert proc.returncode == 0, err
    assert end.frames_sent == 60 and end.frames_lost == 0
    contents = layout.read_frames(tmp_path / "rx_0001.h5")
    expected = block_values(0, 60, channels=3, bins=100)
    for name in wire.ARRAY_PARTS:
        np.testing.assert_array_equal(getattr(contents, name), getattr(expected, name))
    assert contents.attrs["complete"] is True and contents.attrs["compression"] == "BSLZ4"
    assert contents.attrs["frames_expected"] == 60
    assert "series rx_0001: 60 frames" in err and "[complete, done]" in err


def test_sigint_closes_the_file_and_exits_zero(sender, tmp_path, subprocess_env):
    proc = start_receiver(["--connect", sender.endpoint, "--output", str(tmp_path), "--quiet"], subprocess_env)
    try:
        assert sender.wait_for_receivers(1, timeout=30)
        sender.begin_series(make_start("rx_int", channels=2, bins=32))
        for i in range(5):
            assert sender.offer(block_values(i * 8, 8, channels=2, bins=32), timeout=30)
        path = tmp_path / "rx_int.h5"
        assert wait_for(path.exists), "receiver never created the file"
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=60)
        sender.end_series("done", timeout=5)
    finally:
        proc.kill() if proc.poll() is None else None
    assert proc.returncode == 0, err
    assert "INCOMPLETE" in err and "interrupted" in err
    with h5py.File(path, "r") as f:  # opens without swmr=True: the file was closed properly
        n = f["/entry/instrument/detector/data"].shape[0]
        assert f["/entry/end_time"][()] != b"" and not f["/entry/instrument/detector/complete"][()]
        assert f["/entry/instrument/detector/frames_written"][()] == n
        np.testing.assert_array_equal(f["/entry/instrument/detector/data"][()],
                                      block_values(0, n, channels=2, bins=32).spectra)


def test_sigterm_without_series_exits_zero(sender, subprocess_env):
    proc = start_receiver(["--connect", sender.endpoint, "--decode-only"], subprocess_env)
    try:
        assert sender.wait_for_receivers(1, timeout=30)
        proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=60)
    finally:
        proc.kill() if proc.poll() is None else None
    assert proc.returncode == 0


def test_decode_only_writes_nothing(sender, tmp_path, subprocess_env):
    proc = start_receiver(["--connect", sender.endpoint, "--decode-only", "--max-series", "1"], subprocess_env)
    try:
        assert sender.wait_for_receivers(1, timeout=30)
        sender.begin_series(make_start("rx_dec"))
        assert sender.offer(block_values(0, 16), timeout=30)
        sender.end_series("done", timeout=30)
        _, err = proc.communicate(timeout=60)
    finally:
        proc.kill() if proc.poll() is None else None
    assert proc.returncode == 0, err
    assert "series rx_dec: 16 frames" in err and "(decode only)" in err
    assert list(tmp_path.iterdir()) == []


def test_output_is_required_unless_decode_only(subprocess_env):
    proc = subprocess.run([sys.executable, "-m", "xspress3.writers.receive", "--connect", "tcp://127.0.0.1:1"],
                          capture_output=True, text=True, env=subprocess_env, timeout=60)
    assert proc.returncode == 2 and "--output DIR is required" in proc.stderr


def _session(tmp_path: Path) -> tuple[receive.Session, io.StringIO]:
    out = io.StringIO()
    return receive.Session(tmp_path, out=out), out


def test_new_start_closes_open_series_incomplete(tmp_path):
    session, out = _session(tmp_path)
    session.handle(make_start("first", channels=1, bins=4))
    session.handle(block_values(0, 3, channels=1, bins=4).slice(0, 3))
    block = block_values(0, 3, channels=1, bins=4)
    session.handle(wire.FrameBlock(0, block.spectra, block.scalers, block.dtfactor, block.dtpercent, "first"))
    session.handle(make_start("second", channels=1, bins=4))
    assert "series first: 3 frames" in out.getvalue() and "a new series started before its end" in out.getvalue()
    first = layout.read_frames(tmp_path / "first.h5")
    assert first.count == 3 and first.attrs["complete"] is False
    session.handle(wire.SeriesEnd("second", frames_sent=0))
    assert layout.read_frames(tmp_path / "second.h5").attrs["complete"] is True
    assert session.series_done == 2


def test_repeated_start_is_ignored_and_unknown_frames_skipped(tmp_path):
    session, out = _session(tmp_path)
    stray = block_values(0, 2, channels=1, bins=4)
    session.handle(wire.FrameBlock(0, stray.spectra, stray.scalers, stray.dtfactor, stray.dtpercent, "other"))
    assert session.skipped_frames == 2 and "skipping frames" in out.getvalue()
    start = make_start("dup", channels=1, bins=4)
    session.handle(start)
    session.handle(start)  # a late receiver's repeat: same series, nothing happens
    assert sorted(p.name for p in tmp_path.iterdir()) == ["dup.h5"]
    b = block_values(4, 2, channels=1, bins=4)
    session.handle(wire.FrameBlock(4, b.spectra, b.scalers, b.dtfactor, b.dtpercent, "dup"))
    session.handle(wire.SeriesEnd("dup", frames_sent=2))
    assert "4 frames missing" in out.getvalue()
    assert layout.read_frames(tmp_path / "dup.h5").attrs["complete"] is False


def test_existing_file_is_never_overwritten(tmp_path):
    (tmp_path / "again.h5").write_bytes(b"precious")
    session, _ = _session(tmp_path)
    session.handle(make_start("again", channels=1, bins=4))
    session.close("test")
    assert (tmp_path / "again.h5").read_bytes() == b"precious"
    assert (tmp_path / "again-2.h5").exists()


@pytest.mark.parametrize("series_id, stem", [("a/../../b", "a_.._.._b"), ("..hidden", "hidden"), ("ok-1.2", "ok-1.2")])
def test_file_stem_cannot_escape_the_directory(series_id, stem):
    assert receive.safe_file_stem(series_id) == stem


def test_file_lists_missing_frames_as_runs(tmp_path):
    """A gap between blocks and frames after the last block (the end message says the
    run had 10) are recorded as [first_frame, count] runs."""
    session, out = _session(tmp_path)
    session.handle(make_start("holes", channels=1, bins=4))
    for first, n in ((0, 2), (4, 4)):
        b = block_values(first, n, channels=1, bins=4)
        session.handle(wire.FrameBlock(first, b.spectra, b.scalers, b.dtfactor, b.dtpercent, "holes"))
    session.handle(wire.SeriesEnd("holes", frames_sent=6, frames_lost=4, lost_reason="receiver gone: 4"))
    contents = layout.read_frames(tmp_path / "holes.h5")
    np.testing.assert_array_equal(contents.frame_numbers, [0, 1, 4, 5, 6, 7])
    np.testing.assert_array_equal(contents.attrs["missing_frames"], [[2, 2], [8, 2]])
    assert contents.attrs["complete"] is False
    with h5py.File(tmp_path / "holes.h5", "r") as f:
        assert list(f[layout.MISSING_FRAMES].attrs["columns"]) == ["first_frame", "count"]


def test_progress_acknowledges_only_flushed_frames(tmp_path):
    session, _ = _session(tmp_path)
    session.handle(make_start("acked", channels=1, bins=4))
    b = block_values(0, 3, channels=1, bins=4)
    session.handle(wire.FrameBlock(0, b.spectra, b.scalers, b.dtfactor, b.dtpercent, "acked"))
    assert wait_for(lambda: session.progress().released == 3)
    ack = session.progress()
    assert ack.series_id == "acked" and ack.stored <= 3 and ack.failed == 0
    session.idle()   # quiet socket: flush now
    assert wait_for(lambda: session.progress().stored == 3)
    session.close("test")
