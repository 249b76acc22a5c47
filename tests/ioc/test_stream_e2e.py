"""End to end: IOC (simulator, fixed seed) -> zmq stream -> xspress3-receive -> HDF5.

The files are read back and compared value by value with the frames the
driver read (carried by a second, in-test receiver where needed, or with the
IOC's own built-in writer file of the same run).
"""
from __future__ import annotations

import signal
import subprocess
import sys
import time

import h5py
import numpy as np
import pytest

from xspress3.writers import layout


def start_receiver(ioc, out, *extra):
    proc = subprocess.Popen([sys.executable, "-m", "xspress3.writers.receive", "--connect",
                             ioc.stream_endpoint, "--output", str(out), "--quiet", *extra],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    ioc.wait_for("det1:StreamReceivers_RBV", lambda v: v >= 1, timeout=20)
    return proc


def capture_and_run(ioc, directory, name, frames, exposure=0.001):
    """One run written by the built-in writer too; returns its file path."""
    ioc.put("det1:NumImages", frames)
    ioc.put("det1:AcquireTime", exposure)
    ioc.put("HDF1:FilePath", str(directory))
    ioc.put("HDF1:FileName", name)
    ioc.put("HDF1:Capture", 1, wait=False)
    ioc.wait_for("HDF1:Capture_RBV", lambda v: v == "Capturing", timeout=10)
    path = ioc.get("HDF1:FullFileName_RBV")
    ioc.put("det1:Acquire", 1, wait=True, timeout=60)
    ioc.wait_for("HDF1:Capture_RBV", lambda v: v == "Done", timeout=20)
    return path


def wait_files(directory, count, timeout=20):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        files = sorted(directory.glob("*.h5"))
        if len(files) >= count:
            return files
        time.sleep(0.1)
    raise TimeoutError(f"{count} files not written in {directory}")


def test_receiver_file_equals_the_built_in_writer_file(fresh_ioc, tmp_path):
    ioc = fresh_ioc
    ioc.put("SIM:Seed", 1234)
    received = tmp_path / "received"
    received.mkdir()
    proc = start_receiver(ioc, received, "--max-series", "1")
    builtin = capture_and_run(ioc, tmp_path, "builtin", 300)
    out, _ = proc.communicate(timeout=30)
    assert proc.returncode == 0, out
    (rfile,) = wait_files(received, 1)
    a = layout.read_frames(rfile)
    b = layout.read_frames(builtin)
    assert a.spectra.shape == (300, 4, 4096)
    np.testing.assert_array_equal(a.spectra, b.spectra)
    np.testing.assert_array_equal(a.scalers, b.scalers)
    np.testing.assert_array_equal(a.dtfactor, b.dtfactor)
    np.testing.assert_array_equal(a.dtpercent, b.dtpercent)
    assert a.spectra.sum() > 0
    # ALL_GOOD of every frame and channel is the histogram total of that spectrum
    np.testing.assert_array_equal(a.scalers[:, :, 4], a.spectra.sum(axis=2))
    with h5py.File(rfile, "r") as f:
        assert bool(f["/entry/instrument/detector/complete"][()])
    assert ioc.get("det1:StreamFramesSent_RBV") == 300
    assert ioc.get("det1:StreamFramesLost_RBV") == 0


def test_partial_spectrum_run_writes_only_the_chosen_bins(fresh_ioc, tmp_path):
    ioc = fresh_ioc
    ioc.put("det1:RecordMinX", 600)
    ioc.put("det1:RecordSizeX", 256)
    received = tmp_path / "received"
    received.mkdir()
    proc = start_receiver(ioc, received, "--max-series", "1")
    builtin = capture_and_run(ioc, tmp_path, "partial", 20)
    proc.communicate(timeout=30)
    (rfile,) = wait_files(received, 1)
    for path in (rfile, builtin):
        contents = layout.read_frames(path)
        assert contents.spectra.shape == (20, 4, 256)
        np.testing.assert_allclose(contents.energy, (600 + np.arange(256)) * 10.0)
    spectrum = ioc.get("MCA1:ArrayData")
    np.testing.assert_array_equal(spectrum[600:856], layout.read_frames(rfile).spectra[-1, 0])
    assert spectrum[:600].sum() == 0 and spectrum[856:].sum() == 0


def test_receiver_killed_mid_run_and_restarted(fresh_ioc, tmp_path):
    ioc = fresh_ioc
    out1, out2 = tmp_path / "one", tmp_path / "two"
    out1.mkdir()
    out2.mkdir()
    first = start_receiver(ioc, out1)
    ioc.put("det1:NumImages", 4000)
    ioc.put("det1:AcquireTime", 0.001)
    ioc.put("det1:Acquire", 1, wait=False)
    ioc.wait_for("det1:ArrayCounter_RBV", lambda v: v > 300, timeout=20)
    first.send_signal(signal.SIGKILL)
    first.wait(10)
    time.sleep(0.3)
    second = start_receiver(ioc, out2, "--max-series", "2")
    ioc.wait_for("det1:Acquire_RBV", lambda v: v == "Done", timeout=60)
    assert ioc.get("det1:DetectorState_RBV") == "Idle"
    assert ioc.get("det1:ArrayCounter_RBV") == 4000          # the IOC was not affected
    sent = ioc.get("det1:StreamFramesSent_RBV")
    lost = ioc.get("det1:StreamFramesLost_RBV")
    assert sent + lost == 4000
    reasons = ioc.get("det1:StreamLostReason_RBV")
    assert lost > 0 and reasons, "killing the receiver mid-run lost nothing?"
    counted = {k: int(v) for k, v in (r.split(": ") for r in reasons.split("; "))}
    assert sum(counted.values()) == lost
    assert set(counted) <= {"receiver gone", "no receiver"}, reasons
    # the restarted receiver picked the series up mid-way and wrote what it got
    ioc.put("det1:NumImages", 10)
    ioc.put("det1:Acquire", 1, wait=True, timeout=30)
    output, _ = second.communicate(timeout=30)
    assert second.returncode == 0, output
    files = sorted(out2.glob("*.h5"))
    assert len(files) == 2
    first_series, second_series = (layout.read_frames(f) for f in files)
    assert second_series.count == 10
    np.testing.assert_array_equal(second_series.frame_numbers, np.arange(10))
    # mid-series pick-up: frame numbers say exactly which frames this file holds
    numbers = first_series.frame_numbers
    assert 0 < len(numbers) < 4000 and (np.diff(numbers) > 0).all() and numbers[-1] == 3999
    # the killed receiver left a file h5py can open (SWMR), with what it flushed
    killed = sorted(out1.glob("*.h5"))
    assert len(killed) == 1
    with h5py.File(killed[0], "r", swmr=True) as f:
        assert f["/entry/instrument/detector/data"].shape[1:] == (4, 4096)
        in_killed = f["/entry/instrument/detector/frame_numbers"].shape[0]
    # exact accounting: every frame of the run is in one of the two files or counted lost
    assert in_killed + len(numbers) == sent
    # the second file names the frames it lacks: the ones before it joined
    missing = first_series.attrs["missing_frames"]
    assert missing[:, 1].sum() == 4000 - len(numbers)
    assert missing[0, 0] == 0


@pytest.mark.skipif(sys.platform != "linux", reason="needs mount(8) and tmpfs")
def test_full_filesystem_is_reported_and_acquisition_completes(fresh_ioc, tmp_path):
    ioc = fresh_ioc
    mnt = tmp_path / "small"
    mnt.mkdir()
    result = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(mnt)],
                            capture_output=True, text=True)
    if result.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {result.stderr.strip()}")
    try:
        path = capture_and_run(ioc, mnt, "full", 200)
        assert ioc.get("det1:DetectorState_RBV") == "Idle"
        assert ioc.get("det1:ArrayCounter_RBV") == 200
        assert ioc.get("HDF1:WriteStatus") == "Write error"
        message = ioc.get("HDF1:WriteMessage")
        assert "full" in message or "space" in message, message
        assert ioc.get("HDF1:Capture_RBV") == "Done"
        if (mnt / path.split("/")[-1]).exists():
            with h5py.File(path, "r", swmr=True) as f:
                assert not bool(f["/entry/instrument/detector/complete"][()])
    finally:
        subprocess.run(["umount", "-l", str(mnt)], capture_output=True)


