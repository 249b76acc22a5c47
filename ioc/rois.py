"""ROI arithmetic on spectra, vectorised over frames.

An ROI covers bins [lo, hi) of the full spectrum. Net counts subtract a flat
background estimated from `bgd` bins inside each edge (as NDROIStat does).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from xspress3.vocabulary import DEFAULT_BINS, NUM_ROIS


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


def roi_totals(table: RoiTable, spectra: np.ndarray, first_bin: int) -> dict:
    """Per-frame totals of every used ROI: {(ch, r): array(n)}.

    `spectra` is (n, ch, bins) holding bins first_bin.. of the full spectrum; ROI
    parts outside the recorded range count as zero.
    """
    out = {}
    nbins = spectra.shape[2]
    channels = spectra.shape[1]
    for ch, r in table.used():
        if ch >= channels:
            continue
        lo = max(int(table.lo[ch, r]) - first_bin, 0)
        hi = min(int(table.hi[ch, r]) - first_bin, nbins)
        if hi <= lo:
            out[(ch, r)] = np.zeros(spectra.shape[0])
        else:
            out[(ch, r)] = spectra[:, ch, lo:hi].sum(axis=1, dtype=np.float64)
    return out


def roi_stats(table: RoiTable, spectra: np.ndarray) -> np.ndarray:
    """(ch, 48, 5) total, net, min, max, mean of each used ROI in one frame (ch, full_bins)."""
    stats = np.zeros(table.lo.shape + (5,))
    for ch, r in table.used():
        if ch >= spectra.shape[0]:
            continue
        lo, hi = int(table.lo[ch, r]), min(int(table.hi[ch, r]), spectra.shape[1])
        if hi <= lo:
            continue
        part = spectra[ch, lo:hi]
        total = float(part.sum())
        width = int(table.bgd[ch, r])
        if width > 0 and 2 * width <= part.size:
            edges = np.concatenate((part[:width], part[-width:]))
            net = total - float(edges.mean()) * part.size
        else:
            net = total
        stats[ch, r] = (total, net, part.min(), part.max(), part.mean())
    return stats
