"""The HDF5 file layout: the one place that knows dataset paths, dtypes and chunking.

The layout is the one the areaDetector Xspress3 IOC writes (spectra at
``/entry/instrument/detector/data``, per-frame ``CHAN{n}...`` datasets under
``/entry/instrument/NDAttributes``), so readers written for those files open
ours unchanged; on top it is proper NeXus (NX_class everywhere, a default
NXdata plot with an energy axis in eV). ``db_docs/hdf5-layout.md`` describes it.

Files are written in SWMR mode: everything is created first, then only
appended to, and flushed at least every ``flush_interval_s``, so a reader can
follow a running acquisition and a killed writer leaves every flushed frame.
"""
from __future__ import annotations

import collections
import contextlib
import errno
import logging
import os
import struct
import tempfile
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Optional, Union

import bitshuffle
import h5py
import hdf5plugin
from h5py import h5s
import numpy as np
from threadpoolctl import threadpool_limits

from xspress3 import vocabulary

from . import wire

log = logging.getLogger(__name__)

LAYOUT_VERSION = 1

ENTRY = "/entry"
INSTRUMENT = "/entry/instrument"
DETECTOR = "/entry/instrument/detector"
DATA = "/entry/instrument/detector/data"
SCALERS = "/entry/instrument/detector/scalers"
FRAME_NUMBERS = "/entry/instrument/detector/frame_numbers"
FRAMES_WRITTEN = "/entry/instrument/detector/frames_written"
FRAMES_EXPECTED = "/entry/instrument/detector/frames_expected"
MISSING_FRAMES = "/entry/instrument/detector/missing_frames"
COMPLETE = "/entry/instrument/detector/complete"
DETECTOR_INFO = "/entry/instrument/detector/info"
NDATTRIBUTES = "/entry/instrument/NDAttributes"
NXDATA = "/entry/data"
NXDATA_SIGNAL = "/entry/data/data"
ENERGY = "/entry/data/energy"
START_TIME = "/entry/start_time"
END_TIME = "/entry/end_time"

#: areaDetector ``Compression`` enum strings that this writer supports.
COMPRESSIONS: tuple[str, ...] = tuple(c.value for c in vocabulary.SUPPORTED_COMPRESSIONS)
#: areaDetector ``Compression`` enum strings that exist there but not here.
UNSUPPORTED_COMPRESSIONS: tuple[str, ...] = tuple(
    c.value for c in vocabulary.Compression if c not in vocabulary.SUPPORTED_COMPRESSIONS)

#: SCA numbering of the areaDetector attributes: CHAN{n}SCA{k} is scaler k for k < 8.
NUM_SCA_ATTRIBUTES = vocabulary.SCA_SCALERS
#: Per-channel NDAttribute suffixes in the order of the in-memory staging buffer
#: (the SCA columns: the scalers, then EventWidth, DTFactor, DTPercent).
NDATTR_SUFFIXES: tuple[str, ...] = tuple(f"SCA{k}" for k in range(NUM_SCA_ATTRIBUTES)) + \
    vocabulary.SCA_LABELS[NUM_SCA_ATTRIBUTES:]

CHUNK_TARGET_BYTES = 1 << 20
#: Elements per bitshuffle block of BSLZ4 chunks (2048 x uint32 = 8 KiB, the filter's default).
BSLZ4_BLOCK_ELEMENTS = 2048
_BSHUF_LZ4 = 2   # the bitshuffle filter's cd_values[4] for LZ4
#: Writing stops (DiskFullError) when less than this would remain free.
MIN_FREE_BYTES = 256 << 20
ATTR_CHUNK_FRAMES = 4096
STAGE_FRAMES = 16384
_END_TIME_DTYPE = "S64"


def ndattribute_name(channel: int, suffix: str) -> str:
    """areaDetector attribute name; ``channel`` is 1-based as in the IOC."""
    return f"CHAN{channel}{suffix}"


