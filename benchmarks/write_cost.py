"""CPU per frame of the receiver's uncompressed HDF5 writing against plain file writes.

One process, the same synthetic frames (4 channels x 4096 bins uint32, 64 KiB a
frame) for every way of writing them, each a new file in one temporary directory:

  tofile        `ndarray.tofile` of 128-frame (8 MiB) blocks, the file unlinked right
                after the measurement (what benchmarks/cpu_per_frame.py's floor does)
  tofile_keep   the same, the file kept until every measurement of the round is done
  write_1m      an `os.write` loop of 1 MiB pieces (the size of one HDF5 chunk)
  series        `layout.create` + `SeriesFile.append` of 128-frame blocks, flush
                every 0.25 s as the receiver does, then `close(True)`
  series_*      the same with file-level settings changed (see VARIANTS): no periodic
                flush, chunks aligned to 4 KiB or 1 MiB, paged file-space aggregation
  series_before the same with writers/layout.py of another git revision (--before)
  writer        `HDF5Writer` (its own thread) fed the same blocks, open to close

CPU is process user + system (`resource.getrusage(RUSAGE_SELF)`), so the writer
thread counts; `thread` is `time.thread_time` of the calling thread. Rounds are
interleaved and the median is reported (the page cache and writeback make single
figures move by 20-50 %).

Before each measurement `settle` (as benchmarks/bench.py: sync, then touch and
free the run's volume of memory) unless --no-settle.

Usage: python benchmarks/write_cost.py [--frames 4096] [--rounds 5] [--dir /tmp]
       [--only tofile,series,...] [--no-settle] [--pace FRAMES_PER_S] [--block 128]
       [--before GIT_REV]
"""
from __future__ import annotations

import argparse
import functools
import os
import resource
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from xspress3.writers import hdf5, layout, wire

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench import settle  # noqa: E402  (the same page-cache preparation as bench.py)

CHANNELS, BINS = 4, 4096
FRAME_BYTES = CHANNELS * BINS * 4
BLOCK_FRAMES = 128            # one readout block: 8 MiB
POOL_BLOCKS = 8               # 64 MiB of distinct frames, cycled
FLUSH_S = 0.25                # the receiver's flush interval


def make_pool() -> list[wire.FrameBlock]:
    rng = np.random.default_rng(1)
    blocks = []
    for b in range(POOL_BLOCKS):
        n = 128
        spectra = rng.integers(0, 200, size=(n, CHANNELS, BINS), dtype=np.uint32)
        scalers = rng.integers(0, 1 << 20, size=(n, CHANNELS, wire.NUM_SCALERS), dtype=np.uint32)
        dtf = 1.0 + rng.random((n, CHANNELS))
        dtp = rng.random((n, CHANNELS)) * 10
        blocks.append(wire.FrameBlock(first_frame=0, spectra=spectra, scalers=scalers,
                                      dtfactor=dtf, dtpercent=dtp))
    return blocks


#: Frames per second to pace the blocks at (0: as fast as they are written); set by --pace.
PACE = 0.0


def blocks_of(pool: list[wire.FrameBlock], frames: int):
    done, i = 0, 0
    t0 = time.perf_counter()
    while done < frames:
        if PACE:
            ahead = t0 + done / PACE - time.perf_counter()
            if ahead > 0:
                time.sleep(ahead)
        p = pool[i % len(pool)]
        n = min(BLOCK_FRAMES, frames - done)   # a block is a prefix of a pool block
        yield wire.FrameBlock(first_frame=done, spectra=p.spectra[:n], scalers=p.scalers[:n],
                              dtfactor=p.dtfactor[:n], dtpercent=p.dtpercent[:n])
        done += n
        i += 1


def start_msg(frames: int) -> wire.SeriesStart:
    return wire.SeriesStart(series_id="write_cost", channels=CHANNELS, bins=BINS,
                            event_width=[6.0 + c for c in range(CHANNELS)], exposure_s=0.001,
                            start_time="2024-01-01T12:00:00.000000+00:00", frames_expected=frames,
                            detector={"model": "Xspress3 (synthetic)", "simulated": True})


class Meter:
    def __enter__(self):
        ru = resource.getrusage(resource.RUSAGE_SELF)
        self.r0, self.t0, self.w0 = ru, time.thread_time(), time.perf_counter()
        return self

    def __exit__(self, *exc):
        ru = resource.getrusage(resource.RUSAGE_SELF)
        self.thread = time.thread_time() - self.t0
        self.wall = time.perf_counter() - self.w0
        self.user = ru.ru_utime - self.r0.ru_utime
        self.sys = ru.ru_stime - self.r0.ru_stime
        self.minflt = ru.ru_minflt - self.r0.ru_minflt
        return False


