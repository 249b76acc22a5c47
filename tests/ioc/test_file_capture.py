"""HDF1: capture through the built-in writer, read back value by value."""
from __future__ import annotations

import os

import h5py
import hdf5plugin  # noqa: F401  (registers the bitshuffle filter for reading)
import numpy as np
import pytest

from test_rois_scas import receive_run


def arm_capture(ioc, directory, name, frames=None):
    ioc.put("HDF1:FilePath", str(directory))
    ioc.put("HDF1:FileName", name)
    ioc.put("HDF1:FileNumber", 7)
    ioc.put("HDF1:AutoIncrement", "Yes")
    if frames is not None:
        ioc.put("HDF1:NumCapture", frames)
    ioc.put("HDF1:Capture", 1, wait=False)
    ioc.wait_for("HDF1:Capture_RBV", lambda v: v == "Capturing", timeout=10)


# (compression, frames, exposure): at 0.1 ms the readout reads blocks of many frames,
# so whole 16-frame chunks are compressed on the encoding pool and written raw
@pytest.mark.parametrize("compression,frames,exposure", [("None", 50, 0.002), ("BSLZ4", 400, 0.0001)])
def test_capture_writes_every_frame_the_stream_carried(ioc, tmp_path, compression, frames, exposure):
    ioc.put("det1:TriggerMode", "Internal")
    ioc.put("HDF1:Compression", compression)
    ioc.put("det1:NumImages", frames)            # copied into HDF1:NumCapture
    assert ioc.get("HDF1:NumCapture_RBV") == frames
    arm_capture(ioc, tmp_path, "run")
    expected = ioc.get("HDF1:FullFileName_RBV")
    assert expected == os.path.join(str(tmp_path), "run_000007.h5")
    blocks, end = receive_run(ioc, frames, exposure=exposure)
    ioc.wait_for("HDF1:Capture_RBV", lambda v: v == "Done", timeout=20)
    ioc.put("HDF1:Compression", "None")
    assert ioc.get("HDF1:NumCaptured_RBV") == frames
    assert ioc.get("HDF1:WriteStatus") == "Write OK"
    assert ioc.get("HDF1:FileNumber_RBV") == 8
    spectra = np.concatenate([b.spectra for b in blocks])
    scalers = np.concatenate([b.scalers for b in blocks])
    dtfactor = np.concatenate([b.dtfactor for b in blocks])
    with h5py.File(expected, "r") as f:
        data = f["/entry/instrument/detector/data"]
        assert data.shape == (frames, 4, 4096) and data.dtype == np.uint32
        assert data.attrs["compression"] == compression
        if compression == "BSLZ4":
            assert data.id.get_storage_size() < spectra.nbytes / 2
        np.testing.assert_array_equal(data[()], spectra)
        np.testing.assert_array_equal(f["/entry/instrument/detector/scalers"][()], scalers)
        for n in range(1, 5):
            attrs = f["/entry/instrument/NDAttributes"]
            for k in range(8):
                np.testing.assert_array_equal(attrs[f"CHAN{n}SCA{k}"][()], scalers[:, n - 1, k])
            np.testing.assert_allclose(attrs[f"CHAN{n}DTFactor"][()], dtfactor[:, n - 1])
        assert f["/entry"].attrs["default"] == "data"


def test_capture_spans_several_runs_until_numcapture(ioc, tmp_path):
    """Step-scan style: Capture once, then one Acquire per point."""
    ioc.put("det1:NumImages", 2)
    ioc.put("HDF1:NumCapture", 6)
    arm_capture(ioc, tmp_path, "steps")
    path = ioc.get("HDF1:FullFileName_RBV")
    for point in range(3):
        ioc.put("det1:Acquire", 1, wait=True, timeout=30)
    ioc.wait_for("HDF1:Capture_RBV", lambda v: v == "Done", timeout=20)
    with h5py.File(path, "r") as f:
        assert f["/entry/instrument/detector/data"].shape[0] == 6


def test_capture_zero_closes_the_file_promptly(ioc, tmp_path):
    """NumCapture larger than what arrives: Capture=0 must not hang (nslsii unstage)."""
    ioc.put("det1:NumImages", 3)
    ioc.put("HDF1:NumCapture", 1000)
    arm_capture(ioc, tmp_path, "short")
    path = ioc.get("HDF1:FullFileName_RBV")
    ioc.put("det1:Acquire", 1, wait=True, timeout=30)
    assert ioc.get("HDF1:Capture_RBV") == "Capturing"
    ioc.put("HDF1:Capture", 0, wait=True, timeout=20)
    assert ioc.get("HDF1:Capture_RBV") == "Done"
    with h5py.File(path, "r") as f:
        assert f["/entry/instrument/detector/data"].shape[0] == 3


def test_unwritable_directory_is_refused_at_capture_with_the_os_reason(ioc, tmp_path):
    """/proc takes no new files, whatever the permission bits say (also for root)."""
    ioc.put("HDF1:FilePath", "/proc/")
    assert ioc.get("HDF1:FilePathExists_RBV") == "No"
    ioc.put("HDF1:FileName", "denied")
    with pytest.raises(Exception):
        ioc.put_checked("HDF1:Capture", 1, timeout=10)
    assert ioc.get("HDF1:Capture_RBV") == "Done"
    assert ioc.get("HDF1:WriteStatus") == "Write error"
    message = ioc.get("HDF1:WriteMessage")
    assert "cannot create files in /proc:" in message and "disk" not in message, message
    reason = message.rsplit(": ", 1)[1]
    assert reason in {os.strerror(e) for e in range(1, 134)}, message   # the system's words
    blocks, end = receive_run(ioc, 5)
    assert end.frames_sent == 5 and end.frames_lost == 0
    assert ioc.get("det1:DetectorState_RBV") == "Idle"
    ioc.put("HDF1:FilePath", str(tmp_path))
    assert ioc.get("HDF1:FilePathExists_RBV") == "Yes"


