"""Per-frame ROI statistics (total, net, min, max, mean) and time stamps of the time
series: the readout records, for every frame, exactly what rois.roi_stats gives for
that frame, in-process with known spectra; over Channel Access with a real IOC."""
from __future__ import annotations

import numpy as np
import pytest

from test_rois_scas import receive_run
from xspress3.driver import compute as deadtime
from xspress3.ioc.readout import Readout, RunPlan
from xspress3.ioc.rois import RoiLayout, RoiTable, block_stats, roi_stats
from xspress3.vocabulary import TICKS_PER_SECOND
from xspress3.writers.wire import FrameBlock

FULL = 4096


def reference_stats(table: RoiTable, spectra: np.ndarray) -> np.ndarray:
    """Straightforward statistics of one full frame (ch, FULL), written without the
    reduceat layout: what the fast code must equal."""
    stats = np.zeros(table.lo.shape + (5,))
    for ch, r in table.used():
        lo, hi = int(table.lo[ch, r]), min(int(table.hi[ch, r]), spectra.shape[1])
        if hi <= lo:
            continue
        part = spectra[ch, lo:hi]
        total = float(part.sum())
        width = int(table.bgd[ch, r])
        net = total
        if width > 0 and 2 * width <= part.size:
            net = total - float(np.concatenate((part[:width], part[-width:])).mean()) * part.size
        stats[ch, r] = (total, net, part.min(), part.max(), part.mean())
    return stats


def table_of(channels: int, rois: list) -> RoiTable:
    table = RoiTable.empty(channels, FULL)
    for ch, r, lo, hi, bgd in rois:
        table = table.with_roi(ch, r, lo=lo, hi=hi, use=True, bgd=bgd)
    return table


#: ROIs of every kind: inside, overlapping, at both ends, empty, beyond the spectrum
ROIS = [(0, 0, 100, 400, 3), (0, 1, 350, 360, 0), (0, 7, 0, FULL, 10), (1, 3, 4000, 4096, 2),
        (1, 4, 4095, 4096, 0), (2, 0, 0, 1, 0), (2, 47, 500, 500, 0), (3, 5, 3000, 9000, 4),
        (3, 6, 10, 30, 10), (3, 9, 10, 31, 10), (1, 0, 0, 4096, 0)]


@pytest.mark.parametrize("first_bin,bins", [(0, FULL), (200, 3000), (0, 1000), (3500, 596)])
@pytest.mark.parametrize("dtc", [False, True])
def test_block_statistics_equal_roi_stats_of_each_frame(first_bin, bins, dtc):
    rng = np.random.default_rng(first_bin + bins)
    table = table_of(4, ROIS)
    block = rng.integers(0, 5000, (7, 4, bins)).astype(np.uint32)
    if dtc:
        block = block * rng.uniform(1.0, 1.5, (7, 4, 1))
    layout = RoiLayout.of(table, 4, first_bin, bins, FULL)
    values = block_stats(layout, block)
    assert len(layout.keys) == len(ROIS)
    for f in range(block.shape[0]):
        full = np.zeros((4, FULL))
        full[:, first_bin:first_bin + bins] = block[f]
        one = roi_stats(table, block[f], first_bin, FULL)
        reference = reference_stats(table, full)
        for k, key in enumerate(layout.keys):
            assert np.array_equal(values[f, k], one[key])          # the same code, the same bits
            if dtc:
                np.testing.assert_allclose(values[f, k], reference[key], rtol=1e-12, atol=1e-6)
            else:
                assert np.array_equal(values[f, k], reference[key]), key
        assert np.array_equal(one[~table.use], np.zeros(((~table.use).sum(), 5)))


def _plan(ts_points: int = 16, first_bin: int = 0, bins: int = FULL) -> RunPlan:
    return RunPlan(run_id=1, num_frames=100, channels=4, first_bin=first_bin, num_bins=bins,
                   full_bins=FULL, circular=False, memory=100,
                   event_width=np.full(4, 6.0), dtc=False, ts_points=ts_points)


