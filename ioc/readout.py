"""The readout thread: detector memory -> frame blocks -> consumers and PVs.

It never touches PVs and never runs on the event loop. Per run it polls the
driver's progress and reads every completed frame in blocks (views into the
recycled `SpectrumBuffers`, not fresh arrays). Each block is read and accounted a
cache's worth of frames at a time (CHUNK_BYTES): running sums and, while the time
series records, every ROI statistic of every frame (rois.block_stats) are taken
while those frames are still in the core's cache. The block then goes to each
consumer (stream, file writer, monitor), and a summary of the newest frame is
posted to the IOC at the display rate through the `publish` callback (a
thread-safe queue put).

Back-pressure: when a consumer's queue is full, frames stay in detector memory
while there is room (the consumer gets `stall_timeout` seconds, and in circular
mode the unread frames must stay under 3/4 of memory); past that the block is
counted as lost by that consumer, with the reason. Nothing is dropped silently.
"""
from __future__ import annotations

import logging
import queue
import sys
import threading
import time
from dataclasses import dataclass, field
from enum import Enum
from typing import Callable, Optional

import numpy as np

from xspress3.driver import Scaler, Xspress3Error, compute as deadtime
from xspress3.vocabulary import NUM_SCALERS, NUM_SCAS, SCA_SCALERS, TICKS_PER_SECOND, Sca
from xspress3.writers.consumer import SeriesConsumer
from xspress3.writers.wire import FrameBlock

from .enums import TsAction
from .rois import NUM_STATS, RoiLayout, RoiTable, block_stats, roi_stats

log = logging.getLogger(__name__)

MAX_BLOCK_BYTES = 8 << 20     # a block holds at most this much spectrum data
MAX_BLOCK_FRAMES = 1024
#: Frames are read and accounted this many bytes at a time (the 1 MiB L2 cache of a core)
CHUNK_BYTES = 1 << 20
CIRCULAR_HIGH_WATER = 0.75    # fraction of frame memory unread before consumers lose frames
ALL_GOOD = int(Scaler.ALL_GOOD)
TIME = int(Scaler.TIME)


@dataclass(frozen=True)
class RunPlan:
    """Everything the readout needs to know about one run, fixed at its start."""
    run_id: int
    num_frames: int
    channels: int
    first_bin: int
    num_bins: int
    full_bins: int
    circular: bool
    memory: int
    event_width: np.ndarray
    dtc: bool
    ts_points: int
    first_frame_number: int = 0   # ArrayCounter value before the run


@dataclass
class FrameSummary:
    """Newest frame of a run, shaped for the PVs (posted at the display rate)."""
    run_id: int
    frames_read: int
    frames_acquired: int
    frame_number: int
    spectra: np.ndarray          # (ch, full_bins) float64, zeros outside the recorded range
    sca: np.ndarray              # (ch, NUM_SCAS) float64: vocabulary.Sca columns
    rois: np.ndarray             # (ch, 48, 5): total, net, min, max, mean
    sums: Optional[np.ndarray]   # (ch, full_bins) float64
    sca_sums: Optional[np.ndarray] = None   # (ch, NUM_SCAS) float64, since the last erase
    ts_point: int = 0
    final: bool = False          # the run's last summary (every PV is posted exactly)


class Outcome(str, Enum):
    """How a run ended."""
    COMPLETED = "completed"
    ABORTED = "aborted"
    ERROR = "error"


@dataclass
class RunEnd:
    run_id: int
    outcome: Outcome
    message: str
    frames_read: int
    lost: dict = field(default_factory=dict)


