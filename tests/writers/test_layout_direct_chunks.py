"""Whole-chunk writes that bypass HDF5's chunk cache: every value still lands where it belongs.

Full-size frames (4 x 4096 uint32) make 16-frame chunks, so blocks of uneven
sizes leave chunks unfinished at their ends: those rows wait for the next block
(and are written padded at a flush), whole chunks go to the encoding pool.
"""
from __future__ import annotations

import threading

import h5py
import hdf5plugin  # noqa: F401  (registers the bitshuffle filter for reading)
import numpy as np
import pytest

from xspress3.writers import layout

from writers_helpers import block_values, make_start

SIZES = [5, 27, 16, 40, 3, 1, 32, 9]   # chunk boundaries fall inside, between and at block edges


def write(path, sizes, compression="None", dtype="<u4", flush_after=()):
    start = make_start("chunks", channels=4, bins=4096, dtc_applied=dtype == "<f8")
    assert layout.chunk_frames(start) == (16 if dtype == "<u4" else 8)
    handle = layout.create(path, start, compression)
    blocks, first = [], 0
    for i, n in enumerate(sizes):
        block = block_values(first, n, channels=4, bins=4096, dtype=dtype)
        handle.append(block)
        blocks.append(block)
        first += n
        if i in flush_after:
            handle.flush()
            with h5py.File(path, "r", swmr=True) as reader:   # a partly filled chunk is visible too
                np.testing.assert_array_equal(reader[layout.DATA][()],
                                              np.concatenate([b.spectra for b in blocks]))
    handle.close(complete=True)
    return np.concatenate([b.spectra for b in blocks])


@pytest.mark.parametrize("compression", ["None", "BSLZ4"])
def test_uneven_blocks_read_back_value_by_value(tmp_path, compression):
    path = tmp_path / "d.h5"
    expected = write(path, SIZES, compression, flush_after=(1,))
    contents = layout.read_frames(path)
    assert contents.count == sum(SIZES)
    np.testing.assert_array_equal(contents.spectra, expected)
    np.testing.assert_array_equal(contents.frame_numbers, np.arange(sum(SIZES)))