def test_receiver_reconnects_when_the_ioc_restarts(tmp_path):
    from iochelp import IocProcess
    out = tmp_path / "received"
    out.mkdir()
    first = IocProcess(tmp_path, monitor=False).start()
    receiver = None
    try:
        receiver = start_receiver(first, out, "--max-series", "2")
        first.put("det1:NumImages", 7)
        first.put("det1:AcquireTime", 0.001)
        first.put("det1:Acquire", 1, wait=True, timeout=30)
        wait_files(out, 1)
    finally:
        assert first.stop() == 0
    second = IocProcess(tmp_path, monitor=False, stream_port=first.stream_port).start()
    try:
        second.wait_for("det1:StreamReceivers_RBV", lambda v: v >= 1, timeout=30)
        second.put("det1:NumImages", 9)
        second.put("det1:AcquireTime", 0.001)
        second.put("det1:Acquire", 1, wait=True, timeout=30)
        output, _ = receiver.communicate(timeout=30)
        assert receiver.returncode == 0, output
    finally:
        if receiver.poll() is None:
            receiver.kill()
        assert second.stop() == 0
    counts = sorted(layout.read_frames(f).count for f in out.glob("*.h5"))
    assert counts == [7, 9]


@pytest.mark.parametrize("transport", ["shared", "copy"])
def test_full_rate_stream_keeps_every_frame_intact(tmp_path, transport):
    """Blocks reuse recycled buffers (ioc/readout.py SpectrumBuffers): at full rate, with
    the stream and the file writer holding blocks, no frame may be overwritten by a
    later one. Each frame's ALL_GOOD scaler (read separately) must equal its spectrum sum.
    Frame memory holds the whole run, so the detector never overruns and back-pressure
    from the consumers is what is exercised. "shared": the receiver on this host maps
    the IOC's frame memory (writers/shared_frames.py), so a block the readout reused
    while the receiver still wrote it would show here; "copy": every frame over the socket."""
    from iochelp import running_ioc
    with running_ioc(tmp_path, frames_memory=32768, monitor=True) as ioc:
        received = tmp_path / "received"
        received.mkdir()
        extra = ["--log-level", "INFO"] + (["--no-shared-memory"] if transport == "copy" else [])
        proc = start_receiver(ioc, received, "--max-series", "1", *extra)
        ioc.wait_for("det1:StreamShared_RBV", lambda v: v == ("Yes" if transport == "shared" else "No"),
                     timeout=10)
        builtin = capture_and_run(ioc, tmp_path, "fast", 20000, exposure=0.00002)
        out, _ = proc.communicate(timeout=60)
        assert proc.returncode == 0, out
        assert ("frames come by shared memory" in out) == (transport == "shared"), out
        (rfile,) = wait_files(received, 1)
        for path in (rfile, builtin):
            contents = layout.read_frames(path)
            assert contents.count == 20000
            np.testing.assert_array_equal(contents.frame_numbers, np.arange(20000))
            np.testing.assert_array_equal(contents.scalers[:, :, 4], contents.spectra.sum(axis=2))
        assert ioc.get("det1:StreamFramesLost_RBV") == 0