def _block(first: int, n: int, rng, bins: int = FULL) -> FrameBlock:
    spectra = rng.integers(0, 50, (n, 4, bins)).astype(np.uint32)
    scalers = rng.integers(0, 1000, (n, 4, 9)).astype(np.uint32)
    scalers[:, :, 0] = rng.integers(8000, 9000, (n, 4))          # TIME, 80 MHz ticks
    factor, percent = deadtime(scalers, np.full(4, 6.0))
    return FrameBlock(first_frame=first, spectra=spectra, scalers=scalers, dtfactor=factor,
                      dtpercent=percent)


def _readout(points: int, circular: bool = False) -> Readout:
    readout = Readout(lambda item: None, ts_points=points)
    readout.rois = table_of(4, ROIS)
    readout.erase(4, FULL)
    readout.ts.circular = circular
    readout.ts.run_started()
    return readout


@pytest.mark.parametrize("circular,points,blocks", [(False, 16, [5, 1, 7, 9]),
                                                    (True, 6, [5, 1, 7, 9]),
                                                    (False, 40, [3, 3])])
def test_readout_records_every_statistic_and_time_stamp(circular, points, blocks):
    rng = np.random.default_rng(7)
    plan = _plan(points)
    readout = _readout(points, circular)
    frames, times, ticks = [], [], 0
    for n in blocks:
        block = _block(len(frames), n, rng)
        readout._account(plan, block)
        for f in range(n):
            frames.append(block.spectra[f])
            ticks += int(block.scalers[f, 0, 0])
            times.append(ticks / TICKS_PER_SECOND)
    total = len(frames)
    kept = min(total, points) if circular else min(total, points)
    first = total - kept if circular else 0
    ts = readout.ts
    assert ts.current == kept
    assert ts.acquiring == (circular or total < points)
    np.testing.assert_array_equal(ts.ordered(ts.times), times[first:first + kept])
    for key in table_of(4, ROIS).used():
        series = ts.ordered(ts.roi(tuple(int(v) for v in key)))
        assert series.shape == (kept, 5)
        for point in range(kept):
            expected = roi_stats(readout.rois, frames[first + point])[key]
            assert np.array_equal(series[point], expected), (key, point)


def test_time_stamps_restart_with_each_run_and_an_roi_added_later_reads_zero_before():
    rng = np.random.default_rng(3)
    readout = _readout(32)
    readout.ts.control("Start")                       # a user start outlives runs
    plan = _plan(32)
    readout._run_ticks = 0.0
    first = _block(0, 4, rng)
    readout._account(plan, first)
    readout.rois = readout.rois.with_roi(2, 9, lo=10, hi=20, use=True, bgd=0)
    readout._run_ticks = 0.0                          # what Readout._run does at a run's start
    second = _block(0, 3, rng)
    readout._account(plan, second)
    ts = readout.ts
    times = ts.ordered(ts.times)
    np.testing.assert_array_equal(times[:4], np.cumsum(first.scalers[:, 0, 0]) / TICKS_PER_SECOND)
    np.testing.assert_array_equal(times[4:], np.cumsum(second.scalers[:, 0, 0]) / TICKS_PER_SECOND)
    added = ts.ordered(ts.roi((2, 9)))
    assert not added[:4].any()
    np.testing.assert_array_equal(added[4:, 0], second.spectra[:, 2, 10:20].sum(axis=1))
    readout.erase(4, FULL)
    assert ts.current == 0 and ts.roi((2, 9)) is None and ts.times is None