@pytest.mark.parametrize("compression", ["None", "BSLZ4"])
def test_a_flush_inside_a_chunk_shows_every_row_and_the_chunk_is_finished_later(tmp_path, compression):
    """After each flush a SWMR reader sees exactly the rows appended so far (the
    unfinished chunk written padded); the next blocks rewrite that chunk whole."""
    path = tmp_path / "u.h5"
    sizes = [5, 27, 16, 40, 3, 1, 32, 9, 7]
    expected = write(path, sizes, compression, flush_after=tuple(range(len(sizes))))
    np.testing.assert_array_equal(layout.read_frames(path).spectra, expected)
    with h5py.File(path, "r") as f:
        dsid = f[layout.DATA].id
        assert dsid.get_num_chunks() == -(-sum(sizes) // 16)
        assert [dsid.get_chunk_info(i).chunk_offset[0] for i in range(dsid.get_num_chunks())] == \
            list(range(0, sum(sizes), 16))


def test_more_chunks_than_may_wait_in_the_pool_are_stored_in_order(tmp_path):
    """Blocks of many chunks: the writing thread goes on while chunks compress,
    but never leaves more than PENDING_CHUNKS in the pool (they hold the blocks'
    memory), and stores each chunk at its own row."""
    path = tmp_path / "m.h5"
    handle = layout.create(path, make_start("many", channels=4, bins=4096), "BSLZ4")
    blocks, first = [], 0
    for n in (16 * 3 * layout.PENDING_CHUNKS + 5, 16 * 3 * layout.PENDING_CHUNKS, 11):
        blocks.append(block_values(first, n, channels=4, bins=4096))
        handle.append(blocks[-1])
        assert len(handle._pending) <= layout.PENDING_CHUNKS
        first += n
    handle.close(complete=True)
    np.testing.assert_array_equal(layout.read_frames(path).spectra, np.concatenate([b.spectra for b in blocks]))


@pytest.mark.parametrize("compression", ["None", "BSLZ4"])
def test_deadtime_corrected_float_spectra_take_the_same_path(tmp_path, compression):
    path = tmp_path / "f.h5"
    expected = write(path, [3, 8, 21, 8], compression, dtype="<f8")
    with h5py.File(path, "r") as f:
        data = f[layout.DATA]
        assert data.dtype == np.float64 and data.shape == (40, 4, 4096)
        np.testing.assert_array_equal(data[()], expected)


def test_whole_chunks_are_stored_unfiltered_and_complete(tmp_path):
    """A raw chunk write of the wrong size or offset would show in the chunk index."""
    path = tmp_path / "i.h5"
    write(path, [16, 32, 7])
    with h5py.File(path, "r") as f:
        dsid = f[layout.DATA].id
        assert dsid.get_num_chunks() == 4
        for i in range(4):
            info = dsid.get_chunk_info(i)
            assert info.chunk_offset == (16 * i, 0, 0) and info.filter_mask == 0
            assert info.size == 16 * 4 * 4096 * 4


@pytest.mark.parametrize("dtype", ["<u4", "<f8"])
def test_bslz4_chunks_encoded_here_equal_what_the_hdf5_filter_stores(tmp_path, dtype):
    """Our encoder (bitshuffle package) against the filter (hdf5plugin) on the same
    data, chunk by chunk, byte by byte: readers see no difference."""
    path = tmp_path / "b.h5"
    expected = write(path, [16, 32, 7], "BSLZ4", dtype=dtype)
    k = 16 if dtype == "<u4" else 8
    with h5py.File(path, "a") as f:
        ours = f[layout.DATA]
        assert layout.raw_chunk_encoder(ours) is not None
        ref = f.create_dataset("reference", data=expected, chunks=ours.chunks,
                               **layout.compression_options("BSLZ4"))
        whole = len(expected) // k
        assert whole >= 3
        for i in range(whole):
            offset = (i * k, 0, 0)
            mask, stored = ours.id.read_direct_chunk(offset)
            ref_mask, ref_stored = ref.id.read_direct_chunk(offset)
            assert mask == ref_mask == 0
            assert stored == ref_stored
            assert len(stored) < expected[:k].nbytes   # compressed, not raw
        np.testing.assert_array_equal(ours[()], expected)


@pytest.mark.parametrize("compression", ["zlib", "LZ4", "Blosc"])
def test_other_filters_are_left_to_hdf5(tmp_path, compression):
    path = tmp_path / "o.h5"
    expected = write(path, [16, 20], compression)
    with h5py.File(path, "r") as f:
        assert layout.raw_chunk_encoder(f[layout.DATA]) is None
        np.testing.assert_array_equal(f[layout.DATA][()], expected)


def test_chunks_compress_on_the_pool_with_one_openmp_thread_each(tmp_path):
    """bitshuffle's OpenMP threads busy-wait on the cores the readout needs: every
    encoding thread is limited to one; a thread outside the pool keeps its own."""
    from threadpoolctl import threadpool_info

    def openmp_threads() -> list:
        return [p["num_threads"] for p in threadpool_info() if p["internal_api"] == "openmp"]

    expected = write(tmp_path / "p.h5", [64, 48], "BSLZ4")   # whole chunks: the pool is used
    pool = layout.encode_pool()
    seen = [pool.submit(openmp_threads).result() for _ in range(4 * layout.ENCODE_THREADS)]
    assert seen and all(threads == [1] for threads in seen), seen
    assert openmp_threads(), "bitshuffle's OpenMP runtime is not loaded"
    names = [pool.submit(lambda: threading.current_thread().name).result() for _ in range(4)]
    assert all(name.startswith("xspress3-encode") for name in names)
    np.testing.assert_array_equal(layout.read_frames(tmp_path / "p.h5").spectra, expected)


@pytest.mark.parametrize("dtype, tail", [(np.float64, ()), (np.int64, ()), (np.uint32, (4, 9))])
def test_append_rows_writes_what_resize_and_write_direct_write(tmp_path, dtype, tail):
    rng = np.random.default_rng(7)
    with h5py.File(tmp_path / "rows.h5", "w", libver="latest") as h5:
        ours = h5.create_dataset("ours", shape=(0,) + tail, maxshape=(None,) + tail, chunks=(64,) + tail, dtype=dtype)
        ref = h5.create_dataset("ref", shape=(0,) + tail, maxshape=(None,) + tail, chunks=(64,) + tail, dtype=dtype)
        first = 0
        for m in (1, 63, 64, 100, 7):
            rows = (rng.random((m,) + tail) * 1e6).astype(dtype)
            layout._append_rows(ours, first, rows[::1])
            ref.resize(first + m, axis=0)
            ref.write_direct(rows, dest_sel=np.s_[first:first + m])
            first += m
        assert ours.shape == ref.shape == (first,) + tail
        np.testing.assert_array_equal(ours[()], ref[()])


def test_per_frame_values_staged_across_flushes_read_back(tmp_path):
    path = tmp_path / "staged.h5"
    start = make_start("staged", channels=4, bins=64)
    handle = layout.create(path, start, "None")
    first, blocks = 0, []
    for i, n in enumerate([3, 50, 1, 17]):
        blocks.append(block_values(first, n, channels=4, bins=64))
        handle.append(blocks[-1])
        first += n
        if i % 2 == 0:
            handle.flush()
            with h5py.File(path, "r", swmr=True) as reader:
                assert reader[layout.FRAME_NUMBERS].shape == (first,)
                assert reader[layout.SCALERS].shape == (first, 4, 9)
    handle.close(complete=True)
    got = layout.read_frames(path)
    assert got.count == first
    with h5py.File(path, "r") as h5:
        np.testing.assert_array_equal(h5[layout.FRAME_NUMBERS][()], np.arange(first))
        np.testing.assert_array_equal(h5[layout.SCALERS][()], np.concatenate([b.scalers for b in blocks]))
        dtf = h5[f"{layout.NDATTRIBUTES}/{layout.ndattribute_name(2, 'DTFactor')}"][()]
        np.testing.assert_array_equal(dtf, np.concatenate([b.dtfactor[:, 1] for b in blocks]))
