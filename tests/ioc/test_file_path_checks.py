"""HDF1 file names and directories over Channel Access with `--data-root`: what a
put refuses (a put error, a status message, nothing stored) and where a capture
writes (real IOC, real files)."""
from __future__ import annotations

import subprocess
import sys

import h5py
import numpy as np
import pytest
from caproto import ChannelType, ErrorResponse

from iochelp import IocProcess


@pytest.fixture(scope="module")
def rooted(tmp_path_factory):
    """An IOC whose files must stay under <base>/data (which holds a link to <base>/outside)."""
    base = tmp_path_factory.mktemp("rooted")
    (base / "data" / "run").mkdir(parents=True)
    (base / "outside").mkdir()
    (base / "data" / "link").symlink_to(base / "outside")
    proc = IocProcess(base, "--data-root", str(base / "data")).start()
    proc.base = base
    try:
        yield proc
    finally:
        assert proc.stop() == 0, proc.output()[-4000:]


def put_text(ioc, suffix, raw: bytes):
    """A CHAR waveform put of exactly these bytes; the IOC's response."""
    pv = ioc._pv(suffix, 5)
    return pv.write(np.frombuffer(raw, dtype=np.uint8), wait=True, timeout=10,
                    data_type=ChannelType.CHAR)


def test_the_default_file_path_outside_the_root_becomes_the_root(rooted):
    """First in this file: the IOC just started. Its default FilePath (/tmp/) lies
    outside the data root, so it starts at the root instead, ready to capture."""
    root = str(rooted.base / "data") + "/"
    assert rooted.get("HDF1:FilePath_RBV") == root
    assert rooted.get("HDF1:FilePath") == root
    assert rooted.get("HDF1:FilePathExists_RBV") == "Yes"
    assert "HDF1:FilePath set to the data root" in rooted.output()


@pytest.mark.parametrize("raw, words", [
    (b"../../name\0", "holds '/'"), (b"sub/name\0", "holds '/'"),
    (b"ab\0cd\0", "NUL character followed by more text"), (b"x" * 256, "longer than 255 bytes"),
    (b"..\0", "not a file name"),
])
def test_bad_file_names_are_refused_at_the_put(rooted, raw, words):
    rooted.put("HDF1:FileName", "good")
    response = put_text(rooted, "HDF1:FileName", raw)
    assert isinstance(response, ErrorResponse), response
    message = rooted.get("det1:StatusMessage_RBV")
    assert "FileName rejected" in message and words in message, message
    assert rooted.get("HDF1:FileName") == rooted.get("HDF1:FileName_RBV") == "good"


def test_paths_outside_the_data_root_are_refused(rooted):
    base = rooted.base
    inside = str(base / "data" / "run")
    rooted.put("HDF1:FilePath", inside)
    assert rooted.get("HDF1:FilePathExists_RBV") == "Yes"
    for bad in (f"{inside}/../..", str(base / "data" / "link"), str(base / "data2"), "/tmp", "/proc/self",
                "data/run"):
        response = put_text(rooted, "HDF1:FilePath", bad.encode() + b"\0")
        assert isinstance(response, ErrorResponse), bad
        message = rooted.get("det1:StatusMessage_RBV")
        assert "FilePath rejected" in message, message
        assert ("outside the data root" in message) or ("not an absolute path" in message), message
        assert rooted.get("HDF1:FilePath") == rooted.get("HDF1:FilePath_RBV") == inside
    # '..' that stays inside is accepted: the file goes where the path resolves
    rooted.put("HDF1:FilePath", f"{inside}/../run/")
    assert rooted.get("HDF1:FilePath_RBV") == f"{inside}/../run/"


def test_capture_writes_under_the_root_and_a_template_cannot_leave_it(rooted):
    base = rooted.base
    rooted.put("HDF1:FilePath", str(base / "data" / "run" / ".." / "run"))
    rooted.put("HDF1:FileName", "kept")
    rooted.put("HDF1:FileNumber", 1)
    rooted.put("HDF1:FileTemplate", "%s../../%s_%d.h5")
    with pytest.raises(Exception):
        rooted.put_checked("HDF1:Capture", 1, timeout=10)
    assert "puts the file outside FilePath" in rooted.get("HDF1:WriteMessage")
    assert not (base / "kept_1.h5").exists()
    rooted.put("HDF1:FileTemplate", "%s%s_%6.6d.h5")
    path = base / "data" / "run" / "kept_000001.h5"
    assert rooted.capture_run(2) == str(path)
    with h5py.File(path, "r") as f:
        assert f["/entry/instrument/detector/data"].shape[0] == 2
    assert rooted.get("HDF1:NumCaptured_RBV") == 2 and rooted.get("HDF1:FramesDropped_RBV") == 0


def test_a_data_root_that_is_no_directory_stops_the_ioc(tmp_path):
    (tmp_path / "file").write_text("x")
    for root in (tmp_path / "missing", tmp_path / "file"):
        done = subprocess.run([sys.executable, "-m", "xspress3.ioc.main", "--data-root", str(root),
                               "--settings", "none", "--stream", "none", "--monitor", "none"],
                              capture_output=True, text=True, timeout=60)
        assert done.returncode == 2 and "not an existing directory" in done.stderr, done.stderr