# ---- the ways of writing -------------------------------------------------------
def run_tofile(d: Path, pool, frames: int, keep: list) -> Meter:
    path = d / f"tofile-{len(keep)}-{time.monotonic_ns()}.bin"
    with Meter() as m:
        with open(path, "wb") as fh:
            for b in blocks_of(pool, frames):
                b.spectra.tofile(fh)
    keep.append(path)
    return m


def run_write_1m(d: Path, pool, frames: int, keep: list) -> Meter:
    path = d / f"write1m-{time.monotonic_ns()}.bin"
    piece = 1 << 20
    with Meter() as m:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        try:
            for b in blocks_of(pool, frames):
                mv = memoryview(b.spectra).cast("B")
                for k in range(0, len(mv), piece):
                    os.write(fd, mv[k:k + piece])
        finally:
            os.close(fd)
    keep.append(path)
    return m


def run_series(d: Path, pool, frames: int, keep: list, file_kw: dict = None,
               flush_s: float = FLUSH_S, module=None) -> Meter:
    layout = module or globals()["layout"]
    path = d / f"series-{time.monotonic_ns()}.h5"
    orig = layout.h5py.File
    if file_kw:
        layout.h5py.File = functools.partial(orig, **file_kw)
    try:
        parts = dict.fromkeys(("create", "flush", "close"), 0.0)

        def cpu() -> float:
            ru = resource.getrusage(resource.RUSAGE_SELF)
            return ru.ru_utime + ru.ru_stime

        with Meter() as m:
            c0 = cpu()
            f = layout.create(path, start_msg(frames), "None", flush_interval_s=flush_s, min_free_bytes=0)
            parts["create"] = cpu() - c0
            flush = f.flush

            def timed_flush() -> None:
                c0 = cpu()
                flush()
                parts["flush"] += cpu() - c0
            f.flush = timed_flush
            for b in blocks_of(pool, frames):
                f.append(b)
            c0 = cpu()
            f.close(True)
            parts["close"] = cpu() - c0
        m.parts = parts
    finally:
        layout.h5py.File = orig
    keep.append(path)
    return m


def run_writer(d: Path, pool, frames: int, keep: list) -> Meter:
    path = d / f"writer-{time.monotonic_ns()}.h5"
    w = hdf5.HDF5Writer(flush_interval_s=FLUSH_S, min_free_bytes=0, max_queued_frames=1 << 20)
    try:
        with Meter() as m:
            w.open_series(path, start_msg(frames), "None")
            for b in blocks_of(pool, frames):
                w.offer(b, timeout=60.0)
            res = w.close_series(timeout=300.0)
        assert res.frames_written == frames, res
    finally:
        w.close()
    keep.append(path)
    return m


#: name -> (function, keyword arguments, unlink the file right after its measurement)
VARIANTS = {
    "tofile": (run_tofile, {}, True),
    "tofile_keep": (run_tofile, {}, False),
    "write_1m": (run_write_1m, {}, True),
    "series": (run_series, {}, True),
    "series_noflush": (run_series, {"flush_s": 1e9}, True),
    "series_align4k": (run_series, {"file_kw": {"alignment_threshold": 65536, "alignment_interval": 4096}}, True),
    "series_align1m": (run_series, {"file_kw": {"alignment_threshold": 65536, "alignment_interval": 1 << 20}}, True),
    "series_paged": (run_series, {"file_kw": {"fs_strategy": "page", "fs_page_size": 4096,
                                              "page_buf_size": 1 << 20}}, True),
    "series_paged_nobuf": (run_series, {"file_kw": {"fs_strategy": "page", "fs_page_size": 4096}}, True),
    "writer": (run_writer, {}, True),
}