def compression_options(name: str) -> dict[str, Any]:
    """``create_dataset`` keyword arguments for an areaDetector Compression choice."""
    Compression = vocabulary.Compression
    try:
        choice = Compression(name)
    except ValueError:
        raise ValueError(f"unknown compression {name!r}; choose one of {', '.join(COMPRESSIONS)}") from None
    if choice not in vocabulary.SUPPORTED_COMPRESSIONS:
        raise ValueError(f"compression {name!r} not supported; choose one of {', '.join(COMPRESSIONS)}")
    if choice is Compression.NONE:
        return {}
    if choice is Compression.ZLIB:
        return {"compression": "gzip", "compression_opts": 1}
    if choice is Compression.LZ4:
        return dict(hdf5plugin.LZ4())
    if choice is Compression.BSLZ4:
        return dict(hdf5plugin.Bitshuffle(nelems=BSLZ4_BLOCK_ELEMENTS, cname="lz4"))
    return dict(hdf5plugin.Blosc(cname="lz4", clevel=5, shuffle=hdf5plugin.Blosc.SHUFFLE))


def chunk_frames(start: wire.SeriesStart) -> int:
    """Frames per spectra chunk: about 1 MiB per chunk."""
    frame_bytes = start.channels * start.bins * start.spectrum_dtype.itemsize
    return max(1, CHUNK_TARGET_BYTES // frame_bytes)


def _check_free_space(path: Path, reserve: int, incoming: int, action: str) -> None:
    if not reserve:
        return
    st = os.statvfs(path.parent)
    free = st.f_bavail * st.f_frsize
    if free < reserve + incoming:
        raise DiskFullError(errno.ENOSPC, f"disk almost full: {free // 2**20} MiB free for {path}; {action} "
                            f"to keep {reserve // 2**20} MiB in reserve")


def _check_target(path: Path, overwrite: bool) -> None:
    """Fail early with a message a beamline user can act on."""
    parent = path.parent
    if not parent.exists():
        raise FileNotFoundError(f"cannot create {path}: directory {parent} does not exist")
    if not parent.is_dir():
        raise NotADirectoryError(f"cannot create {path}: {parent} is not a directory")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise PermissionError(f"cannot create {path}: directory {parent} is not writable")
    if path.exists() and not overwrite:
        raise FileExistsError(f"cannot create {path}: file exists")


ChunkEncoder = Callable[[np.ndarray], Any]


def _as_is(chunk: np.ndarray) -> np.ndarray:
    """The encoder of unfiltered chunks: stored as they are."""
    return chunk


def raw_chunk_encoder(data: h5py.Dataset) -> Optional[ChunkEncoder]:
    """How a whole chunk of `data` becomes the bytes stored on disk, for H5Dwrite_chunk,
    which skips HDF5's filter pipeline; None when only HDF5 itself can encode it.

    Unfiltered chunks are stored as they are. Bitshuffle-LZ4 chunks are encoded by the
    bitshuffle package into exactly what the HDF5 filter stores (a 12-byte header:
    uncompressed size as big-endian uint64 and block size in bytes as big-endian
    uint32; then the LZ4-compressed blocks), so every reader decodes them with the
    usual filter. The package has AVX2 code and releases the GIL, where the filter
    in hdf5plugin's wheels is SSE2 only and holds the writing thread: ~3x less time
    per chunk (benchmarks/README.md).
    """
    plist = data.id.get_create_plist()
    filters = plist.get_nfilters()
    if filters == 0:
        return _as_is
    if filters > 1:
        return None
    filter_id, _flags, cd_values, _name = plist.get_filter(0)
    if filter_id != hdf5plugin.BSHUF_ID or len(cd_values) < 5 or cd_values[4] != _BSHUF_LZ4:
        return None
    block = int(cd_values[3])
    if block == 0:   # the filter's own default; our files always name the block size
        return None

    def encode(chunk: np.ndarray) -> np.ndarray:
        packed = bitshuffle.compress_lz4(chunk, block)
        out = np.empty(12 + packed.nbytes, dtype=np.uint8)
        out[:12] = np.frombuffer(struct.pack(">QI", chunk.nbytes, block * chunk.itemsize),
                                 dtype=np.uint8)
        out[12:] = packed
        return out

    return encode


#: Threads that compress whole chunks side by side (shared by all open files).
ENCODE_THREADS = max(1, min(4, os.cpu_count() or 1))
#: Whole chunks a file may have in the pool before its writing thread waits: two
#: readout blocks of 1 MiB chunks, so the pool works on one block while the next
#: one is queued, instead of idling at the end of each block.
PENDING_CHUNKS = 16
_encode_pool: Optional[ThreadPoolExecutor] = None
_encode_pool_lock = threading.Lock()


def _one_openmp_thread() -> None:
    # bitshuffle's OpenMP would add a thread per core to each encoding thread,
    # busy-waiting between chunks on cores the readout and zmq need. The limit is
    # per thread and stays for the pool thread's life.
    threadpool_limits(limits=1, user_api="openmp")


def encode_pool() -> ThreadPoolExecutor:
    """The pool that compresses chunks: bitshuffle releases the GIL, so a block's
    chunks compress on several cores while the writing thread stores the finished
    ones in order. Compressing on the writing thread alone capped the built-in
    BSLZ4 writer near 18 000 frames/s with the machine ~40 % idle."""
    global _encode_pool
    with _encode_pool_lock:
        if _encode_pool is None:
            _encode_pool = ThreadPoolExecutor(ENCODE_THREADS, thread_name_prefix="xspress3-encode",
                                              initializer=_one_openmp_thread)
        return _encode_pool


class WriteError(OSError):
    """HDF5 failed to write (I/O error, disk full...); the handle is broken."""


class DiskFullError(OSError):
    """Free space fell below the reserve; the file is intact and can be closed."""


class SeriesFile:
    """One open HDF5 file receiving the frames of one series (use ``create``)."""

    def __init__(self, path: Path, h5: h5py.File, start: wire.SeriesStart, flush_interval_s: float,
                 min_free_bytes: int) -> None:
        self.path = path
        self.start = start
        self.flush_interval_s = flush_interval_s
        self.min_free_bytes = min_free_bytes
        self.frames_written = 0
        self.frames_flushed = 0   # frames a reader (or a kill) finds in the file
        self.closed = False
        self.broken = False
        self._h5 = h5
        self._data = h5[DATA]
        self._chunk_rows = self._data.chunks[0]
        self._encode_chunk = raw_chunk_encoder(self._data)
        # The chunk not yet whole (its filled rows: frames_written % chunk rows), and
        # whole chunks handed to the encoding pool, stored in order as they finish.
        self._open_chunk: Optional[np.ndarray] = None
        self._pending: collections.deque = collections.deque()
        self._scalers = h5[SCALERS]
        self._frame_numbers = h5[FRAME_NUMBERS]
        self._frames_written_ds = h5[FRAMES_WRITTEN]
        self._missing_ds = h5[MISSING_FRAMES]
        self._missing: list[tuple[int, int]] = []
        self._missing_written = 0
        self._attr_ds = [
            [h5[f"{NDATTRIBUTES}/{ndattribute_name(c + 1, s)}"] for s in NDATTR_SUFFIXES]
            for c in range(start.channels)
        ]
        # Per-frame values (scalers, NDAttributes, frame numbers) are staged and written
        # once per flush: ~50 small writes per block would cost more than the spectra.
        self._stage = np.empty((start.channels, len(NDATTR_SUFFIXES), STAGE_FRAMES), dtype=np.float64)
        self._stage_numbers = np.empty(STAGE_FRAMES, dtype=np.int64)
        self._stage_scalers = np.empty((STAGE_FRAMES, start.channels, wire.NUM_SCALERS), dtype=np.uint32)
        self._staged = 0
        self._attrs_written = 0
        widths = list(start.event_width) or [float("nan")] * start.channels
        self._event_width = np.asarray(widths, dtype=np.float64)
        self._last_flush = time.monotonic()

    def append(self, block: wire.FrameBlock) -> None:
        """Write one block: one resize and one write of the spectra; per-frame values staged.

        Raises ValueError for a block of another shape (nothing written), DiskFullError
        when the free space falls below ``min_free_bytes`` (the file can still be closed
        normally) and WriteError when HDF5 fails (the handle is then broken).
        """
        if self.closed:
            raise ValueError(f"{self.path} is closed")
        n = block.count
        if n == 0:
            return
        if (block.channels, block.bins) != (self.start.channels, self.start.bins):
            raise ValueError(
                f"block has {block.channels} channels x {block.bins} bins, series "
                f"{self.start.series_id} has {self.start.channels} x {self.start.bins}"
            )
        if block.spectra.dtype.kind == "f" and self._data.dtype.kind != "f":
            raise ValueError(f"float (deadtime-corrected) spectra, but series {self.start.series_id} "
                             "was started with dtc_applied=False")
        self._check_space(block.spectra.nbytes + block.scalers.nbytes)
        with self._guard("write"):
            i = self.frames_written
            # H5Dset_extent itself: Dataset.resize costs ~12 us more per block in Python
            self._data.id.set_extent((i + n, self.start.channels, self.start.bins))
            self._write_spectra(i, np.ascontiguousarray(block.spectra, dtype=self._data.dtype))
            done = 0
            while done < n:
                take = min(n - done, STAGE_FRAMES - self._staged)
                self._stage_rows(block, done, take)
                done += take
                if self._staged == STAGE_FRAMES:
                    self._write_staged()
            self.frames_written = i + n
        if time.monotonic() - self._last_flush >= self.flush_interval_s:
            self.flush()

    def _write_spectra(self, first: int, spectra: np.ndarray) -> None:
        """Write rows first.. of the spectra dataset (already resized to hold them).

        Where we can encode chunks ourselves (`raw_chunk_encoder`), every chunk goes
        to the file whole and encoded (H5Dwrite_chunk), skipping HDF5's chunk cache
        and filter (uncompressed: user CPU per 4 x 4096 frame 12-14 -> 3-6 us;
        benchmarks/README.md). Rows of a chunk that a block leaves unfinished wait
        in `_open_chunk` for the next block, so blocks need not line up with chunks.
        Whole chunks compress on the encoding pool while this thread goes on with
        the next block; they are stored in order (`_store_finished`).
        """
        if self._encode_chunk is None:
            self._data.write_direct(spectra, dest_sel=np.s_[first:first + spectra.shape[0]])
            return
        n, k = spectra.shape[0], self._chunk_rows
        done, filled = 0, first % k   # appends are consecutive: rows first.. continue the open chunk
        if filled:
            done = min(n, k - filled)
            self._open_chunk[filled:filled + done] = spectra[:done]
            if filled + done == k:
                self._submit(first - filled, self._open_chunk)
                self._open_chunk = None
        while n - done >= k:
            self._submit(first + done, spectra[done:done + k])
            done += k
        if done < n:
            self._open_chunk = np.zeros((k,) + spectra.shape[1:], dtype=spectra.dtype)
            self._open_chunk[:n - done] = spectra[done:]
        self._store_finished(wait=False)

    def _submit(self, row: int, chunk: np.ndarray) -> None:
        if self._encode_chunk is _as_is:
            self._pending.append((row, chunk))
        else:
            self._pending.append((row, encode_pool().submit(self._encode_chunk, chunk)))

    def _store_finished(self, wait: bool) -> None:
        """Write pending chunks in order: those already encoded, and while more than
        PENDING_CHUNKS wait, the oldest as soon as it is; with ``wait``, all."""
        while self._pending:
            row, item = self._pending[0]
            if isinstance(item, Future):
                if not (wait or item.done() or len(self._pending) > PENDING_CHUNKS):
                    return
                item = item.result()
            self._data.id.write_direct_chunk((row, 0, 0), item)
            self._pending.popleft()

    def _write_appended(self) -> None:
        """Every appended frame in the file (for a flush or the close): the pending
        spectra chunks, then the unfinished chunk, padded, as a whole chunk (the rows
        past the dataset's extent are never read; the next block writes the chunk
        again), the staged per-frame values and the frame count."""
        self._store_finished(wait=True)
        if self._open_chunk is not None:
            row = self.frames_written - self.frames_written % self._chunk_rows
            self._data.id.write_direct_chunk((row, 0, 0), self._encode_chunk(self._open_chunk))
        self._write_staged()
        self._write_missing()
        self._frames_written_ds[()] = self.frames_written

    def note_missing(self, first_frame: int, count: int) -> None:
        """Record frames of the series that will never be in this file (written with the
        next flush or the close)."""
        if count > 0:
            self._missing.append((int(first_frame), int(count)))

    def _write_missing(self) -> None:
        new = self._missing[self._missing_written:]
        if not new:
            return
        a = self._missing_written
        self._missing_ds.resize(a + len(new), axis=0)
        self._missing_ds[a:a + len(new)] = np.asarray(new, dtype=np.int64)
        self._missing_written = a + len(new)

    def _check_space(self, incoming: int) -> None:
        """Stop before the disk is full: HDF5 cannot close a file after a failed write."""
        _check_free_space(self.path, self.min_free_bytes, incoming, "stopped writing")

    @contextlib.contextmanager
    def _guard(self, what: str) -> Iterator[None]:
        """Turn any HDF5 failure into WriteError and mark the handle broken."""
        if self.broken:
            raise WriteError(f"{self.path} is unusable after an earlier error")
        try:
            yield
        except Exception as exc:
            self.broken = True
            raise WriteError(f"{what} to {self.path} failed: {exc}") from exc

    def _stage_rows(self, block: wire.FrameBlock, offset: int, count: int) -> None:
        s, e = self._staged, self._staged + count
        rows = slice(offset, offset + count)
        self._stage[:, :NUM_SCA_ATTRIBUTES, s:e] = block.scalers[rows, :, :NUM_SCA_ATTRIBUTES].transpose(1, 2, 0)
        self._stage[:, NUM_SCA_ATTRIBUTES, s:e] = self._event_width[:, None]
        self._stage[:, NUM_SCA_ATTRIBUTES + 1, s:e] = block.dtfactor[rows].T
        self._stage[:, NUM_SCA_ATTRIBUTES + 2, s:e] = block.dtpercent[rows].T
        self._stage_numbers[s:e] = np.arange(block.first_frame + offset, block.first_frame + offset + count)
        self._stage_scalers[s:e] = block.scalers[rows]
        self._staged = e

    def _write_staged(self) -> None:
        """Append the staged per-frame values to their datasets (once per flush and at the
        close). Through h5py's low-level calls (H5Dset_extent, a hyperslab, H5Dwrite):
        Dataset.resize + write_direct cost ~60 us per dataset in Python against ~25,
        i.e. 3.3 against 1.6 ms per flush for the 4 x 11 NDAttributes (~0.5 us per
        frame at a flush every 0.25 s and 12 000 frames/s)."""
        m = self._staged
        if m == 0:
            return
        a = self._attrs_written
        for c, datasets in enumerate(self._attr_ds):
            for j, ds in enumerate(datasets):
                _append_rows(ds, a, self._stage[c, j, :m])
        _append_rows(self._frame_numbers, a, self._stage_numbers[:m])
        _append_rows(self._scalers, a, self._stage_scalers[:m])
        self._attrs_written = a + m
        self._staged = 0

    def flush_if_due(self) -> None:
        """Flush if the last flush is older than ``flush_interval_s`` (for idle writers)."""
        if not self.closed and time.monotonic() - self._last_flush >= self.flush_interval_s:
            self.flush()

    def flush(self) -> None:
        """Make every appended frame visible to SWMR readers and durable against a kill."""
        with self._guard("flush"):
            self._write_appended()
            self._h5.flush()
        self.frames_flushed = self.frames_written
        self._last_flush = time.monotonic()

    def close(self, complete: bool) -> None:
        """Flush, record end_time and the complete flag, close; the handle always ends closed.

        A broken handle (earlier WriteError) is closed without touching the file again;
        the file then keeps complete=False and what its last good flush wrote.
        """
        if self.closed:
            return
        if not self.broken:
            try:
                with self._guard("close"):
                    self._write_appended()
                    self._h5[COMPLETE][()] = bool(complete)
                    self._h5[END_TIME][()] = wire.utc_now_iso().encode("ascii")
                    self._h5.flush()
                    self.frames_flushed = self.frames_written
                    self._drop_datasets()
                    self.closed = True
                    self._h5.close()
                log.info("closed %s: %d frames, complete=%s", self.path, self.frames_written, complete)
                return
            except WriteError:
                log.error("closing %s failed; detaching it", self.path)
        self._detach_and_close()
        if complete:
            raise WriteError(f"{self.path} could not be completed; it is left incomplete")

    def _drop_datasets(self) -> None:
        self._data = self._scalers = self._frame_numbers = self._frames_written_ds = None  # type: ignore[assignment]
        self._missing_ds = None  # type: ignore[assignment]
        self._attr_ds = []
        self._pending.clear()
        self._open_chunk = None

    def _detach_and_close(self) -> None:
        """Close a file HDF5 can no longer write.

        After a failed write HDF5 still tries to flush on close, fails again and
        later crashes the process (h5py issues 914 and 2160). Pointing the file's
        descriptor at an in-memory sink first lets the close succeed; the file on
        disk keeps what its last good flush wrote.
        """
        self.closed = True
        self.broken = True
        try:
            fd = self._h5.id.get_vfd_handle()
            sink = _memory_sink()
            try:
                os.dup2(sink, fd)
            finally:
                os.close(sink)
        except Exception:
            log.exception("cannot detach %s from HDF5; leaving it open", self.path)
            _BROKEN.append(self)  # never freed: freeing it could crash the process
            return
        self._drop_datasets()
        try:
            self._h5.close()
        except Exception:
            log.exception("closing detached %s failed", self.path)
            _BROKEN.append(self)
        log.warning("closed %s after a write error: %d frames, incomplete", self.path, self.frames_written)


def _append_rows(ds: h5py.Dataset, first: int, rows: np.ndarray) -> None:
    """Extend ``ds`` along axis 0 to ``first + len(rows)`` and write ``rows`` (C-contiguous,
    the dataset's dtype, its other dimensions) at ``first``: what ``ds.resize`` and
    ``ds.write_direct(rows, dest_sel=np.s_[first:...])`` do, without their Python."""
    rows = np.ascontiguousarray(rows)
    ds.id.set_extent((first + rows.shape[0],) + rows.shape[1:])
    fspace = ds.id.get_space()
    fspace.select_hyperslab((first,) + (0,) * (rows.ndim - 1), rows.shape)
    ds.id.write(h5s.create_simple(rows.shape), fspace, rows)


#: Handles HDF5 could not close; kept referenced so that no destructor runs on them.
_BROKEN: list[SeriesFile] = []


def _memory_sink() -> int:
    """A writable, truncatable descriptor that does not touch the (full) disk."""
    if hasattr(os, "memfd_create"):
        return os.memfd_create("xspress3-hdf5-sink")
    with tempfile.TemporaryFile() as tmp:
        return os.dup(tmp.fileno())


def _string(group: h5py.Group, name: str, value: str) -> h5py.Dataset:
    return group.create_dataset(name, data=value, dtype=h5py.string_dtype())


def _nx(group: h5py.Group, nx_class: str) -> h5py.Group:
    group.attrs["NX_class"] = nx_class
    return group


def _info_value(value: Any) -> Any:
    if isinstance(value, (bool, int, float, str)):
        return value
    return str(value)


def _build(h5: h5py.File, start: wire.SeriesStart, compression: str) -> None:
    ch, bins = start.channels, start.bins
    h5.attrs["NX_class"] = "NXroot"
    h5.attrs["default"] = "entry"
    h5.attrs["creator"] = "xspress3-ioc"
    h5.attrs["layout_version"] = LAYOUT_VERSION
    h5.attrs["file_time"] = wire.utc_now_iso()
    h5.attrs["HDF5_Version"] = h5py.version.hdf5_version
    h5.attrs["h5py_version"] = h5py.version.version

    entry = _nx(h5.create_group(ENTRY), "NXentry")
    entry.attrs["default"] = "data"
    _string(entry, "entry_identifier", start.series_id)
    _string(entry, "program_name", "xspress3-ioc")
    _string(entry, "start_time", start.start_time)
    entry.create_dataset("end_time", data=np.bytes_(b""), dtype=_END_TIME_DTYPE)

    instrument = _nx(h5.create_group(INSTRUMENT), "NXinstrument")
    det = _nx(instrument.create_group("detector"), "NXdetector")
    k = chunk_frames(start)
    data = det.create_dataset(
        "data", shape=(0, ch, bins), maxshape=(None, ch, bins), chunks=(k, ch, bins),
        dtype=start.spectrum_dtype, **compression_options(compression),
    )
    data.attrs["units"] = "counts"
    data.attrs["compression"] = compression
    data.attrs["interpretation"] = "spectrum"
    scalers = det.create_dataset(
        "scalers", shape=(0, ch, wire.NUM_SCALERS), maxshape=(None, ch, wire.NUM_SCALERS),
        chunks=(ATTR_CHUNK_FRAMES, ch, wire.NUM_SCALERS), dtype=np.uint32,
    )
    scalers.attrs["scaler_names"] = list(start.scaler_names)
    scalers.attrs["clock_hz"] = wire.TICKS_PER_SECOND
    fn = det.create_dataset("frame_numbers", shape=(0,), maxshape=(None,), chunks=(ATTR_CHUNK_FRAMES,),
                            dtype=np.int64)
    fn.attrs["description"] = "detector frame index (0-based) of each row; gaps mean lost frames"
    det.create_dataset("count_time", data=float(start.exposure_s)).attrs["units"] = "s"
    _string(det, "trigger_mode", start.trigger_mode)
    det.create_dataset("number_of_channels", data=ch)
    det.create_dataset("first_bin", data=start.first_bin)
    det.create_dataset("full_bins", data=start.full_bins)
    det.create_dataset("ev_per_bin", data=float(start.ev_per_bin)).attrs["units"] = "eV"
    det.create_dataset("dtc_applied", data=bool(start.dtc_applied))
    widths = list(start.event_width) or [float("nan")] * ch
    det.create_dataset("event_width", data=np.asarray(widths, dtype=np.float64)).attrs["units"] = "ticks"
    _string(det, "description", str(start.detector.get("model", "Xspress3")))
    det.create_dataset("frames_expected", data=np.int64(start.frames_expected))
    det.create_dataset("frames_written", data=np.int64(0))
    missing = det.create_dataset("missing_frames", shape=(0, 2), maxshape=(None, 2), chunks=(1024, 2),
                                 dtype=np.int64)
    missing.attrs["columns"] = ["first_frame", "count"]
    missing.attrs["description"] = "runs of frames of the series that are not in this file"
    det.create_dataset("complete", data=False)
    info = _nx(det.create_group("info"), "NXcollection")
    for key, value in start.detector.items():
        info.create_dataset(str(key), data=_info_value(value))

    attrs = _nx(h5.create_group(NDATTRIBUTES), "NXcollection")
    for c in range(1, ch + 1):
        for suffix in NDATTR_SUFFIXES:
            attrs.create_dataset(ndattribute_name(c, suffix), shape=(0,), maxshape=(None,),
                                 chunks=(ATTR_CHUNK_FRAMES,), dtype=np.float64)

    nxdata = _nx(h5.create_group(NXDATA), "NXdata")
    nxdata["data"] = data  # hard link: same dataset, two names
    nxdata.attrs["signal"] = "data"
    nxdata.attrs["axes"] = [".", ".", "energy"]
    nxdata.attrs["energy_indices"] = 2
    energy = nxdata.create_dataset("energy", data=start.energy_axis())
    energy.attrs["units"] = "eV"
    energy.attrs["long_name"] = "energy (eV)"


def create(path: Union[str, os.PathLike], start: wire.SeriesStart, compression: str = "None",
           overwrite: bool = False, flush_interval_s: float = 1.0,
           min_free_bytes: int = MIN_FREE_BYTES) -> SeriesFile:
    """Create the file for one series, switch it to SWMR mode and return the handle.

    Raises ValueError for a bad compression choice and OSError subclasses (with the
    path in the message) when the file cannot be created.
    """
    start.validate()
    compression_options(compression)  # fail before touching the disk
    path = Path(path)
    _check_target(path, overwrite)
    _check_free_space(path, min_free_bytes, 0, "not created")
    try:
        h5 = h5py.File(path, "w" if overwrite else "w-", libver="latest",
                       rdcc_nbytes=16 << 20, rdcc_nslots=10007, rdcc_w0=1.0)
    except OSError as exc:
        raise OSError(f"cannot create HDF5 file {path}: {exc}") from exc
    try:
        _build(h5, start, compression)
        h5.swmr_mode = True
        h5.flush()
    except Exception:
        h5.close()
        raise
    log.info("created %s (%d ch x %d bins, %s, compression %s)", path, start.channels, start.bins,
             start.spectrum_dtype, compression)
    return SeriesFile(path, h5, start, flush_interval_s, min_free_bytes)


@dataclass
class FileContents:
    """What ``read_frames`` returns: arrays trimmed to the frames present in every dataset."""

    spectra: np.ndarray
    scalers: np.ndarray
    dtfactor: np.ndarray
    dtpercent: np.ndarray
    event_width: np.ndarray
    frame_numbers: np.ndarray
    energy: np.ndarray
    attrs: dict[str, Any] = field(default_factory=dict)

    @property
    def count(self) -> int:
        return int(self.spectra.shape[0])


def _scalar(ds: h5py.Dataset) -> Any:
    value = ds[()]
    if isinstance(value, bytes):
        return value.decode("utf-8")
    if isinstance(value, np.generic):
        return value.item()
    return value


def read_frames(path: Union[str, os.PathLike]) -> FileContents:
    """Read a file written by this module (also one still being written, or killed)."""
    with h5py.File(path, "r", swmr=True) as h5:
        channels = int(h5[f"{DETECTOR}/number_of_channels"][()])
        columns = {
            suffix: [h5[f"{NDATTRIBUTES}/{ndattribute_name(c, suffix)}"] for c in range(1, channels + 1)]
            for suffix in ("DTFactor", "DTPercent", "EventWidth")
        }
        lengths = [h5[DATA].shape[0], h5[SCALERS].shape[0], h5[FRAME_NUMBERS].shape[0]]
        lengths += [ds.shape[0] for dsets in columns.values() for ds in dsets]
        n = min(lengths)

        def stack(suffix: str) -> np.ndarray:
            return np.stack([ds[:n] for ds in columns[suffix]], axis=1) if n else np.zeros((0, channels))

        attrs: dict[str, Any] = {
            "series_id": _scalar(h5[f"{ENTRY}/entry_identifier"]),
            "start_time": _scalar(h5[START_TIME]),
            "end_time": _scalar(h5[END_TIME]),
            "exposure_s": _scalar(h5[f"{DETECTOR}/count_time"]),
            "trigger_mode": _scalar(h5[f"{DETECTOR}/trigger_mode"]),
            "channels": channels,
            "first_bin": _scalar(h5[f"{DETECTOR}/first_bin"]),
            "full_bins": _scalar(h5[f"{DETECTOR}/full_bins"]),
            "ev_per_bin": _scalar(h5[f"{DETECTOR}/ev_per_bin"]),
            "dtc_applied": _scalar(h5[f"{DETECTOR}/dtc_applied"]),
            "frames_expected": _scalar(h5[FRAMES_EXPECTED]),
            "frames_written": _scalar(h5[FRAMES_WRITTEN]),
            "missing_frames": h5[MISSING_FRAMES][()] if MISSING_FRAMES in h5 else np.zeros((0, 2), np.int64),
            "complete": _scalar(h5[COMPLETE]),
            "compression": str(h5[DATA].attrs["compression"]),
            "scaler_names": [str(s) for s in h5[SCALERS].attrs["scaler_names"]],
            "detector": {k: _scalar(v) for k, v in h5[DETECTOR_INFO].items()},
        }
        return FileContents(
            spectra=h5[DATA][:n],
            scalers=h5[SCALERS][:n],
            dtfactor=stack("DTFactor"),
            dtpercent=stack("DTPercent"),
            event_width=stack("EventWidth"),
            frame_numbers=h5[FRAME_NUMBERS][:n],
            energy=h5[ENERGY][()],
            attrs=attrs,
        )