def test_a_directory_under_a_regular_file_says_why(ioc, tmp_path):
    """Unwritable for root too: the path runs through a regular file."""
    (tmp_path / "plain").write_text("not a directory")
    ioc.put("HDF1:FilePath", str(tmp_path / "plain" / "sub"))
    assert ioc.get("HDF1:FilePathExists_RBV") == "No"
    ioc.put("HDF1:FileName", "nowhere")
    ioc.put("HDF1:CreateDirectory", -1)
    try:
        with pytest.raises(Exception):
            ioc.put_checked("HDF1:Capture", 1, timeout=10)
    finally:
        ioc.put("HDF1:CreateDirectory", 0)
    message = ioc.get("HDF1:WriteMessage")
    assert message == f"cannot create {tmp_path / 'plain' / 'sub'}: {os.strerror(20)}", message
    assert ioc.get("HDF1:Capture_RBV") == "Done"


def test_open_failure_reports_the_os_error_and_counts_every_frame_not_written(ioc, tmp_path):
    """The directory goes away between Capture=1 and the run: the open fails with the
    system's reason, NumCaptured_RBV is 0 for this capture (not the previous file's
    count) and FramesDropped_RBV counts all 7 frames of the run."""
    dropped_before = ioc.get("HDF1:DroppedArrays_RBV")
    ioc.put("HDF1:NumCapture", 3)
    ioc.put("det1:NumImages", 3)
    arm_capture(ioc, tmp_path, "before")
    ioc.put("det1:Acquire", 1, wait=True, timeout=30)
    ioc.wait_for("HDF1:Capture_RBV", lambda v: v == "Done", timeout=20)
    assert ioc.get("HDF1:NumCaptured_RBV") == 3
    doomed = tmp_path / "doomed"
    doomed.mkdir()
    arm_capture(ioc, doomed, "lost", frames=20)
    assert ioc.get("HDF1:NumCaptured_RBV") == 0             # a new file, counted afresh
    doomed.rmdir()
    blocks, end = receive_run(ioc, 7)
    assert end.frames_sent == 7
    ioc.wait_for("HDF1:Capture_RBV", lambda v: v == "Done", timeout=20)
    assert ioc.get("HDF1:WriteStatus") == "Write error"
    message = ioc.get("HDF1:WriteMessage")
    assert message.startswith(f"cannot open {doomed}/lost_000007.h5: ")
    assert message.endswith(os.strerror(2)) and "disk" not in message, message
    ioc.wait_for("HDF1:FramesDropped_RBV", lambda v: v == 7, timeout=10)
    assert ioc.get("HDF1:NumCaptured_RBV") == 0
    # the plugin's count sums captures until it is written or ERASEd
    assert ioc.get("HDF1:DroppedArrays_RBV") == dropped_before + 7
    ioc.put("det1:ERASE", 1)
    ioc.wait_for("HDF1:DroppedArrays_RBV", lambda v: v == 0, timeout=10)
    assert not doomed.exists()


def test_missing_directory_and_existing_file(ioc, tmp_path):
    ioc.put("HDF1:FilePath", str(tmp_path / "nope" / "deeper"))
    with pytest.raises(Exception):
        ioc.put_checked("HDF1:Capture", 1, timeout=10)
    assert "does not exist" in ioc.get("HDF1:WriteMessage")
    ioc.put("HDF1:FilePath", str(tmp_path))
    ioc.put("HDF1:FileName", "taken")
    ioc.put("HDF1:FileNumber", 1)
    (tmp_path / "taken_000001.h5").write_bytes(b"already here")
    with pytest.raises(Exception):
        ioc.put_checked("HDF1:Capture", 1, timeout=10)
    assert "already exists" in ioc.get("HDF1:WriteMessage")
    assert (tmp_path / "taken_000001.h5").read_bytes() == b"already here"
    ioc.put("HDF1:CreateDirectory", -1)
    ioc.put("HDF1:FilePath", str(tmp_path / "made" / "here"))
    assert os.path.exists(ioc.capture_run(2))


def test_deadtime_corrected_capture_is_float64(ioc, tmp_path):
    ioc.put("det1:CTRL_DTC", "Enable")
    try:
        assert ioc.get("det1:CTRL_DTC_RBV") == "Enabled"
        assert ioc.get("det1:DataType_RBV") == "Float64"
        ioc.put("det1:NumImages", 4)
        arm_capture(ioc, tmp_path, "dtc", frames=4)
        path = ioc.get("HDF1:FullFileName_RBV")
        ioc.put("det1:Acquire", 1, wait=True, timeout=30)
        ioc.wait_for("HDF1:Capture_RBV", lambda v: v == "Done", timeout=20)
    finally:
        ioc.put("det1:CTRL_DTC", "Disable")
    with h5py.File(path, "r") as f:
        data = f["/entry/instrument/detector/data"][()]
        scalers = f["/entry/instrument/detector/scalers"][()]
        factor = f["/entry/instrument/NDAttributes/CHAN1DTFactor"][()]
    assert data.dtype == np.float64
    # corrected counts: the histogram total (ALL_GOOD) times the frame's deadtime factor
    np.testing.assert_allclose(data[:, 0].sum(axis=1), scalers[:, 0, 4] * factor)
    assert (factor > 1.0).all()