@dataclass
class TimeSeries:
    """Per-frame values of the frames recorded while the time series runs: the
    statistics of the used ROIs (rois.STATS: MCA{n}ROI:{r}:TSTotal, TSNet,
    TSMinValue, TSMaxValue, TSMeanValue), each frame's time stamp (TSTimestamp)
    and the SCA values (vocabulary.Sca) of every channel (C{n}SCA:{k}:TSArrayValue,
    C{n}SCA:TS:{k}:TimeSeries).

    One series serves all of them, so they always cover the same frames. In
    fixed-length mode recording stops when `points` frames are held; in circular
    mode it goes on and keeps the newest `points` frames. An ROI not used for some
    of the frames reads 0 there.
    """
    points: int
    written: int = 0             # frames recorded since the last erase
    acquiring: bool = False
    manual: bool = False
    circular: bool = False
    columns: dict = field(default_factory=dict)   # (channel index, roi index) -> column of `stats`
    stats: Optional[np.ndarray] = None         # (points, columns, NUM_STATS)
    times: Optional[np.ndarray] = None         # (points,) seconds since the frame's run started
    sca: Optional[np.ndarray] = None           # (points, channels, NUM_SCAS)

    @property
    def current(self) -> int:
        """Points held (TSCurrentPoint)."""
        return min(self.written, self.points)

    def erase(self) -> None:
        self.written = 0
        self.columns.clear()
        self.stats = self.times = self.sca = None

    def run_started(self) -> None:
        """An acquisition starts: record it from an empty series, unless a user
        started the series (TSControl) and it already records."""
        if not self.acquiring:
            self.erase()
            self.acquiring, self.manual = True, False

    def run_ended(self) -> None:
        """An acquisition ended: stop, unless a user started the series."""
        if not self.manual:
            self.acquiring = False

    def control(self, action: TsAction) -> None:
        """TSControl; a user start outlives runs (Read only posts, done by the caller)."""
        action = TsAction(action)
        if action in (TsAction.ERASE_START, TsAction.ERASE):
            self.erase()
        if action in (TsAction.ERASE_START, TsAction.START):
            self.acquiring, self.manual = True, True
        elif action is TsAction.STOP:
            self.acquiring, self.manual = False, False

    def _slots(self, n: int) -> list:
        """Where the next n frames go: (positions in the arrays, frames kept) as slice
        pairs, at most two (a circular series wraps once), so the writes are plain
        slice copies rather than fancy-index scatters."""
        if not self.circular:
            take = max(0, min(self.points - self.written, n))
            return [(slice(self.written, self.written + take), slice(0, take))] if take else []
        keep = min(n, self.points)
        head = (self.written + n - keep) % self.points
        first = min(keep, self.points - head)
        runs = [(slice(head, head + first), slice(n - keep, n - keep + first))]
        if first < keep:
            runs.append((slice(0, keep - first), slice(n - keep + first, n)))
        return runs

    def _columns_of(self, keys: tuple) -> np.ndarray:
        """Columns of `stats` for these ROIs, adding columns for ROIs not seen yet."""
        new = [key for key in keys if key not in self.columns]
        if new:
            for key in new:
                self.columns[key] = len(self.columns)
            grown = np.zeros((self.points, len(self.columns), NUM_STATS))
            if self.stats is not None:
                grown[:, :self.stats.shape[1]] = self.stats
            self.stats = grown
        return np.array([self.columns[key] for key in keys], dtype=np.intp)

    def append(self, keys: tuple, stats: np.ndarray, sca: np.ndarray,
               times: np.ndarray) -> None:
        """n frames: stats (n, len(keys), NUM_STATS) of the ROIs `keys` ((ch, r) each),
        sca (n, channels, NUM_SCAS), times (n,) seconds."""
        if not self.acquiring:
            return
        n = sca.shape[0]
        runs = self._slots(n)
        if self.sca is None or self.sca.shape[1:] != sca.shape[1:]:
            self.sca = np.zeros((self.points,) + sca.shape[1:])
        if self.times is None:
            self.times = np.zeros(self.points)
        columns = self._columns_of(keys)
        whole = self.stats is not None and columns.size == self.stats.shape[1] and \
            np.array_equal(columns, np.arange(columns.size))
        for where, kept in runs:
            self.sca[where] = sca[kept]
            self.times[where] = times[kept]
            if self.stats is None:
                continue
            if whole:
                self.stats[where] = stats[kept]
            else:
                self.stats[where] = 0.0          # ROIs not used for these frames read 0
                self.stats[where, columns] = stats[kept]
        self.written += n if self.circular else sum(w.stop - w.start for w, _ in runs)
        if not self.circular and self.written >= self.points:
            self.acquiring = False

    def roi(self, key: tuple) -> Optional[np.ndarray]:
        """(points, NUM_STATS) of one ROI in storage order, or None if never recorded."""
        column = self.columns.get(key)
        return None if column is None else self.stats[:, column]

    def ordered(self, arr: np.ndarray) -> np.ndarray:
        """The held points of one array, oldest first (a copy)."""
        if self.written <= self.points:
            return arr[:self.written].copy()
        head = self.written % self.points
        return np.concatenate((arr[head:], arr[:head]))