def test_a_second_receiver_is_refused_and_the_first_gets_every_frame(fresh_ioc, tmp_path):
    """issue 16: a second client used to take a round-robin share (101 of 200 messages,
    the start among them). Now it is refused, says why, and the IOC logs it."""
    ioc = fresh_ioc
    one, two = tmp_path / "one", tmp_path / "two"
    one.mkdir()
    two.mkdir()
    first = start_receiver(ioc, one, "--max-series", "1")
    second = subprocess.Popen([sys.executable, "-m", "xspress3.writers.receive", "--connect",
                               ioc.stream_endpoint, "--output", str(two), "--quiet"],
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        out2, _ = second.communicate(timeout=30)
        assert second.returncode == 3, out2
        assert "refused this receiver" in out2 and "holds the stream" in out2
        ioc.put("det1:NumImages", 200)
        ioc.put("det1:AcquireTime", 0.001)
        ioc.put("det1:Acquire", 1, wait=True, timeout=60)
        out1, _ = first.communicate(timeout=30)
    finally:
        for proc in (first, second):
            if proc.poll() is None:
                proc.kill()
    assert first.returncode == 0, out1
    (rfile,) = wait_files(one, 1)
    contents = layout.read_frames(rfile)
    np.testing.assert_array_equal(contents.frame_numbers, np.arange(200))
    assert contents.attrs["complete"] is True
    assert list(two.iterdir()) == []
    assert ioc.get("det1:StreamFramesSent_RBV") == 200
    assert ioc.get("det1:StreamFramesLost_RBV") == 0
    assert "stream: refused xspress3-receive" in ioc.output()


def test_a_slow_receiver_sets_the_pace_and_the_ioc_says_so(fresh_ioc):
    """A receiver with a window of four frames that reads slowly: the IOC waits for its
    credit instead of losing frames, and StreamPaced_RBV shows how long it waited."""
    import threading

    from xspress3.writers import wire
    from xspress3.writers.stream import StreamReceiver

    ioc = fresh_ioc
    frame_bytes = 4 * 4096 * 4
    got: list = []
    done = threading.Event()

    def slow_reader():
        with StreamReceiver(ioc.stream_endpoint, window_bytes=4 * frame_bytes) as rx:
            while not done.is_set():
                msg = rx.recv(timeout=0.2)
                if isinstance(msg, wire.FrameBlock):
                    got.extend(range(msg.first_frame, msg.first_frame + msg.count))
                    time.sleep(0.005 * msg.count)   # 5 ms per frame
                elif isinstance(msg, wire.SeriesEnd):
                    return

    reader = threading.Thread(target=slow_reader, daemon=True)
    reader.start()
    try:
        ioc.wait_for("det1:StreamReceivers_RBV", lambda v: v == 1, timeout=20)
        ioc.put("det1:NumImages", 300)
        ioc.put("det1:AcquireTime", 0.0001)
        ioc.put("det1:Acquire", 1, wait=True, timeout=60)
        reader.join(20)
    finally:
        done.set()
    assert sorted(got) == list(range(300))
    assert ioc.get("det1:StreamFramesSent_RBV") == 300
    assert ioc.get("det1:StreamFramesLost_RBV") == 0
    paced = ioc.get("det1:StreamPaced_RBV")
    # the reader takes 5 ms per frame (1.5 s) while the detector makes them in 30 ms:
    # the IOC waited for its credit a good part of that time (a block larger than the window
    # goes alone into an empty one)
    assert paced > 0.2, paced
