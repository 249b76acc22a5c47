"""ROI arithmetic on spectra, vectorised over frames.

An ROI covers bins [lo, hi) of the full spectrum. Net counts subtract a flat
background estimated from `bgd` bins inside each edge (as NDROIStat does).

The statistics of every used ROI of every frame of a block (total, net, min,
max, mean) come from three numpy `reduceat` calls over the block seen as one
row per frame (`RoiLayout`, `block_stats`): the cost is the bins the ROIs cover
plus one pass over a row's tail, with no per-ROI Python loop. `roi_stats` of one
frame runs the same code, so the latest-frame readbacks and the time series
agree value by value.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import numpy as np

from xspress3.vocabulary import DEFAULT_BINS, NUM_ROIS

#: Columns of the statistics arrays, in this order.
STATS = ("total", "net", "min", "max", "mean")
NUM_STATS = len(STATS)


@dataclass(frozen=True)
class RoiTable:
    """Immutable ROI definitions of all channels; replaced whole on every change."""
    lo: np.ndarray    # (ch, NUM_ROIS) int
    hi: np.ndarray    # (ch, NUM_ROIS) int, exclusive
    use: np.ndarray   # (ch, NUM_ROIS) bool
    bgd: np.ndarray   # (ch, NUM_ROIS) int

    @classmethod
    def empty(cls, channels: int, bins: int = DEFAULT_BINS) -> "RoiTable":
        shape = (channels, NUM_ROIS)
        return cls(np.zeros(shape, int), np.full(shape, bins), np.zeros(shape, bool),
                   np.zeros(shape, int))

    def with_roi(self, ch: int, r: int, *, lo: int, hi: int, use: bool, bgd: int) -> "RoiTable":
        arrays = [a.copy() for a in (self.lo, self.hi, self.use, self.bgd)]
        for arr, value in zip(arrays, (lo, hi, use, bgd)):
            arr[ch, r] = value
        return RoiTable(*arrays)

    def used(self):
        return list(zip(*np.nonzero(self.use)))


@dataclass(frozen=True)
class _Chain:
    """Segments [a, b) of a row, as the indices of one `ufunc.reduceat` call.

    reduceat reduces row[idx[i]:idx[i+1]], or just row[idx[i]] when idx[i+1] <= idx[i],
    and the last index to the row's end. The segments go in order of their start, so
    the row is walked once from the first segment on: between two segments the step
    is either the gap between them or, where they overlap, one element. The last
    segment's end is left out (it reduces to the row's end; an index may not be the
    row length); another segment ending at the row's end ends one bin early and
    takes the last element after (`tail`)."""
    idx: np.ndarray    # reduceat indices (empty: no segment)
    pos: np.ndarray    # (S,) column of each segment in reduceat's output; -1: empty segment
    tail: np.ndarray   # (S,) bool: combine with the row's last element
    simple: bool       # no empty segment and no tail: the output is reduced[:, cols]
    cols: object       # pos as a slice when evenly spaced (a view, not a gather), else pos

    @classmethod
    def of(cls, segments: list, length: int) -> "_Chain":
        pos = np.full(len(segments), -1, dtype=np.intp)
        tail = np.zeros(len(segments), dtype=bool)
        idx: list = []
        order = sorted((i for i, (a, b) in enumerate(segments) if b > a),
                       key=lambda i: segments[i])
        for n, i in enumerate(order):
            a, b = segments[i]
            pos[i] = len(idx)
            if n == len(order) - 1 and b == length:
                idx.append(a)            # the last index reduces to the row's end
                continue
            if b == length:
                b = length - 1
                tail[i] = a < b          # [a, a] alone already is the last element
            idx += [a, b]
        simple = bool(len(segments)) and bool((pos >= 0).all()) and not tail.any()
        cols: object = pos
        if simple:
            step = int(pos[1] - pos[0]) if pos.size > 1 else 1
            if step > 0 and np.array_equal(pos, pos[0] + step * np.arange(pos.size)):
                cols = slice(int(pos[0]), int(pos[-1]) + 1, step)
        return cls(np.array(idx, dtype=np.intp), pos, tail, simple, cols)

    def reduceat(self, ufunc, rows: np.ndarray, into: Optional[np.ndarray] = None) -> np.ndarray:
        """(n, idx.size) reduceat of each row in the rows' dtype, into `into` if given."""
        return ufunc.reduceat(rows, self.idx, axis=1, dtype=rows.dtype, out=into)

    def gather(self, ufunc, reduced: np.ndarray, rows: np.ndarray, out: np.ndarray,
               identity) -> None:
        """out (n, S) = each segment's value from `reduced` (this chain's reduceat of
        `rows`): the row's last element combined in for a tail, `identity` where empty."""
        if self.simple:
            out[...] = reduced[:, self.cols]
            return
        has = self.pos >= 0       # none when no segment: all `identity`
        out[...] = identity
        out[:, has] = reduced[:, self.pos[has]]
        if self.tail.any():
            out[:, self.tail] = ufunc(out[:, self.tail], rows[:, -1:])

    def reduce(self, ufunc, rows: np.ndarray, out: np.ndarray, identity) -> None:
        """out (n, S) = ufunc over each segment of each row; `identity` where empty."""
        if not self.idx.size:
            out[...] = identity
            return
        self.gather(ufunc, self.reduceat(ufunc, rows), rows, out, identity)


