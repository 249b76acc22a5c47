"""CPU per frame of the readout's accounting alone (Readout._account), in-process,
beside a cold 64 KiB copy measured in the same run (issue 17).

cpu_per_frame.py splits a real IOC's CPU by sampling; this script times the one
stage "sums / ROI / time series" directly, so a change to it can be judged in
seconds: the benchmark's shape (4 channels x 4096 bins uint32, 8 ROIs per
channel of 496 bins, no background, the time series recording circularly),
blocks of 20-128 frames read CHUNK_BYTES at a time from a 64 MiB pool of
low-count frames (0..3 per bin) into a 128 MiB ring of block buffers.

    python benchmarks/account_cost.py [--frames 8192] [--repeats 5]

Each figure is CPU us per frame (time.thread_time), the best of the repeats:
  account   Readout._account as a whole, the read (`fill`, a cold copy) left out;
  sum       the frame-axis sum of each chunk into the block's total;
  rois      rois.block_stats of each chunk;
  ts        sca_values + TimeSeries.append of each block;
  copy      the floor: memcpy of a frame, cold at both ends (cpu_per_frame.cold_copy_us).
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from cpu_per_frame import cold_copy_us  # noqa: E402
from xspress3.driver import compute as deadtime  # noqa: E402
from xspress3.ioc import readout as ro  # noqa: E402
from xspress3.ioc.rois import NUM_STATS, RoiTable, block_stats  # noqa: E402
from xspress3.vocabulary import TICKS_PER_SECOND  # noqa: E402

CHANNELS, BINS, ROIS = 4, 4096, 8
POOL_FRAMES, RING_FRAMES = 1024, 2048          # 64 MiB source, 128 MiB of block buffers
EVENT_WIDTH = np.full(CHANNELS, 6.0)


def roi_table() -> RoiTable:
    """ROI r (1..8) of each channel: MinX = (r-1)*512 + 8, SizeX = 496, no background."""
    table = RoiTable.empty(CHANNELS, BINS)
    for ch in range(CHANNELS):
        for r in range(ROIS):
            lo = r * 512 + 8
            table = table.with_roi(ch, r, lo=lo, hi=lo + 496, use=True, bgd=0)
    return table


def make_blocks(rng, frames: int) -> list:
    """(first pool frame, FrameBlock) of 20-128 frames each; spectra are views of one ring."""
    ring = np.zeros((RING_FRAMES, CHANNELS, BINS), dtype=np.uint32)   # pages mapped
    blocks, done, at = [], 0, 0
    while done < frames:
        n = min(int(rng.integers(20, 129)), frames - done)
        at = 0 if at + n > RING_FRAMES else at
        src = done % (POOL_FRAMES - 128)
        scalers = rng.integers(0, 1000, (n, CHANNELS, 9)).astype(np.uint32)
        scalers[:, :, ro.TIME] = rng.integers(8000, 9000, (n, CHANNELS))
        scalers[:, :, ro.ALL_GOOD] = 3 * BINS          # the most events a frame can hold
        factor, percent = deadtime(scalers, EVENT_WIDTH)
        blocks.append((src, ro.FrameBlock(
            first_frame=done, spectra=ring[at:at + n], scalers=scalers,
            dtfactor=factor, dtpercent=percent)))
        done, at = done + n, at + n
    return blocks


def fresh_readout(points: int) -> ro.Readout:
    readout = ro.Readout(lambda item: None, ts_points=points)
    readout.rois = roi_table()
    readout.erase(CHANNELS, BINS)
    readout.ts.circular = True
    readout.ts.run_started()
    return readout


def run(pool: np.ndarray, blocks: list, plan: ro.RunPlan, part: str) -> float:
    """CPU seconds of `part` over one pass of `blocks` (the reads not counted)."""
    readout = fresh_readout(plan.ts_points)
    layout = readout.roi_layout(plan)
    step = max(1, ro.CHUNK_BYTES // pool[0].nbytes)
    total = np.zeros((CHANNELS, BINS), dtype=np.uint32)
    part_sum = np.zeros_like(total)
    reads = spent = 0.0
    for src, block in blocks:
        def fill(sl: slice) -> None:          # the driver's read: a cold copy, timed apart
            nonlocal reads
            t0 = time.thread_time()
            block.spectra[sl] = pool[src + sl.start:src + sl.stop]
            reads += time.thread_time() - t0

        n = block.count
        if part == "account":
            t0 = time.thread_time()
            readout._account(plan, block, fill)
            spent += time.thread_time() - t0
            continue
        stats = np.zeros((n, len(layout.keys), NUM_STATS))
        for start in range(0, n, step):
            sl = slice(start, min(start + step, n))
            fill(sl)
            t0 = time.thread_time()
            if part == "sum":
                np.add.reduce(block.spectra[sl], axis=0, dtype=np.uint32, out=part_sum)
                total += part_sum
            elif part == "rois":
                block_stats(layout, block.spectra[sl], stats[sl])
            spent += time.thread_time() - t0
        if part == "ts":
            t0 = time.thread_time()
            ticks = np.cumsum(block.scalers[:, 0, ro.TIME], dtype=np.float64)
            sca = ro.sca_values(block.scalers, block.dtfactor, block.dtpercent, EVENT_WIDTH)
            readout.ts.append(layout.keys, stats, sca, ticks / TICKS_PER_SECOND)
            spent += time.thread_time() - t0
    return spent - (reads if part == "account" else 0.0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--frames", type=int, default=8192)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    rng = np.random.default_rng(17)
    pool = rng.integers(0, 4, (POOL_FRAMES, CHANNELS, BINS), dtype=np.uint32)
    blocks = make_blocks(rng, args.frames)
    plan = ro.RunPlan(run_id=1, num_frames=args.frames, channels=CHANNELS, first_bin=0,
                      num_bins=BINS, full_bins=BINS, circular=True, memory=16384,
                      event_width=EVENT_WIDTH, dtc=False, ts_points=4096)
    parts = ("account", "sum", "rois", "ts")
    best = {p: min(run(pool, blocks, plan, p) for _ in range(args.repeats)) for p in parts}
    copy = cold_copy_us(pool, 8192)
    print(f"{args.frames} frames in {len(blocks)} blocks, best of {args.repeats}, CPU us per frame")
    for p in parts:
        us = 1e6 * best[p] / args.frames
        print(f"  {p:8s} {us:6.2f}  ({us / copy:4.2f}x copy)")
    print(f"  {'copy':8s} {copy:6.2f}  (cold 64 KiB memcpy)")


if __name__ == "__main__":
    main()