def test_statistics_time_series_over_channel_access(ioc):
    """Every statistic and time stamp of every frame, as a user reads them, against the
    streamed spectra and scalers."""
    rois = [(1, 1, 600, 100, 5), (2, 3, 4000, 96, 0), (4, 48, 0, 4096, 20)]
    for n, r, lo, size, bgd in rois:
        ioc.put(f"MCA{n}ROI:{r}:MinX", lo)
        ioc.put(f"MCA{n}ROI:{r}:SizeX", size)
        ioc.put(f"MCA{n}ROI:{r}:BgdWidth", bgd)
        ioc.put(f"MCA{n}ROI:{r}:Use", "Yes")
    try:
        blocks, end = receive_run(ioc, 25)
        assert end.frames_sent == 25
        spectra = np.concatenate([b.spectra for b in blocks])
        scalers = np.concatenate([b.scalers for b in blocks])
        table = RoiTable.empty(4, FULL)
        for n, r, lo, size, bgd in rois:
            table = table.with_roi(n - 1, r - 1, lo=lo, hi=lo + size, use=True, bgd=bgd)
        expected = np.array([roi_stats(table, frame) for frame in spectra])   # (25, 4, 48, 5)
        times = np.cumsum(scalers[:, 0, 0].astype(float)) / TICKS_PER_SECOND
        assert ioc.get("MCA1ROI:TSCurrentPoint") == 25
        for n, r, *_ in rois:
            for column, name in enumerate(("TSTotal", "TSNet", "TSMinValue", "TSMaxValue",
                                           "TSMeanValue")):
                np.testing.assert_array_equal(ioc.get(f"MCA{n}ROI:{r}:{name}"),
                                              expected[:, n - 1, r - 1, column], err_msg=name)
            np.testing.assert_array_equal(ioc.get(f"MCA{n}ROI:{r}:TSTimestamp"), times)
            # the newest frame's readbacks are the series' last point
            assert ioc.get(f"MCA{n}ROI:{r}:MinValue_RBV") == expected[-1, n - 1, r - 1, 2]
            assert ioc.get(f"MCA{n}ROI:{r}:Net_RBV") == expected[-1, n - 1, r - 1, 1]
        np.testing.assert_array_equal(ioc.get("C3SCA:TS:TSTimestamp"), times)
        assert ioc.get("MCA3ROI:7:TSNet") == 0.0                       # unused: one 0
        assert (np.diff(times) > 0).all() and times[0] > 0
    finally:
        for n, r, *_ in rois:
            ioc.put(f"MCA{n}ROI:{r}:Use", "No")


class _FakeDriver:
    """Serves known frames to Readout._read_block, as the driver's read calls do."""

    def __init__(self, spectra: np.ndarray, scalers: np.ndarray):
        self.spectra, self.scalers, self.reads = spectra, scalers, []

    def read_spectra(self, out, first, first_bin=0):
        self.reads.append((first, out.shape[0]))
        out[...] = self.spectra[first:first + out.shape[0], :, first_bin:first_bin + out.shape[2]]

    def read_scalers(self, out, first):
        out[...] = self.scalers[first:first + out.shape[0]]


@pytest.mark.parametrize("dtc", [False, True])
def test_a_block_read_and_accounted_in_chunks_equals_the_whole_block(monkeypatch, dtc):
    """The readout reads and accounts a block a few frames at a time (CHUNK_BYTES, for the
    cache): the block, the sums and every statistic are those of the whole block."""
    import xspress3.ioc.readout as readout_module
    rng = np.random.default_rng(11)
    first_bin, bins = 300, 3000
    block = _block(0, 40, rng)
    driver = _FakeDriver(block.spectra, block.scalers)
    monkeypatch.setattr(readout_module, "CHUNK_BYTES", 3 * 4 * bins * (8 if dtc else 4))
    plan = RunPlan(run_id=1, num_frames=40, channels=4, first_bin=first_bin, num_bins=bins,
                   full_bins=FULL, circular=False, memory=100, event_width=np.full(4, 6.0),
                   dtc=dtc, ts_points=64)
    readout = _readout(64)
    got = readout._read_block(driver, plan, 0, 40, readout_module.block_shape(4, bins))
    assert driver.reads == [(f, min(3, 40 - f)) for f in range(0, 40, 3)]
    raw = block.spectra[:, :, first_bin:first_bin + bins]
    factor, _ = deadtime(block.scalers, np.full(4, 6.0))
    expected = raw * factor[:, :, None] if dtc else raw
    np.testing.assert_array_equal(got.spectra, expected)
    sums = np.zeros((4, FULL), dtype=np.uint64)
    sums[:, first_bin:first_bin + bins] = (np.rint(expected.sum(axis=0)) if dtc
                                           else expected.sum(axis=0))
    np.testing.assert_array_equal(readout.sums, sums)
    ts = readout.ts
    for key in readout.rois.used():
        series = ts.ordered(ts.roi(tuple(int(v) for v in key)))
        for f in range(40):
            assert np.array_equal(series[f], roi_stats(readout.rois, expected[f], first_bin,
                                                       FULL)[key])