@dataclass(frozen=True)
class RoiLayout:
    """Where the used ROIs of a table lie in the rows of a block of spectra.

    A block is (frames, channels, bins) holding bins first_bin.. of the full
    spectrum; seen as (frames, channels * bins), an ROI of channel c is a segment
    of that row. ROI parts outside the recorded bins read as zeros, as in the
    full spectrum the PVs show."""
    keys: tuple               # (channel, roi) of every used ROI, in table order
    size: np.ndarray          # (K,) bins of the ROI in the full spectrum (inf: empty ROI)
    bgd: np.ndarray           # (K,) bool: the ROI has a background (net = total - edges)
    bgd_width: np.ndarray     # (B,) background width at each edge of those ROIs
    partial: np.ndarray       # (K,) bool: part of the ROI is outside the recorded bins
    covered: _Chain           # the recorded part of each ROI (min, max)
    sums: _Chain              # the same segments, then both edges of each background ROI
    any_bgd: bool = False     # bgd.any(), partial.any(): asked per chunk, so kept
    any_partial: bool = False

    @classmethod
    def of(cls, table: RoiTable, channels: int, first_bin: int, bins: int,
           full_bins: int) -> "RoiLayout":
        keys, size, bgd, widths, partial, covered, edges = [], [], [], [], [], [], []

        def segment(ch: int, lo: int, hi: int) -> tuple:
            a, b = max(lo, first_bin), min(hi, first_bin + bins)
            if b <= a:
                return (0, 0)
            return (ch * bins + a - first_bin, ch * bins + b - first_bin)

        for ch, r in table.used():
            if ch >= channels:
                continue
            lo, hi = int(table.lo[ch, r]), min(int(table.hi[ch, r]), full_bins)
            width = max(hi - lo, 0)
            w = int(table.bgd[ch, r])
            keys.append((int(ch), int(r)))
            size.append(width if width else np.inf)
            seg = segment(ch, lo, hi) if width else (0, 0)
            covered.append(seg)
            partial.append(width > 0 and seg[1] - seg[0] < width)
            bgd.append(width > 0 and 0 < w and 2 * w <= width)
            if bgd[-1]:
                widths.append(w)
                edges += [segment(ch, lo, lo + w), segment(ch, hi - w, hi)]
        length = channels * bins
        return cls(tuple(keys), np.array(size, dtype=float), np.array(bgd, dtype=bool),
                   np.array(widths, dtype=float), np.array(partial, dtype=bool),
                   _Chain.of(covered, length), _Chain.of(covered + edges, length),
                   any(bgd), any(partial))