def sca_values(scalers: np.ndarray, dtfactor: np.ndarray, dtpercent: np.ndarray,
               event_width: np.ndarray) -> np.ndarray:
    """The values of C{n}SCA:{k} (vocabulary.Sca): scalers, EventWidth, DTFactor, DTPercent.

    scalers (..., channels, NUM_SCALERS) with dtfactor/dtpercent (..., channels): one frame
    or a block of them; returns (..., channels, NUM_SCAS) float64.
    """
    out = np.empty(dtfactor.shape + (NUM_SCAS,))
    out[..., :SCA_SCALERS] = scalers[..., :SCA_SCALERS]
    out[..., Sca.EVENT_WIDTH] = event_width
    out[..., Sca.DT_FACTOR] = dtfactor
    out[..., Sca.DT_PERCENT] = dtpercent
    return out


def block_shape(channels: int, bins: int) -> tuple:
    """(frames, channels, bins) of the largest block the readout reads at once."""
    frames = max(1, min(MAX_BLOCK_FRAMES, MAX_BLOCK_BYTES // (4 * channels * bins)))
    return (frames, channels, bins)


def _numpy_bases(count: int, shape: tuple) -> list:
    return [np.empty(shape, dtype=np.uint32) for _ in range(count)]


class SpectrumBuffers:
    """Spectrum arrays for blocks, recycled once no consumer holds them any more.

    A fresh 8 MiB array per block costs the kernel a page fault and a page clear
    per 4 KiB (15 % of all CPU in a full-rate run). Blocks are views into these
    bases; a base is free again when nothing but this pool refers to it: the
    stream's zero-copy zmq frames, queued file writes and the monitor's latest
    frame all hold Python references to the views, and each view to its base,
    so CPython's reference count says exactly when a base is in use. The pool
    has `keep` bases, allocated together with the first block of a shape; a
    block that finds none free gets a plain allocation of just its frames. The
    default, 16 (128 MiB of full 8 MiB blocks), covers what streaming holds at
    full rate: the stream queue (1024 frames: 8 blocks), zmq's high-water mark
    (4 messages) and the blocks the readout and the monitor hold. With 8, the
    blocks beyond it were allocated and freed all run long and the RSS swung by
    ~15 %.

    Small blocks share a base: each takes the frames after the previous one's, so
    at 10 kHz (the readout reads ~20 frames at a time) a base holds ~6 blocks and
    the queues, counted in frames, fit in the pool instead of spilling into
    allocations that come and go.
    """

    def __init__(self, keep: int = 16):
        self.keep = keep
        #: makes `keep` bases of a shape, each its own array; the stream puts them in
        #: memory a receiver on this host maps (shared_frames.SharedPool.arrays)
        self.allocate: Callable[[int, tuple], list] = _numpy_bases
        self._bases: list = []
        self._shape: tuple = ()
        self._current: Optional[int] = None   # index of the base being filled
        self._used = 0                        # its frames handed out so far
        self._bases.append(np.empty(1))
        self._free_refs = self._refs(0)       # the references of a base nobody else holds
        self._bases.clear()

    def _refs(self, i: int) -> int:
        """References to base i; always taken this one way, so that they compare."""
        return sys.getrefcount(self._bases[i])

    def _allocate(self, shape: tuple) -> list:
        """All `keep` bases at once, every page touched: the pool's memory is
        resident from the first run on. Allocated as needed instead, and used for
        small blocks, the bases became resident page by page over hours of
        acquisitions, a slow rise of the IOC's RSS."""
        try:
            bases = self.allocate(self.keep, shape)
        except OSError as exc:   # shared memory full or gone: the stream then copies
            log.warning("block buffers in ordinary memory: %s", exc)
            bases = _numpy_bases(self.keep, shape)
        for base in bases:
            base.fill(0)
        return bases

    def prepare(self, shape: tuple) -> None:
        """Have the pool for blocks of `shape` ready (allocating it takes ~0.1-0.5 s:
        call it before the detector runs, not while frames pile up)."""
        if shape != self._shape:
            self._bases, self._shape, self._current = [], (), None   # the old pool goes first
            self._bases, self._shape = self._allocate(shape), shape

    def take(self, frames: int, shape: tuple) -> np.ndarray:
        """A C-contiguous (frames, *shape[1:]) uint32 view; shape is the full block shape."""
        self.prepare(shape)
        if self._current is not None:
            if self._refs(self._current) == self._free_refs:
                self._used = 0                         # all its blocks were released
            if self._used + frames <= shape[0]:
                self._used += frames
                return self._bases[self._current][self._used - frames:self._used]
        for i in range(len(self._bases)):
            if i != self._current and self._refs(i) == self._free_refs:
                self._current, self._used = i, frames
                return self._bases[i][:frames]
        # Beyond the pool: only what this block needs. A whole-block array for a
        # small block (at 10 kHz the readout reads ~20 frames at a time, and the
        # queues, counted in frames, then hold dozens of blocks) grew the IOC by
        # ~30 MB per 100 000 frames as the allocator reused those arrays.
        return np.empty((frames,) + tuple(shape[1:]), dtype=np.uint32)


class Readout(threading.Thread):
    """Owns the read side of the detector during runs (see module docstring)."""

    def __init__(self, publish: Callable[[object], None], ts_points: int,
                 consumers: Optional[list[SeriesConsumer]] = None, poll_s: float = 0.002):
        super().__init__(name="xsp3-readout", daemon=True)
        self._publish = publish
        self._plans: queue.Queue = queue.Queue()
        self._stop_run = threading.Event()
        self._shutdown = threading.Event()
        self.consumers: list[SeriesConsumer] = list(consumers or [])
        self.poll_s = poll_s
        self.update_period = 0.1
        self.rois = RoiTable.empty(1)
        self.lock = threading.Lock()   # guards sums and time series against erase
        self.sums: Optional[np.ndarray] = None
        self.sca_sums: Optional[np.ndarray] = None   # (ch, NUM_SCAS): SCA values summed over frames
        self.ts = TimeSeries(ts_points)
        self.buffers = SpectrumBuffers()
        self._layout: tuple = (None, None)   # (key, RoiLayout) of the last block's ROIs
        self._run_ticks = 0.0                # TIME ticks of the run's frames read so far
        self._scratches: dict = {}           # _scratch arrays by (name, shape, dtype)

    # ---- called from the event loop -------------------------------------------------
    def begin(self, driver, plan: RunPlan) -> None:
        self._stop_run.clear()
        self._plans.put((driver, plan))

    def prepare(self, channels: int, bins: int) -> None:
        """Allocate the block buffers for runs of this size; blocking, call it from a
        worker thread while no run is active."""
        self.buffers.prepare(block_shape(channels, bins))

    def request_stop(self) -> None:
        """Finish the run after reading the frames the detector completed."""
        self._stop_run.set()

    def shutdown(self) -> None:
        self._shutdown.set()
        self._stop_run.set()
        self._plans.put(None)

    def erase(self, channels: int, full_bins: int, time_series: bool = True) -> None:
        with self.lock:
            self.sums = np.zeros((channels, full_bins), dtype=np.uint64)
            self.sca_sums = np.zeros((channels, NUM_SCAS))
            if time_series:
                self.ts.erase()

    # ---- thread ------------------------------------------------------------------------
    def run(self) -> None:
        while not self._shutdown.is_set():
            item = self._plans.get()
            if item is None:
                break
            driver, plan = item
            try:
                end = self._run(driver, plan)
            except Exception as ex:  # report, never die: the IOC must keep running
                log.exception("readout failed")
                end = RunEnd(plan.run_id, Outcome.ERROR, f"readout failed: {ex}", 0)
            self._publish(end)

    def _run(self, driver, plan: RunPlan) -> RunEnd:
        read = 0
        acquired = 0
        lost: dict = {}
        last_post = 0.0
        latest: Optional[FrameBlock] = None
        shape = block_shape(plan.channels, plan.num_bins)
        self._run_ticks = 0.0
        with self.lock:
            if self.sums is None or self.sums.shape != (plan.channels, plan.full_bins):
                self.sums = np.zeros((plan.channels, plan.full_bins), dtype=np.uint64)
                self.sca_sums = np.zeros((plan.channels, NUM_SCAS))
        outcome, message = Outcome.COMPLETED, ""
        while True:
            try:
                progress = driver.progress()
            except Xspress3Error as ex:
                outcome, message = Outcome.ERROR, str(ex)
                break
            acquired = progress.frames
            if progress.overrun:
                outcome = Outcome.ERROR
                message = (f"frame memory overrun after {acquired} frames: the readout fell "
                           f"more than {plan.memory} frames behind")
                lost["detector overrun"] = max(0, plan.num_frames - read)
                break
            available = min(acquired, plan.num_frames) - read
            if available > 0:
                n = min(available, shape[0])
                try:
                    block = self._read_block(driver, plan, read, n, shape)
                except Xspress3Error as ex:
                    outcome, message = Outcome.ERROR, str(ex)
                    break
                read += n
                self._deliver(driver, plan, block, read)
                latest = block
                now = time.monotonic()
                if now - last_post >= self.update_period:
                    last_post = now
                    self._publish(self._summary(plan, latest, read, acquired))
                continue
            if read >= plan.num_frames:
                break
            if self._stop_run.is_set():
                outcome, message = Outcome.ABORTED, "stopped"
                try:
                    if not driver.is_busy() and driver.progress().frames <= read:
                        break
                except Xspress3Error as ex:
                    outcome, message = Outcome.ERROR, str(ex)
                    break
            elif not self._busy(driver):
                # the detector ended the run by itself with frames missing
                try:
                    final = driver.progress()
                except Xspress3Error as ex:
                    outcome, message = Outcome.ERROR, str(ex)
                    break
                if final.frames <= read:
                    if final.overrun:
                        continue
                    outcome = Outcome.ERROR
                    message = f"detector stopped after {read} of {plan.num_frames} frames"
                    break
            time.sleep(self.poll_s)
        if latest is not None:
            self._publish(self._summary(plan, latest, read, acquired, final=True))
        for consumer in self.consumers:
            for reason, frames in consumer.losses().items():
                lost[f"{consumer.name}: {reason}"] = frames
        return RunEnd(plan.run_id, outcome, message, read, lost)

    @staticmethod
    def _busy(driver) -> bool:
        try:
            return driver.is_busy()
        except Xspress3Error:
            return False

    def _read_block(self, driver, plan: RunPlan, first: int, n: int, shape: tuple) -> FrameBlock:
        """Read n frames from `first` and account them (_account), chunk by chunk: each
        chunk is summed and its ROI statistics taken right after it is read, while it
        is still in the core's cache (read whole, an 8 MiB block had left the cache
        before the sums and ROI passes came back to it)."""
        raw = self.buffers.take(n, shape)
        scalers = np.empty((n, plan.channels, NUM_SCALERS), dtype=np.uint32)
        driver.read_scalers(scalers, first)
        factor, percent = deadtime(scalers, plan.event_width)
        spectra = np.empty(raw.shape) if plan.dtc else raw

        def fill(part: slice) -> None:
            driver.read_spectra(raw[part], first + part.start, first_bin=plan.first_bin)
            if plan.dtc:
                np.multiply(raw[part], factor[part, :, None], out=spectra[part])

        block = FrameBlock(first_frame=plan.first_frame_number + first, spectra=spectra,
                           scalers=scalers, dtfactor=factor, dtpercent=percent)
        self._account(plan, block, fill)
        if plan.circular:
            driver.ack(first, n)
        return block

    def _scratch(self, name: str, shape: tuple, dtype, zero: bool = True) -> np.ndarray:
        """An array kept from block to block (no fresh buffer per block), zeroed
        unless the caller overwrites it whole."""
        key = (name, shape, np.dtype(dtype))
        arr = self._scratches.get(key)
        if arr is None:
            arr = self._scratches[key] = np.zeros(shape, dtype=dtype)
        elif zero:
            arr.fill(0)
        return arr

    def _account(self, plan: RunPlan, block: FrameBlock,
                 fill: Optional[Callable[[slice], None]] = None) -> None:
        """Running sums, SCA sums and the time series of a block, CHUNK_BYTES of frames
        at a time; `fill(part)` first puts frames `part` into block.spectra (the read)."""
        n = block.count
        lo, hi = plan.first_bin, plan.first_bin + plan.num_bins
        step = max(1, CHUNK_BYTES // max(1, block.spectra[0].nbytes))
        # each frame's end in seconds since the run started, from the TIME scalers
        ticks = np.cumsum(block.scalers[:, 0, TIME], dtype=np.float64)
        ticks += self._run_ticks
        self._run_ticks = float(ticks[-1])
        with self.lock:
            integer = block.spectra.dtype == np.uint32
            if integer:
                # A bin's sum over the block is at most the channel's histogrammed events
                # (ALL_GOOD); when those fit in 32 bits the 3x faster uint32 sum is exact.
                events = block.scalers[:, :, ALL_GOOD].sum(axis=0, dtype=np.uint64).max()
                wide = np.uint64 if events >= 2**32 else np.uint32
                # the first chunk's sum is the total's start: no zeroing, no extra add
                total = self._scratch("total", block.spectra.shape[1:], wide, zero=False)
                part_sum = self._scratch("part", block.spectra.shape[1:], wide, zero=False)
            recording = self.ts.acquiring
            if recording:
                layout = self.roi_layout(plan)
                stats = np.empty((n, len(layout.keys), NUM_STATS))
            for start in range(0, n, step):
                part = slice(start, min(start + step, n))
                if fill is not None:
                    fill(part)
                frames = block.spectra[part]
                if integer and not start:
                    np.add.reduce(frames, axis=0, dtype=wide, out=total)
                elif integer:
                    np.add.reduce(frames, axis=0, dtype=wide, out=part_sum)
                    total += part_sum
                if recording:
                    block_stats(layout, frames, stats[part])
            if integer:
                self.sums[:, lo:hi] += total
            else:
                # float (deadtime-corrected) frames: one sum over the block, the same
                # additions in the same order as ever
                self.sums[:, lo:hi] += np.rint(block.spectra.sum(axis=0)).astype(np.uint64)
            sca = sca_values(block.scalers, block.dtfactor, block.dtpercent, plan.event_width)
            self.sca_sums += sca.sum(axis=0)
            if recording:
                self.ts.append(layout.keys, stats, sca, ticks / TICKS_PER_SECOND)

    def roi_layout(self, plan: RunPlan) -> RoiLayout:
        """The layout of the ROI table in force over this run's blocks (made again only
        when the table, which is replaced whole on every change, or the run's shape changes)."""
        table = self.rois
        key = (plan.channels, plan.first_bin, plan.num_bins, plan.full_bins)
        held, layout = self._layout
        if held is None or held[0] is not table or held[1:] != key:
            layout = RoiLayout.of(table, *key)
            self._layout = ((table,) + key, layout)
        return layout

    def _deliver(self, driver, plan: RunPlan, block: FrameBlock, read: int) -> None:
        for consumer in self.consumers:
            if consumer.offer(block, 0.0):
                continue
            deadline = time.monotonic() + consumer.stall_timeout
            while True:
                if consumer.offer(block, 0.01):
                    break
                reason = None
                if self._shutdown.is_set():
                    reason = "IOC shutting down"
                elif time.monotonic() > deadline:
                    reason = f"{consumer.name} stalled for {consumer.stall_timeout:g} s"
                elif plan.circular:
                    try:
                        unread = driver.progress().frames - read
                    except Xspress3Error:
                        unread = 0
                    if unread > CIRCULAR_HIGH_WATER * plan.memory:
                        reason = f"{consumer.name} too slow: detector memory nearly full"
                if reason:
                    consumer.count_lost(block.count, reason)   # the consumer counts them
                    log.warning("%d frames not delivered to %s: %s", block.count, consumer.name, reason)
                    break

    def _summary(self, plan: RunPlan, block: FrameBlock, read: int, acquired: int,
                 final: bool = False) -> FrameSummary:
        last = block.spectra[-1]
        spectra = np.zeros((plan.channels, plan.full_bins))
        spectra[:, plan.first_bin:plan.first_bin + plan.num_bins] = last
        sca = sca_values(block.scalers[-1], block.dtfactor[-1], block.dtpercent[-1], plan.event_width)
        with self.lock:
            sums = self.sums.astype(np.float64)
            sca_sums = self.sca_sums.copy()
            ts_point = self.ts.current
        # from the recorded bins, as the time series: the same code gives the same values
        rois = roi_stats(self.rois, last, plan.first_bin, plan.full_bins, self.roi_layout(plan))
        return FrameSummary(run_id=plan.run_id, frames_read=read, frames_acquired=acquired,
                            frame_number=block.first_frame + block.count,
                            spectra=spectra, sca=sca, rois=rois,
                            sums=sums, sca_sums=sca_sums, ts_point=ts_point, final=final)