def layout_at(rev: str):
    """writers/layout.py as it is at git revision ``rev``, loaded beside the current one
    (same package, so its relative imports work), for before/after in one run."""
    import importlib.util
    import subprocess
    src = subprocess.run(["git", "show", f"{rev}:writers/layout.py"], check=True, capture_output=True,
                         text=True, cwd=Path(layout.__file__).resolve().parent).stdout
    tmp = Path(tempfile.mkdtemp(prefix="write_cost-layout-")) / "layout_before.py"
    tmp.write_text(src)
    name = f"{layout.__package__}._layout_{rev.replace('~', '_').replace('^', '_')}"
    spec = importlib.util.spec_from_file_location(name, tmp)
    mod = importlib.util.module_from_spec(spec)
    sys.modules[name] = mod
    try:
        spec.loader.exec_module(mod)
    finally:
        shutil.rmtree(tmp.parent, ignore_errors=True)
    return mod


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--frames", type=int, default=4096)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--dir", default="/tmp")
    ap.add_argument("--no-settle", action="store_true",
                    help="no sync + warm pages before each measurement")
    ap.add_argument("--block", type=int, default=128,
                    help="frames per block handed to the writers (tofile's write size; at most 128)")
    ap.add_argument("--pace", type=float, default=0.0,
                    help="hand out blocks at this many frames/s, as a detector would (default: at once)")
    ap.add_argument("--before", metavar="REV",
                    help="also series_before: the series with writers/layout.py of git revision REV")
    ap.add_argument("--only", default=",".join(VARIANTS))
    args = ap.parse_args(argv)
    if args.before:
        VARIANTS["series_before"] = (run_series, {"module": layout_at(args.before)}, True)
        if "series_before" not in args.only.split(","):
            args.only += ",series_before"
    global PACE, BLOCK_FRAMES
    PACE, BLOCK_FRAMES = args.pace, args.block
    names = [n for n in args.only.split(",") if n]
    pool = make_pool()
    work = Path(tempfile.mkdtemp(prefix="write_cost-", dir=args.dir))
    res: dict[str, list[Meter]] = {n: [] for n in names}
    try:
        for name in names:      # warm-up: imports, first file creation
            fn, kw, _ = VARIANTS[name]
            keep: list = []
            fn(work, pool, min(args.frames, 512), keep, **kw)
            for p in keep:
                p.unlink()
        for r in range(args.rounds):
            kept: list = []
            order = names if r % 2 == 0 else names[::-1]
            for name in order:
                fn, kw, unlink = VARIANTS[name]
                keep: list = []
                if not args.no_settle:
                    settle(args.frames * FRAME_BYTES)
                res[name].append(fn(work, pool, args.frames, keep, **kw))
                if unlink:
                    for p in keep:
                        p.unlink()
                else:
                    kept += keep
            for p in kept:
                p.unlink()
            print(f"round {r + 1}/{args.rounds}: " + ", ".join(
                f"{n} {1e6 * (res[n][-1].user + res[n][-1].sys) / args.frames:.1f}" for n in names),
                file=sys.stderr)
    finally:
        shutil.rmtree(work, ignore_errors=True)

    def med(name, attr):
        return 1e6 * statistics.median(getattr(m, attr) for m in res[name]) / args.frames

    ref = "tofile" if "tofile" in res else names[0]
    base = med(ref, "user") + med(ref, "sys")
    print(f"{args.frames} frames of {FRAME_BYTES // 1024} KiB per run, {args.rounds} rounds, median; "
          f"CPU us per frame; dir {args.dir}"
          + f"; blocks of {BLOCK_FRAMES} frames" + (f"; paced at {PACE:.0f} frames/s" if PACE else ""))
    print(f"| {'way':<18} | {'user':>6} | {'sys':>6} | {'user+sys':>8} | {'thread':>6} | {'x ' + ref:>9} "
          f"| {'min u+s':>7} | {'wall':>6} | {'minflt/fr':>9} |")
    print("|" + "|".join("-" * w for w in (20, 8, 8, 10, 8, 11, 9, 8, 11)) + "|")
    for name in names:
        us = [1e6 * (m.user + m.sys) / args.frames for m in res[name]]
        tot = statistics.median(us)
        print(f"| {name:<18} | {med(name, 'user'):6.1f} | {med(name, 'sys'):6.1f} | {tot:8.1f} | "
              f"{med(name, 'thread'):6.1f} | {tot / base:9.2f} | {min(us):7.1f} | {med(name, 'wall'):6.1f} | "
              f"{statistics.median(m.minflt for m in res[name]) / args.frames:9.2f} |")
    parted = [n for n in names if all(hasattr(m, "parts") for m in res[n])]
    if parted:
        print("\nparts of the series runs (median us per frame, process CPU): "
              "create = layout.create, flush = the periodic flushes (0.25 s), close = close(True)")
        for name in parted:
            print(f"  {name:<18} " + ", ".join(
                f"{k} {1e6 * statistics.median(m.parts[k] for m in res[name]) / args.frames:.2f}"
                for k in ("create", "flush", "close")))
    return 0


if __name__ == "__main__":
    sys.exit(main())