def block_stats(layout: RoiLayout, spectra: np.ndarray,
                out: Optional[np.ndarray] = None) -> np.ndarray:
    """(n, K, 5) float64: total, net, min, max, mean of each ROI of `layout.keys` in
    each frame of `spectra` (n, channels, bins; C-contiguous), into `out` if given.

    uint32 spectra are summed in uint32: a frame's ROI total is at most the events
    the channel histogrammed in that frame, a 32-bit scaler (as Readout._account).

    The three reduceat passes write side by side into one (n, segments, 4) buffer
    (total, -, min, max), so that when every ROI is a plain segment one converting
    copy fills columns 0-3 of `out`: the per-call cost of many small copies and
    gathers was as much as a pass over the data."""
    n, k = spectra.shape[0], len(layout.keys)
    if out is None:
        out = np.empty((n, k, NUM_STATS))
    if not k:
        return out
    rows = spectra.reshape(n, -1)
    covered = layout.covered
    total = out[:, :, 0]
    red = np.empty((n, covered.idx.size, 4), dtype=rows.dtype)
    if covered.idx.size:
        if not layout.any_bgd:
            covered.reduceat(np.add, rows, red[:, :, 0])
        covered.reduceat(np.minimum, rows, red[:, :, 2])
        covered.reduceat(np.maximum, rows, red[:, :, 3])
    if layout.any_bgd:
        # the totals from the chain with the edges: for float spectra the same
        # additions as the edges' chain makes them (a segment's sum depends on its split)
        sums = np.empty((n, k + 2 * layout.bgd_width.size))
        layout.sums.reduce(np.add, rows, sums, 0)
        total[...] = sums[:, :k]
        edges = sums[:, k::2] + sums[:, k + 1::2]
        if covered.simple:
            out[:, :, 2:4] = red[:, covered.cols, 2:4]
        out[:, :, 1] = total
        out[:, layout.bgd, 1] = (total[:, layout.bgd]
                                 - edges / (2 * layout.bgd_width) * layout.size[layout.bgd])
    else:
        if covered.simple:
            out[:, :, :4] = red[:, covered.cols]     # column 1 (net) is set next
        else:
            covered.gather(np.add, red[:, :, 0], rows, total, 0)
        out[:, :, 1] = total
    if not covered.simple:
        for column, ufunc in ((2, np.minimum), (3, np.maximum)):
            covered.gather(ufunc, red[:, :, column], rows, out[:, :, column], 0)
    if layout.any_partial:      # the bins outside the recorded range read 0
        out[:, layout.partial, 2] = np.minimum(out[:, layout.partial, 2], 0)
        out[:, layout.partial, 3] = np.maximum(out[:, layout.partial, 3], 0)
    np.divide(total, layout.size, out=out[:, :, 4])     # an empty ROI: 0 / inf
    return out


def roi_stats(table: RoiTable, spectra: np.ndarray, first_bin: int = 0,
              full_bins: Optional[int] = None, layout: Optional[RoiLayout] = None) -> np.ndarray:
    """(ch, NUM_ROIS, 5) total, net, min, max, mean of each used ROI in one frame.

    `spectra` (ch, bins) holds bins first_bin.. of the full spectrum (all of it by
    default); unused ROIs read 0. `layout`: the table's RoiLayout for this shape if the
    caller holds it already (making it is most of the cost)."""
    channels, bins = spectra.shape
    full_bins = first_bin + bins if full_bins is None else full_bins
    if layout is None:
        layout = RoiLayout.of(table, channels, first_bin, bins, full_bins)
    stats = np.zeros(table.lo.shape + (NUM_STATS,))
    values = block_stats(layout, np.ascontiguousarray(spectra)[None])[0]
    for k, (ch, r) in enumerate(layout.keys):
        stats[ch, r] = values[k]
    return stats
