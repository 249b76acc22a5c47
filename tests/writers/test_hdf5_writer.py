"""HDF5Writer thread: values, status callbacks, NumCapture, back-pressure and write errors."""
from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import threading

import h5py
import numpy as np
import pytest

from xspress3.writers import hdf5, layout

from writers_helpers import block_values, make_start, wait_for


@pytest.fixture
def writer():
    statuses: list[hdf5.WriterStatus] = []
    threads: set[str] = set()

    def on_status(status: hdf5.WriterStatus) -> None:
        threads.add(threading.current_thread().name)
        statuses.append(status)

    w = hdf5.HDF5Writer(max_queued_frames=64, on_status=on_status, status_interval_s=0.0)
    w.statuses = statuses  # type: ignore[attr-defined]
    w.threads = threads  # type: ignore[attr-defined]
    yield w
    w.close()


def test_series_is_written_and_reported(writer, tmp_path):
    path = tmp_path / "s.h5"
    writer.open_series(path, make_start("w1", channels=2, bins=16, frames_expected=30), "LZ4")
    assert writer.state == "writing" and writer.path == str(path)
    first = 0
    for n in (4, 8, 16, 2):
        assert writer.offer(block_values(first, n, channels=2, bins=16), timeout=10)
        first += n
    result = writer.close_series(timeout=30)
    assert result == hdf5.WriteResult(str(path), 30, 0, 0, True, "")
    assert writer.state == "idle" and writer.frames_written == 30
    contents = layout.read_frames(path)
    np.testing.assert_array_equal(contents.spectra, block_values(0, 30, channels=2, bins=16).spectra)
    assert contents.attrs["complete"] is True and contents.attrs["compression"] == "LZ4"
    states = [s.state for s in writer.statuses]
    assert states[0] == "writing" and states[-1] == "idle"
    counts = [s.frames_written for s in writer.statuses]
    assert counts == sorted(counts) and counts[-1] == 30
    assert "wrote 30 frames" in writer.statuses[-1].message
    assert writer.threads == {"xspress3-hdf5-writer"}


def test_num_capture_stops_the_file(writer, tmp_path):
    path = tmp_path / "cap.h5"
    writer.open_series(path, make_start("cap", channels=1, bins=8), num_capture=10)
    for i in range(5):
        assert writer.offer(block_values(i * 4, 4, channels=1, bins=8), timeout=10)
    result = writer.close_series(timeout=30)
    assert (result.frames_written, result.frames_skipped, result.frames_dropped) == (10, 10, 0)
    assert result.complete
    assert any(s.capture_done for s in writer.statuses)
    contents = layout.read_frames(path)
    assert contents.count == 10
    np.testing.assert_array_equal(contents.frame_numbers, np.arange(10))


