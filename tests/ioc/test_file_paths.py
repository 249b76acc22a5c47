"""File name and directory checks of HDF1: (in-process, real directories)."""
from __future__ import annotations

import os

import pytest

from xspress3.ioc.file_paths import (NAME_MAX_BYTES, PathRefused, check_file_name, probe_writable,
                                     resolve_directory)


@pytest.mark.parametrize("name, words", [
    ("", "empty"), ("a\0b", "NUL"), ("../../name", "'/'"), ("sub/name", "'/'"), ("..", "not a file"),
    ("x" * (NAME_MAX_BYTES + 1), "255 bytes"), ("é" * 128, "255 bytes"),
])
def test_file_names_that_are_refused(name, words):
    with pytest.raises(PathRefused, match=words):
        check_file_name(name)


def test_file_names_that_are_accepted():
    for name in ("scan_001", "x" * NAME_MAX_BYTES, "é" * 127, "a.b-c"):
        assert check_file_name(name) == name


def test_directories_resolve_and_stay_under_the_data_root(tmp_path):
    root = tmp_path / "data"
    (root / "run1").mkdir(parents=True)
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    (root / "link").symlink_to(outside)
    assert resolve_directory(str(root / "run1"), str(root)) == str(root / "run1")
    assert resolve_directory(str(root / "run1" / ".."), str(root)) == str(root)
    for bad in (root / "run1" / ".." / "..", root / "link", tmp_path / "data2"):
        with pytest.raises(PathRefused, match="outside the data root"):
            resolve_directory(str(bad), str(root))
    (tmp_path / "data2").mkdir()   # a sibling sharing the root's name as a prefix
    with pytest.raises(PathRefused, match="outside"):
        resolve_directory(str(tmp_path / "data2"), str(root))
    # no data root: anything absolute, resolved
    assert resolve_directory(str(root / "link"), None) == str(outside)
    for bad in ("", "relative/dir", "/tmp/a\0b"):
        with pytest.raises(PathRefused):
            resolve_directory(bad, None)


def test_writability_is_probed_not_guessed(tmp_path):
    assert probe_writable(str(tmp_path)) is None
    assert os.listdir(tmp_path) == []          # the scratch file is gone
    assert "not an existing directory" in probe_writable(str(tmp_path / "missing"))
    reason = probe_writable("/proc/self")      # permission bits say writable for root here
    assert reason is not None and "cannot create files" in reason, reason


def target(directory, name="scan", template="%s%s_%6.6d.h5", create=False):
    from xspress3.ioc.filewriter import CaptureTarget
    return CaptureTarget(directory=str(directory), template=template, name=name, number=3,
                         create_directory=create, auto_increment=True, compression="None")


def test_capture_names_the_file_in_the_resolved_directory_only(tmp_path):
    from xspress3.ioc.filewriter import FileCapture
    from xspress3.ioc.publisher import Rejected
    root = tmp_path / "root"
    (root / "a").mkdir(parents=True)
    name_file = FileCapture._name_file
    assert name_file(target(root / "a" / ".." / "a"), str(root)) == str(root / "a" / "scan_000003.h5")
    for bad, words in ((target(root / "a", template="%s../../%s_%d.h5"), "outside FilePath"),
                       (target(root / "a", name="x/y"), "holds '/'"),
                       (target(tmp_path), "outside the data root"),
                       (target(root / "new"), "does not exist")):
        with pytest.raises(Rejected, match=words):
            name_file(bad, str(root))
    assert name_file(target(root / "new" / "deeper", create=True), str(root)).startswith(str(root / "new"))
    (root / "a" / "scan_000003.h5").symlink_to(tmp_path / "gone")   # a dangling link is taken too
    with pytest.raises(Rejected, match="already exists"):
        name_file(target(root / "a"), str(root))


def test_open_failures_are_told_in_the_systems_words(tmp_path):
    from xspress3.ioc.filewriter import open_failure_reason
    assert open_failure_reason(str(tmp_path / "x.h5"), OSError(28, "disk almost full")) == "disk almost full"
    # the writer's own pre-check carries no errno: the directory is asked again
    missing = tmp_path / "missing" / "x.h5"
    assert open_failure_reason(str(missing), FileNotFoundError("directory gone")) == os.strerror(2)
    assert open_failure_reason("/proc/x.h5", PermissionError("not writable")) in (os.strerror(2),
                                                                                  os.strerror(13))
    assert open_failure_reason(str(tmp_path / "x.h5"), ValueError("bad start")) == "bad start"
    assert os.listdir(tmp_path) == []
