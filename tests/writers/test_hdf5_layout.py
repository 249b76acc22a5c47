"""HDF5 layout: values, NeXus structure, compression, SWMR and crash behaviour."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap

import h5py
import hdf5plugin  # noqa: F401  (registers the LZ4 / bitshuffle / Blosc filters for reading)
import numpy as np
import pytest

from xspress3.writers import layout, wire

from writers_helpers import block_values, make_start


def write_blocks(path, start, sizes, compression="None", dtype="<u4"):
    handle = layout.create(path, start, compression)
    blocks, first = [], 0
    for n in sizes:
        b = block_values(first, n, channels=start.channels, bins=start.bins, dtype=dtype)
        handle.append(b)
        blocks.append(b)
        first += n
    handle.close(complete=True)
    return blocks


def concat(blocks, name):
    return np.concatenate([getattr(b, name) for b in blocks])


def test_values_and_structure_read_back_with_h5py(tmp_path):
    start = make_start("vals", channels=3, bins=50, first_bin=20, ev_per_bin=10.0, exposure_s=0.25,
                       frames_expected=24, trigger_mode="TTL Veto Only")
    path = tmp_path / "vals.h5"
    blocks = write_blocks(path, start, [5, 1, 10, 8])
    spectra, scalers = concat(blocks, "spectra"), concat(blocks, "scalers")
    with h5py.File(path, "r") as f:
        data = f["/entry/instrument/detector/data"]
        assert data.shape == (24, 3, 50) and data.dtype == np.uint32 and data.maxshape == (None, 3, 50)
        np.testing.assert_array_equal(data[()], spectra)
        np.testing.assert_array_equal(f["/entry/instrument/detector/scalers"][()], scalers)
        assert list(f["/entry/instrument/detector/scalers"].attrs["scaler_names"]) == list(wire.SCALER_NAMES)
        np.testing.assert_array_equal(f["/entry/instrument/detector/frame_numbers"][()], np.arange(24))
        nd = f["/entry/instrument/NDAttributes"]
        for n in (1, 2, 3):  # 1-based channel numbers, as areaDetector writes them
            for k in range(8):
                np.testing.assert_array_equal(nd[f"CHAN{n}SCA{k}"][()], scalers[:, n - 1, k])
            np.testing.assert_array_equal(nd[f"CHAN{n}DTFactor"][()], concat(blocks, "dtfactor")[:, n - 1])
            np.testing.assert_array_equal(nd[f"CHAN{n}DTPercent"][()], concat(blocks, "dtpercent")[:, n - 1])
            np.testing.assert_array_equal(nd[f"CHAN{n}EventWidth"][()], np.full(24, start.event_width[n - 1]))
        assert "CHAN4SCA0" not in nd
        # NeXus: classes and the default plot
        assert f.attrs["default"] == "entry" and f["/entry"].attrs["default"] == "data"
        for group, cls in [("/entry", "NXentry"), ("/entry/instrument", "NXinstrument"),
                           ("/entry/instrument/detector", "NXdetector"),
                           ("/entry/instrument/NDAttributes", "NXcollection"), ("/entry/data", "NXdata")]:
            assert f[group].attrs["NX_class"] == cls
        nxdata = f["/entry/data"]
        assert nxdata.attrs["signal"] == "data"
        assert list(nxdata.attrs["axes"]) == [".", ".", "energy"]
        assert nxdata["data"].id == data.id  # a hard link, not a copy
        energy = nxdata["energy"]
        assert energy.attrs["units"] == "eV"
        np.testing.assert_array_equal(energy[()], (20 + np.arange(50)) * 10.0)
        det = f["/entry/instrument/detector"]
        assert det["count_time"][()] == 0.25 and det["count_time"].attrs["units"] == "s"
        assert det["trigger_mode"][()].decode() == "TTL Veto Only"
        assert det["number_of_channels"][()] == 3
        assert det["info/simulated"][()] and det["info/model"][()].decode() == "Xspress3 (simulated)"
        assert det["frames_expected"][()] == 24 and det["frames_written"][()] == 24
        assert bool(det["complete"][()]) is True
        assert f["/entry/end_time"][()].decode().startswith("20")
        assert f["/entry/start_time"][()].decode() == start.start_time
        assert f["/entry/entry_identifier"][()].decode() == "vals"


@pytest.mark.parametrize("compression", layout.COMPRESSIONS)
def test_each_compression_round_trips(tmp_path, compression):
    start = make_start("comp", channels=2, bins=300)
    path = tmp_path / "c.h5"
    blocks = write_blocks(path, start, [7, 9], compression)
    contents = layout.read_frames(path)
    np.testing.assert_array_equal(contents.spectra, concat(blocks, "spectra"))
    assert contents.attrs["compression"] == compression
    with h5py.File(path, "r") as f:
        filters = f["/entry/instrument/detector/data"]._filters
    expected = {"None": set(), "zlib": {"gzip"}, "LZ4": {"32004"}, "BSLZ4": {"32008"}, "Blosc": {"32001"}}
    assert set(filters) == expected[compression]


@pytest.mark.parametrize("name", layout.UNSUPPORTED_COMPRESSIONS + ("gzip",))
def test_other_compressions_are_refused(tmp_path, name):
    with pytest.raises(ValueError, match="not supported" if name != "gzip" else "unknown compression"):
        layout.create(tmp_path / "x.h5", make_start(), name)
    assert not (tmp_path / "x.h5").exists()


def test_float64_when_deadtime_corrected(tmp_path):
    start = make_start("dtc", channels=2, bins=16, dtc_applied=True)
    blocks = write_blocks(tmp_path / "d.h5", start, [3, 3], dtype="<f8")
    with h5py.File(tmp_path / "d.h5", "r") as f:
        data = f["/entry/instrument/detector/data"]
        assert data.dtype == np.float64
        np.testing.assert_array_equal(data[()], concat(blocks, "spectra"))
        assert bool(f["/entry/instrument/detector/dtc_applied"][()])


def test_float_spectra_need_dtc_applied(tmp_path):
    handle = layout.create(tmp_path / "f.h5", make_start("f", channels=1, bins=4))
    with pytest.raises(ValueError, match="dtc_applied=False"):
        handle.append(block_values(0, 1, channels=1, bins=4, dtype="<f8"))
    handle.close(complete=False)


def test_more_frames_than_staging_buffer(tmp_path):
    start = make_start("long", channels=1, bins=4)
    n = layout.STAGE_FRAMES + 1000
    blocks = write_blocks(tmp_path / "l.h5", start, [n // 2, n - n // 2])
    contents = layout.read_frames(tmp_path / "l.h5")
    assert contents.count == n
    np.testing.assert_array_equal(contents.dtpercent, concat(blocks, "dtpercent"))
    np.testing.assert_array_equal(contents.frame_numbers, np.arange(n))


def test_swmr_reader_follows_the_writer(tmp_path):
    start = make_start("swmr", channels=2, bins=8)
    path = tmp_path / "s.h5"
    writer = layout.create(path, start)
    writer.append(block_values(0, 4, channels=2, bins=8))
    writer.flush()
    with h5py.File(path, "r", swmr=True) as reader:
        data = reader["/entry/instrument/detector/data"]
        dtf = reader["/entry/instrument/NDAttributes/CHAN2DTFactor"]
        assert data.shape[0] == 4
        writer.append(block_values(4, 6, channels=2, bins=8))
        writer.flush()
        data.refresh()
        dtf.refresh()
        assert data.shape[0] == 10 and dtf.shape[0] == 10
        np.testing.assert_array_equal(data[4:10], block_values(4, 6, channels=2, bins=8).spectra)
        writer.close(complete=True)


KILLED_WRITER = textwrap.dedent("""
    import sys
    from writers_helpers import block_values, make_start
    from xspress3.writers import layout
    start = make_start("killed", channels=2, bins=32)
    handle = layout.create(sys.argv[1], start, flush_interval_s=0.0)  # flush after every block
    first = 0
    while True:
        handle.append(block_values(first, 5, channels=2, bins=32))
        first += 5
        print(first, flush=True)