def test_open_error_is_raised_and_reported(writer, tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        writer.open_series(tmp_path / "missing" / "x.h5", make_start())
    assert writer.state == "error" and "does not exist" in writer.last_error
    assert wait_for(lambda: writer.statuses and writer.statuses[-1].state == "error")
    # the writer is still usable
    writer.open_series(tmp_path / "ok.h5", make_start(channels=1, bins=4))
    assert writer.state == "writing" and writer.last_error == ""
    assert writer.close_series().complete


def test_bad_compression_is_refused_at_open(writer, tmp_path):
    with pytest.raises(ValueError, match="not supported"):
        writer.open_series(tmp_path / "x.h5", make_start(), "JPEG")


def test_full_queue_pushes_back_then_drains(tmp_path):
    release = threading.Event()

    def slow_status(status: hdf5.WriterStatus) -> None:
        # Hold the writer thread after its first block so the queue fills up.
        if threading.current_thread().name == "xspress3-hdf5-writer" and status.frames_written:
            release.wait(30)

    w = hdf5.HDF5Writer(max_queued_frames=8, on_status=slow_status, status_interval_s=0.0)
    try:
        w.open_series(tmp_path / "bp.h5", make_start("bp", channels=1, bins=8))
        offered, refused = 0, False
        for _ in range(100):
            if not w.offer(block_values(offered, 4, channels=1, bins=8), timeout=0.0):
                refused = True
                break
            offered += 4
        assert refused and w.queued_frames == 8
        release.set()
        assert w.offer(block_values(offered, 4, channels=1, bins=8), timeout=30)
        offered += 4
        result = w.close_series(timeout=30)
    finally:
        release.set()
        w.close()
    assert (result.frames_written, result.frames_dropped, result.complete) == (offered, 0, True)


def test_block_of_wrong_shape_puts_writer_in_error_but_keeps_draining(writer, tmp_path):
    path = tmp_path / "e.h5"
    writer.open_series(path, make_start("err", channels=2, bins=8))
    assert writer.offer(block_values(0, 4, channels=2, bins=8), timeout=10)
    assert writer.offer(block_values(4, 4, channels=3, bins=8), timeout=10)
    for i in range(2, 6):
        assert writer.offer(block_values(i * 4, 4, channels=2, bins=8), timeout=10)
    result = writer.close_series(timeout=30)
    assert writer.state == "error" and "3 channels x 8 bins" in writer.last_error
    assert result.complete is False and result.frames_written == 4 and result.frames_dropped == 20
    contents = layout.read_frames(path)
    assert contents.count == 4 and contents.attrs["complete"] is False


IO_ERROR = textwrap.dedent("""
    import json, os, sys, time
    from writers_helpers import block_values, make_start
    from xspress3.writers import hdf5
    states = []
    w = hdf5.HDF5Writer(on_status=lambda s: states.append(s.state), status_interval_s=0.0,
                        flush_interval_s=0.0)
    w.open_series(sys.argv[1], make_start("ioerr", channels=4, bins=1024))
    first = 0
    for _ in range(10):
        assert w.offer(block_values(first, 16, channels=4, bins=1024), timeout=30)
        first += 16
    while w.frames_written < first:
        time.sleep(0.01)
    # The storage goes away (think NFS server gone): from now on every write to the
    # file's descriptor fails with EBADF, underneath HDF5.
    fd = w._file._h5.id.get_vfd_handle()
    os.dup2(os.open(os.devnull, os.O_RDONLY), fd)
    for _ in range(10):
        assert w.offer(block_values(first, 16, channels=4, bins=1024), timeout=30)
        first += 16
    r = w.close_series(timeout=30)
    w.close()
    print(json.dumps({"offered": first, "written": r.frames_written, "dropped": r.frames_dropped,
                      "complete": r.complete, "error": r.error, "state": w.state, "states": states}))
""")


def test_io_error_mid_run_closes_file_incomplete_without_crash(tmp_path, subprocess_env):
    """A real I/O failure in a child process (HDF5 would crash on close without the detach)."""
    path = tmp_path / "ioerr.h5"
    proc = subprocess.run([sys.executable, "-c", IO_ERROR, str(path)], capture_output=True, text=True,
                          env=subprocess_env, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    assert report["state"] == "error" and "failed" in report["error"]
    assert report["complete"] is False
    assert report["written"] + report["dropped"] == report["offered"] and report["dropped"] > 0
    assert report["written"] >= 160
    assert report["states"][0] == "writing" and report["states"][-1] == "error"
    contents = layout.read_frames(path)  # what the last good flush wrote
    assert contents.count >= 160 and contents.attrs["complete"] is False
    np.testing.assert_array_equal(contents.spectra, block_values(0, contents.count, channels=4, bins=1024).spectra)


def test_low_disk_space_mid_run_stops_cleanly(tmp_path):
    handle = layout.create(tmp_path / "low.h5", make_start("low", channels=1, bins=4), min_free_bytes=0)
    handle.append(block_values(0, 3, channels=1, bins=4))
    handle.min_free_bytes = 1 << 62  # as if the disk had filled up meanwhile
    with pytest.raises(layout.DiskFullError, match="disk almost full"):
        handle.append(block_values(3, 3, channels=1, bins=4))
    assert not handle.broken
    handle.close(complete=False)
    with h5py.File(tmp_path / "low.h5", "r") as f:  # closed normally: no SWMR needed to open
        assert f["/entry/instrument/detector/data"].shape[0] == 3
        assert f["/entry/end_time"][()] != b""


def test_offer_without_series_is_an_error(writer):
    with pytest.raises(RuntimeError, match="without an open series"):
        writer.offer(block_values(0, 1))