# ---- randomized: every ROI table against the straightforward per-ROI computation -----------
from hypothesis import HealthCheck, given, settings, strategies as st  # noqa: E402

SMALL = 256     # full spectrum of the randomized tables (small: many tables per second)


@st.composite
def roi_tables(draw):
    """(channels, rois, first_bin, bins): random tables (overlapping, empty, partial, at
    either end, beyond the spectrum, with backgrounds) and evenly spaced disjoint ones
    (block_stats' single-copy path, as the benchmark's table)."""
    channels = draw(st.integers(1, 4))
    first_bin = draw(st.sampled_from([0, 0, 17, 100]))
    bins = draw(st.integers(1, SMALL - first_bin))
    if draw(st.booleans()):
        width, gap = draw(st.integers(1, 40)), draw(st.integers(0, 20))
        start, bgd = draw(st.integers(0, 30)), draw(st.sampled_from([0, 0, 2]))
        rois = [(ch, r, start + r * (width + gap), start + r * (width + gap) + width, bgd)
                for ch in range(channels) for r in range(draw(st.integers(1, 8)))]
    else:
        roi = st.tuples(st.integers(0, channels - 1), st.integers(0, 47),
                        st.integers(0, SMALL + 3), st.integers(0, 2 * SMALL),
                        st.sampled_from([0, 0, 1, 3, 60]))
        rois = draw(st.lists(roi, max_size=12, unique_by=lambda t: t[:2]))
    return channels, rois, first_bin, bins


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(roi_tables(), st.integers(1, 5), st.booleans(), st.integers(0, 2**32 - 1))
def test_block_statistics_of_random_tables_equal_the_per_roi_computation(case, frames, dtc, seed):
    channels, rois, first_bin, bins = case
    rng = np.random.default_rng(seed)
    table = RoiTable.empty(channels, SMALL)
    for ch, r, lo, hi, bgd in rois:
        table = table.with_roi(ch, r, lo=lo, hi=hi, use=True, bgd=bgd)
    block = rng.integers(0, 4000, (frames, channels, bins)).astype(np.uint32)
    if dtc:
        block = block * rng.uniform(1.0, 1.5, (frames, channels, 1))
    layout = RoiLayout.of(table, channels, first_bin, bins, SMALL)
    values = block_stats(layout, block)
    for f in range(frames):
        full = np.zeros((channels, SMALL))
        full[:, first_bin:first_bin + bins] = block[f]
        reference = reference_stats(table, full)
        one = roi_stats(table, block[f], first_bin, SMALL, layout)
        for k, key in enumerate(layout.keys):
            assert np.array_equal(values[f, k], one[key])
            if dtc:     # a segment's float sum depends on how reduceat splits it
                np.testing.assert_allclose(values[f, k], reference[key], rtol=1e-12, atol=1e-6)
            else:
                assert np.array_equal(values[f, k], reference[key]), (key, values[f, k])


def test_evenly_spaced_rois_take_one_slice_and_rois_out_of_order_a_gather():
    spaced = table_of(4, [(ch, r, r * 512 + 8, r * 512 + 504, 0) for ch in range(4) for r in range(8)])
    layout = RoiLayout.of(spaced, 4, 0, FULL, FULL)
    assert layout.covered.simple and isinstance(layout.covered.cols, slice)
    uneven = table_of(1, [(0, 0, 30, 40, 0), (0, 1, 10, 20, 0), (0, 2, 45, 50, 0), (0, 3, 45, 60, 0)])
    layout = RoiLayout.of(uneven, 1, 0, FULL, FULL)
    assert layout.covered.simple and not isinstance(layout.covered.cols, slice)
    block = np.random.default_rng(5).integers(0, 9, (3, 1, FULL)).astype(np.uint32)
    for f, frame in enumerate(block):
        reference = reference_stats(uneven, frame.astype(float))
        for k, key in enumerate(layout.keys):
            assert np.array_equal(block_stats(layout, block)[f, k], reference[key])