""")


def test_killed_writer_leaves_a_readable_file(tmp_path, subprocess_env):
    path = tmp_path / "killed.h5"
    proc = subprocess.Popen([sys.executable, "-c", KILLED_WRITER, str(path)], stdout=subprocess.PIPE,
                            text=True, env=subprocess_env)
    try:
        flushed = 0
        while flushed < 200:
            line = proc.stdout.readline()
            assert line, "writer ended early"
            flushed = int(line)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(30)
        proc.stdout.close()
    contents = layout.read_frames(path)
    assert contents.count >= flushed
    assert contents.attrs["complete"] is False and contents.attrs["end_time"] == ""
    assert contents.attrs["frames_written"] >= flushed
    expected = block_values(0, contents.count, channels=2, bins=32)
    np.testing.assert_array_equal(contents.spectra, expected.spectra)
    np.testing.assert_array_equal(contents.dtfactor, expected.dtfactor)
    with h5py.File(path, "r", swmr=True) as f:  # plain h5py opens it in SWMR read mode
        assert f["/entry/instrument/detector/data"].shape[0] >= flushed


def test_missing_directory_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match=f"directory {tmp_path / 'nope'} does not exist"):
        layout.create(tmp_path / "nope" / "x.h5", make_start())


def test_parent_that_is_a_file_is_a_clear_error(tmp_path):
    (tmp_path / "afile").write_text("")
    with pytest.raises(NotADirectoryError, match="is not a directory"):
        layout.create(tmp_path / "afile" / "x.h5", make_start())


def test_existing_file_is_not_overwritten(tmp_path):
    write_blocks(tmp_path / "x.h5", make_start(), [1])
    with pytest.raises(FileExistsError, match="file exists"):
        layout.create(tmp_path / "x.h5", make_start())
    layout.create(tmp_path / "x.h5", make_start("again"), overwrite=True).close(complete=True)
    assert layout.read_frames(tmp_path / "x.h5").attrs["series_id"] == "again"


def test_unwritable_directory_is_a_clear_error(tmp_path):
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        if os.access(locked, os.W_OK):  # root ignores permissions: use a directory nobody may write
            locked = "/proc"
        with pytest.raises(OSError, match=f"cannot create .*{locked}.*x.h5"):
            layout.create(os.path.join(locked, "x.h5"), make_start(), min_free_bytes=0)
    finally:
        (tmp_path / "locked").chmod(0o700)


def test_almost_full_disk_is_refused_before_creating(tmp_path):
    with pytest.raises(layout.DiskFullError, match="disk almost full"):
        layout.create(tmp_path / "x.h5", make_start(), min_free_bytes=1 << 62)
    assert not (tmp_path / "x.h5").exists()


def test_block_of_other_shape_is_refused(tmp_path):
    handle = layout.create(tmp_path / "x.h5", make_start(channels=2, bins=8))
    with pytest.raises(ValueError, match="3 channels x 8 bins"):
        handle.append(block_values(0, 1, channels=3, bins=8))
    handle.close(complete=False)
    assert layout.read_frames(tmp_path / "x.h5").attrs["complete"] is False


def test_flush_is_time_based(tmp_path):
    """With a zero interval every append flushes: a SWMR reader sees each block at once."""
    path = tmp_path / "t.h5"
    writer = layout.create(path, make_start(channels=1, bins=4), flush_interval_s=0.0)
    writer.append(block_values(0, 3, channels=1, bins=4))
    with h5py.File(path, "r", swmr=True) as reader:
        assert reader["/entry/instrument/detector/frames_written"][()] == 3
        assert reader["/entry/instrument/NDAttributes/CHAN1SCA3"].shape == (3,)
    writer.close(complete=True)
