"""End-to-end benchmark of the IOC's data path against baselines measured in the same run.

Why: speed is the reason to switch to this IOC, so the figures are measured the
way a sceptical user would: our path and the simple ways side by side, on the
same frames, on the same machine, as ratios against fixed targets.

    python benchmarks/bench.py [--frames N] [--write-frames N] [--step-points N] [--e2e-runs R]
                               [--json out.json] [--quick]

Phases (each in separate processes, as deployed):
  1. baselines: one pickled dict per frame over zmq (the seed's way) and raw
     zmq with 64 frames per multipart message (the ceiling, no processing);
     with (2), `--e2e-runs` rounds (default 5), each round judged on its own;
  2. ours: IOC on the simulator at its highest frame rate -> readout -> zmq ->
     `xspress3-receive --decode-only`; meanwhile a separate CA client measures
     caget latency, another counts MCA1:ArrayData monitor updates, and the RSS
     of the IOC and the receiver is sampled;
  3. writing: `ndarray.tofile` of the same bytes, then the receiver writing
     HDF5 uncompressed and with bitshuffle-LZ4, then the built-in HDF1 writer
     the same two ways, all into the same directory;
  4. a step scan: points of one 1 ms frame, one Acquire put with callback each
     and every frame captured to one file, against a put with callback to a
     scalar PV (the Channel Access round trip alone).
The simulator's frame memory is made as large as the run (it holds metadata
only), so the detector never limits the rate: the figures are the pipeline's.
Each writing rate counts until the file is on disk: the script fsyncs what the
writer closed, inside the timed window. Writing runs are 4 GiB by default,
more than the kernel buffers before it starts writing back (10 % of RAM here):
a run that fits in the page cache measures memcpy plus one final fsync, and the
fixed cost of a run (file creation and close, ~0.1 s) would weigh 10-15 % of it.
The page cache is synced between phases (untimed) so each starts from the same
state.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Optional

import numpy as np
import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent))

from harness import (FRAME_BYTES, CpuWatch, Receiver, RssSampler, ca_repeater, dump, machine,  # noqa: E402
                     percentile, start_ioc)

HERE = Path(__file__).resolve().parent
POOL_FRAMES = 1024           # distinct frames; every path cycles through the same ones
MIN_EXPOSURE_S = 1e-5        # AcquireTime's lower limit: the simulator's highest frame rate
LONG_RUN = 200_000           # frames needed for the flat-memory figure
WRITE_RUN = 65_536           # frames per writing run: 4 GiB, beyond what the page cache absorbs (see above)
# Untimed first runs: a fresh IOC fills its block pool, queues and heap. Measured at full
# rate: its RSS rose 220 -> 235 -> 263 MB over its first 300 000 frames, then grew 0.0 %
# within each of four more 200 000-frame runs (263-274 MB between them).
WARMUP_RUNS = 2
WARMUP_FRAMES = 150_000
E2E_RUNS = 5                 # rounds of the stream paths: issue 17 wants ours >= 2x pickle in 5 of 5
WARM_BYTES = 1 << 30         # memory made warm before each streaming phase (see settle)
STEP_POINTS = 300            # points of the step scan (--quick 100)
STEP_EXPOSURE_S = 0.001

TARGETS = {
    "stream_vs_pickle": 2.0,       # ours >= 2x the seed-style pickle baseline
    "stream_vs_ceiling": 0.6,      # ours >= 60 % of raw batched zmq
    "hdf5_vs_tofile": 0.8,         # uncompressed HDF5 >= 80 % of tofile
    "bslz4_vs_tofile": 1.0,        # bitshuffle-LZ4 faster than tofile
    "caget_p99_ms": 20.0,
    "monitor_vs_update_rate": 0.8,  # monitor clients see >= 80 % of the configured rate
    "rss_growth_pct": 5.0,
}


def log(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


# ---- frames ----------------------------------------------------------------------------
def make_pool(path: Path, exposure: float) -> dict:
    """POOL_FRAMES frames from the simulator at the benchmark's exposure, saved for the baselines."""
    from xspress3.driver import FrameSource, ItfgTrigMode, Xspress3, compute
    with Xspress3(frames_memory=POOL_FRAMES) as dev:
        dev.clear(0, POOL_FRAMES)
        dev.set_run_flags(False)
        dev.set_timing(FrameSource.INTERNAL)
        dev.setup_itfg(POOL_FRAMES, exposure, ItfgTrigMode.BURST)
        dev.start()
        deadline = time.monotonic() + 30
        while dev.progress().frames < POOL_FRAMES:
            if time.monotonic() > deadline:
                raise RuntimeError("simulator did not complete the pool frames")
            time.sleep(0.01)
        spectra = np.empty((POOL_FRAMES, 4, 4096), np.uint32)
        scalers = np.empty((POOL_FRAMES, 4, 9), np.uint32)
        dev.read_spectra(spectra, 0)
        dev.read_scalers(scalers, 0)
    dtfactor, dtpercent = compute(scalers, np.full(4, 6.0))
    np.savez(path, spectra=spectra, scalers=scalers, dtfactor=dtfactor, dtpercent=dtpercent)
    return {"spectra": spectra, "scalers": scalers, "dtfactor": dtfactor, "dtpercent": dtpercent}


# ---- phase 1: baselines ------------------------------------------------------------------
def baseline(mode: str, pool: Path, frames: int, timeout: float) -> dict:
    from iochelp import free_port
    endpoint = f"tcp://127.0.0.1:{free_port()}"
    script = str(HERE / "baseline_zmq.py")
    settle(WARM_BYTES)
    with CpuWatch() as cpu:
        sender = subprocess.Popen([sys.executable, script, "send", "--mode", mode, "--endpoint", endpoint,
                                   "--pool", str(pool), "--frames", str(frames)])
        receiver = subprocess.Popen([sys.executable, script, "recv", "--mode", mode, "--endpoint", endpoint],
                                    stdout=subprocess.PIPE, text=True)
        try:
            if sender.wait(timeout=timeout) != 0:
                raise RuntimeError(f"baseline sender ({mode}) failed with {sender.returncode}")
            out, _ = receiver.communicate(timeout=30)
        finally:
            for proc in (sender, receiver):
                if proc.poll() is None:
                    proc.kill()
                    proc.wait()
    result = json.loads(out.strip().splitlines()[-1])
    rate = result["frames"] / result["seconds"]
    return {"frames": result["frames"], "lost": result["expected"] - result["frames"],
            "seconds": result["seconds"], "frames_per_s": rate, "gb_per_s": rate * FRAME_BYTES / 1e9,
            "cpu": cpu.result}


# ---- phase 2: ours, streaming --------------------------------------------------------------
class Probe:
    """ca_probe.py in its own process (see there)."""

    def __init__(self, ioc, mode: str, pv: str):
        self.proc = subprocess.Popen([sys.executable, str(HERE / "ca_probe.py"), mode, ioc.pv(pv)],
                                     env=ioc.env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)

    def ready(self, timeout: float = 20.0) -> None:
        line = _readline(self.proc, timeout)
        if line.strip() != "ready":
            raise RuntimeError(f"CA probe did not connect: {line!r}")

    def finish(self, timeout: float = 30.0) -> dict:
        out, _ = self.proc.communicate("stop\n", timeout=timeout)
        return json.loads(out.strip().splitlines()[-1])


def _readline(proc: subprocess.Popen, timeout: float) -> str:
    box: list = []
    reader = threading.Thread(target=lambda: box.append(proc.stdout.readline()), daemon=True)
    reader.start()
    reader.join(timeout)
    if not box:
        raise TimeoutError("no answer from subprocess")
    return box[0]


def configure_run(ioc, frames: int, exposure: float) -> None:
    ioc.put("det1:TriggerMode", "Internal")
    ioc.put("det1:AcquireTime", exposure)
    ioc.put("det1:NumImages", frames)


def acquire(ioc, frames: int) -> tuple:
    """Acquire=1 with callback; returns (start, end) in time.monotonic()."""
    t0 = time.monotonic()
    ioc.put("det1:Acquire", 1, wait=True, timeout=60 + frames / 1000)
    return t0, time.monotonic()


def stream_stats(ioc) -> dict:
    return {"state": ioc.get("det1:DetectorState_RBV"), "status": ioc.get("det1:StatusMessage_RBV"),
            "array_counter": ioc.get("det1:ArrayCounter_RBV"),
            "stream_sent": ioc.get("det1:StreamFramesSent_RBV"),
            "stream_lost": ioc.get("det1:StreamFramesLost_RBV"),
            "stream_lost_reason": ioc.get("det1:StreamLostReason_RBV")}


def ours_stream(ioc, frames: int, exposure: float) -> dict:
    configure_run(ioc, frames, exposure)
    update_rate = float(ioc.get("det1:UpdateRate_RBV"))
    receiver = Receiver.connected(ioc, max_series=1)
    try:
        probes = {"get": Probe(ioc, "get", "det1:ArrayCounter_RBV"),
                  "monitor": Probe(ioc, "monitor", "MCA1:ArrayData")}
        for probe in probes.values():
            probe.ready()
        time.sleep(0.5)   # the monitor's first (connection) update is not part of the run
        settle(WARM_BYTES)
        procs = {"ioc": psutil.Process(ioc.proc.pid), "receiver": psutil.Process(receiver.pid)}
        with RssSampler({"ioc": ioc.proc.pid, "receiver": receiver.pid}) as rss, CpuWatch() as cpu:
            before = {name: sum(proc.cpu_times()[:2]) for name, proc in procs.items()}
            t0, t1 = acquire(ioc, frames)
            summary = receiver.wait_summaries(1, timeout=60)[0]
            rss.samples.append(rss.sample())
            used = {name: sum(proc.cpu_times()[:2]) - before[name] for name, proc in procs.items()}
        probe_data = {name: probe.finish() for name, probe in probes.items()}
    finally:
        receiver.stop()
    stats = stream_stats(ioc)
    lost = max(stats["stream_lost"], frames - summary.frames, summary.sender_lost + summary.missing)
    lat = [dt for ts, dt in probe_data["get"]["samples"] if t0 <= ts <= t1]
    arrivals = [t for t in probe_data["monitor"]["arrivals"] if t0 <= t <= t1]
    gaps = np.diff([t0] + arrivals + [t1]) if arrivals else np.array([t1 - t0])
    duration = t1 - t0
    return {
        "frames": summary.frames, "lost": lost, "complete": summary.complete, "receiver_line": summary.line,
        "frames_per_s": summary.rate, "gb_per_s": summary.rate * FRAME_BYTES / 1e9,
        "wall_s": summary.seen_at - t0, "frames_per_s_wall": frames / (summary.seen_at - t0),
        "acquire_s": duration, "ioc": stats, "cpu": cpu.result,
        "cpu_us_per_frame": {name: 1e6 * seconds / max(frames, 1) for name, seconds in used.items()},
        "caget": {"pv": "det1:ArrayCounter_RBV", "count": len(lat), "failures": probe_data["get"]["failures"],
                  "p50_ms": _ms(percentile(lat, 50)), "p99_ms": _ms(percentile(lat, 99)),
                  "max_ms": _ms(max(lat) if lat else None)},
        "monitor": {"pv": "MCA1:ArrayData", "updates": len(arrivals), "seconds": duration,
                    "rate_hz": len(arrivals) / duration, "update_rate_setting_hz": update_rate,
                    "longest_gap_s": float(gaps.max())},
        "rss": {"ioc": rss.growth("ioc", t0, summary.seen_at),
                "receiver": rss.growth("receiver", t0, summary.seen_at)},
    }


def _ms(seconds: Optional[float]) -> Optional[float]:
    return None if seconds is None else seconds * 1e3


# ---- phase 3: writing ---------------------------------------------------------------------
def block_frames() -> int:
    """The readout's block size for full 4 x 4096 frames (the blocks every writer gets)."""
    from xspress3.ioc.readout import block_shape
    return block_shape(4, 4096)[0]


def settle(nbytes: int = 0) -> None:
    """Put every writing path in the same state: earlier dirty pages written back
    (so a phase does not pay for the one before) and `nbytes` of free memory
    recently used. On a VM whose free memory goes back to the host (balloon page
    reporting), the first write into never-touched page-cache pages runs several
    times slower; touching and freeing that much memory first makes the kernel
    hand the next write warm pages, whichever path comes first."""
    os.sync()
    if nbytes:
        warm = np.ones(nbytes // 8)
        del warm


def fsync_files(paths: list) -> float:
    """fsync each file; returns the seconds it took (the rest of the way to the disk)."""
    t0 = time.monotonic()
    for path in paths:
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
    return time.monotonic() - t0


def rates(frames: int, written_s: float, sync_s: float) -> dict:
    """Rates to the page cache (as the writer saw it) and to the disk (fsync included)."""
    to_disk = frames / (written_s + sync_s)
    return {"seconds": written_s, "fsync_s": sync_s, "frames_per_s_cached": frames / written_s,
            "frames_per_s": to_disk, "gb_per_s": to_disk * FRAME_BYTES / 1e9}


def pool_blocks(pool: dict, frames: int):
    """FrameBlocks of the readout's block size cycling through the pool frames."""
    from xspress3.writers.wire import FrameBlock
    block, size = block_frames(), pool["spectra"].shape[0]
    done = 0
    while done < frames:
        k = done % size
        n = min(block, frames - done, size - k)
        yield FrameBlock(first_frame=done, spectra=pool["spectra"][k:k + n], scalers=pool["scalers"][k:k + n],
                         dtfactor=pool["dtfactor"][k:k + n], dtpercent=pool["dtpercent"][k:k + n])
        done += n


def raw_tofile(directory: Path, pool: dict, frames: int, timed: bool = True) -> dict:
    """`ndarray.tofile` of the spectra, one call per readout-sized block."""
    path = directory / "raw_tofile.bin"
    settle(frames * FRAME_BYTES)
    with CpuWatch() as cpu:
        t0 = time.monotonic()
        with open(path, "wb") as fh:
            for block in pool_blocks(pool, frames):
                block.spectra.tofile(fh)
        written = time.monotonic() - t0
        sync_s = fsync_files([path])
    size = path.stat().st_size
    path.unlink()
    return {"frames": frames, "lost": 0, "file_mb": size / 1e6, "block_frames": block_frames(),
            "cpu": cpu.result, **rates(frames, written, sync_s)}


def layer_alone(directory: Path, pool: dict, frames: int, compression: str) -> dict:
    """The HDF5 layout code alone, in this process, on the same blocks: what the
    writer costs without the IOC, the network and the other process."""
    from xspress3.writers import layout
    from xspress3.writers.wire import SeriesStart, utc_now_iso
    path = directory / f"layer-{compression}.h5"
    start = SeriesStart(series_id="bench", channels=4, bins=4096, first_bin=0, full_bins=4096, ev_per_bin=10.0,
                        exposure_s=MIN_EXPOSURE_S, trigger_mode="Internal", frames_expected=frames,
                        dtc_applied=False, detector={"model": "benchmark"}, event_width=[6.0] * 4,
                        start_time=utc_now_iso())
    settle(frames * FRAME_BYTES)
    with CpuWatch() as cpu:
        t0 = time.monotonic()
        handle = layout.create(path, start, compression)
        for block in pool_blocks(pool, frames):
            handle.append(block)
        handle.close(complete=True)
        written = time.monotonic() - t0
        sync_s = fsync_files([path])
    size = path.stat().st_size
    path.unlink()
    return {"frames": frames, "lost": 0, "file_mb": size / 1e6, "cpu": cpu.result,
            **rates(frames, written, sync_s)}


def receiver_write(ioc, directory: Path, frames: int, exposure: float, compression: str) -> dict:
    out = directory / f"receiver-{compression}"
    out.mkdir()
    configure_run(ioc, frames, exposure)
    receiver = Receiver.connected(ioc, output=out, compression=compression, max_series=1)
    try:
        settle(frames * FRAME_BYTES)
        with CpuWatch() as cpu:
            t0, _ = acquire(ioc, frames)
            summary = receiver.wait_summaries(1, timeout=120 + frames / 500)[0]
            files = list(out.glob("*.h5"))
            sync_s = fsync_files(files)
    finally:
        receiver.stop()
    stats = stream_stats(ioc)
    size = sum(f.stat().st_size for f in files)
    shutil.rmtree(out)
    lost = max(stats["stream_lost"], frames - summary.frames, summary.sender_lost + summary.missing)
    return {"frames": summary.frames, "lost": lost, "complete": summary.complete,
            "receiver_frames_per_s": summary.rate, "file_mb": size / 1e6, "receiver_line": summary.line,
            "ioc": stats, "cpu": cpu.result, **rates(frames, summary.seen_at - t0, sync_s)}


def builtin_write(ioc, directory: Path, frames: int, exposure: float, compression: str) -> dict:
    out = directory / f"builtin-{compression}"
    out.mkdir()
    configure_run(ioc, frames, exposure)
    ioc.wait_for("det1:StreamReceivers_RBV", lambda v: v == 0, timeout=20, interval=0.1)
    ioc.put("HDF1:FilePath", str(out))
    ioc.put("HDF1:FileName", "bench")
    ioc.put("HDF1:Compression", compression)
    ioc.put("HDF1:NumCapture", frames)
    done: dict = {}

    def capture() -> None:
        try:
            ioc.put("HDF1:Capture", 1, wait=True, timeout=120 + frames / 500)
        finally:
            done["t"] = time.monotonic()

    capturer = threading.Thread(target=capture, daemon=True)
    capturer.start()
    ioc.wait_for("HDF1:Capture_RBV", lambda v: v == "Capturing", timeout=20)
    settle(frames * FRAME_BYTES)
    with CpuWatch() as cpu:
        t0, _ = acquire(ioc, frames)
        capturer.join(120 + frames / 500)
        if "t" not in done:
            raise TimeoutError("HDF1 capture did not finish")
        files = list(out.glob("*.h5"))
        sync_s = fsync_files(files)
    written = ioc.get("HDF1:NumCaptured_RBV")
    status = ioc.get("HDF1:WriteStatus")
    message = ioc.get("HDF1:WriteMessage")
    size = sum(f.stat().st_size for f in files)
    shutil.rmtree(out)
    return {"frames": written, "lost": frames - written, "complete": status == "Write OK",
            "file_mb": size / 1e6, "write_status": status, "write_message": message, "cpu": cpu.result,
            **rates(written, done["t"] - t0, sync_s)}


# ---- phase 4: step scan ---------------------------------------------------------------
def step_scan(ioc, directory: Path, points: int) -> dict:
    """Points of one frame, as a step scan takes them: each point an Acquire put with
    callback that completes once the frame is read, posted and its end state sent to
    the monitors; every frame captured into one HDF5 file. The baseline is a put with
    callback to a scalar PV: what Channel Access alone costs a point."""
    out = directory / "step-scan"
    out.mkdir()
    configure_run(ioc, 1, STEP_EXPOSURE_S)
    round_trip = put_times(ioc, "det1:NumImages", 1, points)   # (copied to HDF1:NumCapture: set after)
    ioc.put("HDF1:FilePath", str(out))
    ioc.put("HDF1:FileName", "scan")
    ioc.put("HDF1:Compression", "None")
    ioc.put("HDF1:NumCapture", points)
    ioc.put("HDF1:Capture", 1, wait=False)
    ioc.wait_for("HDF1:Capture_RBV", lambda v: v == "Capturing", timeout=20)
    per_point = put_times(ioc, "det1:Acquire", 1, points)
    ioc.wait_for("HDF1:Capture_RBV", lambda v: v == "Done", timeout=30)
    written = ioc.get("HDF1:NumCaptured_RBV")
    shutil.rmtree(out)
    return {"points": points, "exposure_s": STEP_EXPOSURE_S, "frames_written": written,
            "lost": points - written, "points_per_s": points / sum(per_point),
            "point_p50_ms": _ms(percentile(per_point, 50)), "point_p99_ms": _ms(percentile(per_point, 99)),
            "put_round_trip_p50_ms": _ms(percentile(round_trip, 50))}


def put_times(ioc, suffix: str, value, count: int) -> list:
    """Seconds of each of `count` puts with callback of `value` to `suffix`."""
    times = []
    for _ in range(count):
        t0 = time.perf_counter()
        ioc.put(suffix, value, timeout=30)
        times.append(time.perf_counter() - t0)
    return times


def e2e_rounds(streams: dict) -> list:
    """Each round of the stream paths judged on its own baselines: ours against the
    pickle baseline and the raw ceiling measured just before it."""
    out = []
    for pk, ceil, ours in zip(streams["baseline_pickle"], streams["baseline_batched"], streams["stream"]):
        others = max(x["cpu"]["others_cores"] for x in (pk, ceil, ours))
        out.append({"pickle": pk["frames_per_s"], "ceiling": ceil["frames_per_s"], "ours": ours["frames_per_s"],
                    "vs_pickle": ours["frames_per_s"] / pk["frames_per_s"],
                    "vs_ceiling": ours["frames_per_s"] / ceil["frames_per_s"],
                    "lost": ours["lost"], "others_cores": others})
    return out


def best(runs: list) -> dict:
    """The fastest of several rounds of one path, with every round's rate kept."""
    top = dict(max(runs, key=lambda run: run["frames_per_s"]))
    top["rounds_frames_per_s"] = [round(run["frames_per_s"]) for run in runs]
    top["lost"] = max(run["lost"] for run in runs)
    top["complete"] = all(run.get("complete", True) for run in runs)
    return top


# ---- report ----------------------------------------------------------------------------------
def evaluate(r: dict) -> list:
    """(target text, measured text, pass) for each target of the issue."""
    t = TARGETS
    s = r["stream"]
    rounds = r["e2e_runs"]
    n = len(rounds)
    pk_ok = sum(x["vs_pickle"] >= t["stream_vs_pickle"] for x in rounds)
    ceil_ok = sum(x["vs_ceiling"] >= t["stream_vs_ceiling"] for x in rounds)
    checks = [
        ("stream >= 2x seed-style pickle, in every run", f"{pk_ok} of {n} (min {min(x['vs_pickle'] for x in rounds):.2f}x)",
         pk_ok == n),
        ("stream >= 60% of raw batched zmq, in every run",
         f"{ceil_ok} of {n} (min {min(x['vs_ceiling'] for x in rounds):.0%})", ceil_ok == n),
        ("stream loses no frame", f"{s['lost']} lost", s["lost"] == 0 and s["complete"]),
    ]
    raw = r["raw_tofile"]["frames_per_s"]
    for key, label in (("receiver_None", "receiver HDF5"), ("builtin_None", "built-in HDF5")):
        w = r[key]
        checks.append((f"{label} uncompressed >= 80% of tofile", f"{w['frames_per_s'] / raw:.0%}",
                       w["frames_per_s"] >= t["hdf5_vs_tofile"] * raw and w["lost"] == 0 and w["complete"]))
    for key, label in (("receiver_BSLZ4", "receiver HDF5"), ("builtin_BSLZ4", "built-in HDF5")):
        w = r[key]
        checks.append((f"{label} BSLZ4 faster than tofile", f"{w['frames_per_s'] / raw:.0%}",
                       w["frames_per_s"] > t["bslz4_vs_tofile"] * raw and w["lost"] == 0 and w["complete"]))
    p99 = s["caget"]["p99_ms"]
    checks.append(("caget p99 <= 20 ms while streaming", "no samples" if p99 is None else f"{p99:.1f} ms",
                   p99 is not None and p99 <= t["caget_p99_ms"] and s["caget"]["failures"] == 0))
    m = s["monitor"]
    checks.append((f"MCA1:ArrayData monitor >= 80% of UpdateRate ({m['update_rate_setting_hz']:g} Hz)",
                   f"{m['rate_hz']:.1f} Hz (longest gap {m['longest_gap_s']:.2f} s)",
                   m["rate_hz"] >= t["monitor_vs_update_rate"] * m["update_rate_setting_hz"]))
    for who in ("ioc", "receiver"):
        g = s["rss"][who].get("growth_pct")
        note = "" if s["frames"] >= LONG_RUN else f" (run of {s['frames']} < {LONG_RUN} frames)"
        checks.append((f"{who} RSS growth < 5% (10%..100% of the run)",
                       ("no samples" if g is None else f"{g:+.1f}%") + note,
                       g is not None and g < t["rss_growth_pct"]))
    return checks


def table(r: dict) -> str:
    m = r["machine"]
    lines = [
        f"machine: {m['cpu']}, {m['cores']} cores, {m['memory_gb']} GB, {m['os']}",
        f"software: Python {m['python']}, numpy {m['numpy']}, pyzmq {m['pyzmq']} (libzmq {m['libzmq']}), "
        f"h5py {m['h5py']} (HDF5 {m['hdf5']}), hdf5plugin {m['hdf5plugin']}, "
        f"bitshuffle {m['bitshuffle']} (AVX2 {'yes' if m['bitshuffle_avx2'] else 'no'}), caproto {m['caproto']}",
        f"frames: 4 channels x 4096 bins uint32 (64 KiB); stream runs {r['config']['frames']} frames, "
        f"writing runs {r['config']['write_frames']} frames to {m['output_dir']} ({m['output_fs']}); "
        f"AcquireTime {r['config']['exposure_s']:g} s; block {r['config']['block_frames']} frames; "
        f"stream queue {r['config']['stream_queue']}",
        "",
        f"{'path':46s} {'frames/s':>9s} {'GB/s':>5s} {'lost':>5s} {'ratio':>18s} {'cached':>9s} {'others':>6s} "
        f"{'CPU/frame':>9s} {'CPU bound':>9s}",
    ]
    pk, ceil, raw = (r[k]["frames_per_s"] for k in ("baseline_pickle", "baseline_batched", "raw_tofile"))
    rows = [
        ("seed-style pickle per frame, zmq", "baseline_pickle", "baseline"),
        ("raw zmq, 64 frames/message (ceiling)", "baseline_batched", "ceiling"),
        ("ours: IOC -> zmq -> receive --decode-only", "stream",
         f"{r['stream']['frames_per_s'] / pk:.2f}x pk, {r['stream']['frames_per_s'] / ceil:.0%} raw"),
        ("ndarray.tofile, same bytes, same dir", "raw_tofile", "disk baseline"),
        ("HDF5 layer alone, in-process, uncompressed", "layer_None", None),
        ("HDF5 layer alone, in-process, BSLZ4", "layer_BSLZ4", None),
        ("ours: IOC -> receiver HDF5 uncompressed", "receiver_None", None),
        ("ours: IOC -> receiver HDF5 BSLZ4", "receiver_BSLZ4", None),
        ("ours: IOC built-in HDF1 uncompressed", "builtin_None", None),
        ("ours: IOC built-in HDF1 BSLZ4", "builtin_BSLZ4", None),
    ]
    for label, key, ratio in rows:
        x = r[key]
        if ratio is None:
            ratio = f"{x['frames_per_s'] / raw:.0%} of tofile"
        cached = x.get("frames_per_s_cached")
        others = x.get("cpu", {}).get("others_cores")
        us = cpu_us_per_frame(x)
        bound = m["cores"] * 1e6 / us if us else None
        lines.append(f"{label:46s} {x['frames_per_s']:9,.0f} {x['gb_per_s']:5.2f} {x.get('lost', 0):5d} "
                     f"{ratio:>18s} {'' if cached is None else f'{cached:,.0f}':>9s} "
                     f"{'' if others is None else f'{others:.2f}':>6s} "
                     f"{'' if us is None else f'{us:.0f} us':>9s} {'' if bound is None else f'{bound:,.0f}':>9s}")
    lines += ["", "end to end, run by run (each against the baselines of its own round): "
              + "; ".join(f"{k + 1}: {x['vs_pickle']:.2f}x pickle, {x['vs_ceiling']:.0%} of ceiling, others "
                          f"{x['others_cores']:.2f}" for k, x in enumerate(r["e2e_runs"]))]
    s = r["stream"]
    lines += [
        f"during the stream run: caget {s['caget']['pv']} p50 {_fmt(s['caget']['p50_ms'])} ms, "
        f"p99 {_fmt(s['caget']['p99_ms'])} ms, max {_fmt(s['caget']['max_ms'])} ms ({s['caget']['count']} reads); "
        f"{s['monitor']['pv']} monitor {s['monitor']['rate_hz']:.1f} Hz "
        f"(UpdateRate {s['monitor']['update_rate_setting_hz']:g} Hz)",
        "RSS: " + "; ".join(
            f"{who} {v.get('rss_10pct_mb', 0):.0f} MB at 10% -> {v.get('rss_end_mb', 0):.0f} MB at end "
            f"(peak {v.get('rss_peak_mb', 0):.0f} MB, {v.get('growth_pct', float('nan')):+.1f}%, "
            f"trend {v.get('trend_mb_per_s', float('nan')):+.1f} MB/s)"
            for who, v in s["rss"].items()),
        "CPU per streamed frame: " + ", ".join(f"{k} {v:.1f} us" for k, v in s["cpu_us_per_frame"].items()),
        f"each row: the best of {r['config']['rounds']} rounds (all in the JSON); writing rows: frames/s "
        "until the file is on disk (fsync included); 'cached': until the writer closed it (page cache)",
        "'others': CPU cores that other programs used meanwhile (0 on a quiet machine)",
        "'CPU/frame': CPU time of all the path's processes per frame (fsync included); 'CPU bound': the "
        f"frames/s at which that work would fill all {m['cores']} cores",
    ]
    if "step_scan" in r:
        st = r["step_scan"]
        lines += [
            "",
            f"step scan, {st['points']} points of one {st['exposure_s'] * 1e3:g} ms frame captured to HDF5: "
            f"{st['points_per_s']:.1f} points/s, per point p50 {st['point_p50_ms']:.1f} ms, "
            f"p99 {st['point_p99_ms']:.1f} ms ({st['frames_written']} frames written); "
            f"a put with callback to a scalar PV: p50 {st['put_round_trip_p50_ms']:.1f} ms"]
    lines += ["", f"{'target':62s} {'measured':34s} result"]
    for text, measured, ok in r["targets"]:
        lines.append(f"{text:62s} {measured:34s} {'pass' if ok else 'MISS'}")
    return "\n".join(lines)


def cpu_us_per_frame(result: dict) -> Optional[float]:
    """CPU microseconds that the path's processes (this script's tree) spent per frame."""
    cpu = result.get("cpu")
    if not cpu or not result.get("frames"):
        return None
    return 1e6 * cpu["ours_cores"] * cpu["wall_s"] / result["frames"]


def _fmt(value: Optional[float]) -> str:
    return "-" if value is None else f"{value:.1f}"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--frames", type=int, help=f"frames per stream run (default {LONG_RUN}; --quick 50000)")
    p.add_argument("--write-frames", type=int,
                   help=f"frames per writing run (default {WRITE_RUN}, 4 GiB; --quick 8192)")
    p.add_argument("--step-points", type=int,
                   help=f"points of the step scan (default {STEP_POINTS}; --quick 100)")
    p.add_argument("--exposure", type=float, default=MIN_EXPOSURE_S,
                   help="AcquireTime in s (default %(default)g, the simulator's highest frame rate)")
    p.add_argument("--dir", type=Path, help="directory for the written files (default: a new temp dir)")
    p.add_argument("--stream-queue", type=int, help="the IOC's --stream-queue (default: the IOC's default)")
    p.add_argument("--json", help="write the results here")
    p.add_argument("--repeat", type=int, help="rounds of every measurement; each path's best round counts "
                   "(default 2; --quick 1): single runs on a small VM swing by 2x")
    p.add_argument("--e2e-runs", type=int, default=E2E_RUNS,
                   help="rounds of the three stream paths (pickle, ceiling, ours), each judged on its own "
                        "(default %(default)s: issue 17 asks for 5 of 5)")
    p.add_argument("--quick", action="store_true", help="smaller runs (about a minute)")
    args = p.parse_args(argv)
    frames = args.frames or (50_000 if args.quick else LONG_RUN)
    write_frames = args.write_frames or (8192 if args.quick else WRITE_RUN)
    args.repeat = args.repeat or (1 if args.quick else 2)
    work = Path(tempfile.mkdtemp(prefix="xspress3-bench-", dir=args.dir))
    results: dict = {"machine": machine(work),
                     "config": {"frames": frames, "write_frames": write_frames, "exposure_s": args.exposure,
                                "block_frames": block_frames(), "quick": args.quick,
                                "rounds": args.repeat, "e2e_runs": args.e2e_runs, "stream_queue": args.stream_queue or "IOC default"},
                     "started": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
    t_start = time.monotonic()
    ioc = None
    try:
        log(f"frames from the simulator ({POOL_FRAMES} distinct, AcquireTime {args.exposure:g} s)")
        pool_path = work / "pool.npz"
        pool = make_pool(pool_path, args.exposure)
        log("IOC starting")
        ioc = start_ioc(work, frames_memory=max(frames, write_frames, 16384), stream_queue=args.stream_queue)
        for _ in range(WARMUP_RUNS):
            log(f"warm-up: an untimed stream run of {min(frames, WARMUP_FRAMES)} frames")
            ours_stream(ioc, min(frames, WARMUP_FRAMES), args.exposure)
        streams: dict = {}
        for rep in range(args.e2e_runs):
            tag = f" (round {rep + 1} of {args.e2e_runs})" if args.e2e_runs > 1 else ""
            for mode in ("pickle", "batched"):
                log(f"baseline {mode}: {frames} frames{tag}")
                streams.setdefault(f"baseline_{mode}", []).append(
                    baseline(mode, pool_path, frames, timeout=120 + frames / 1000))
            log(f"ours, streaming: {frames} frames{tag}")
            streams.setdefault("stream", []).append(ours_stream(ioc, frames, args.exposure))
        results["e2e_runs"] = e2e_rounds(streams)
        for key, runs in streams.items():
            results[key] = best(runs)
        points = args.step_points or (100 if args.quick else STEP_POINTS)
        log(f"step scan: {points} points of one frame")
        results["step_scan"] = step_scan(ioc, work, points)
        writes: dict = {}
        for rep in range(args.repeat):
            tag = f" (round {rep + 1} of {args.repeat})" if args.repeat > 1 else ""
            log(f"tofile and the HDF5 layer alone: {write_frames} frames{tag}")
            writes.setdefault("raw_tofile", []).append(raw_tofile(work, pool, write_frames))
            for compression in ("None", "BSLZ4"):
                writes.setdefault(f"layer_{compression}", []).append(
                    layer_alone(work, pool, write_frames, compression))
            for compression in ("None", "BSLZ4"):
                log(f"receiver writing HDF5 ({compression}): {write_frames} frames{tag}")
                writes.setdefault(f"receiver_{compression}", []).append(
                    receiver_write(ioc, work, write_frames, args.exposure, compression))
            for compression in ("None", "BSLZ4"):
                log(f"built-in writer ({compression}): {write_frames} frames{tag}")
                writes.setdefault(f"builtin_{compression}", []).append(
                    builtin_write(ioc, work, write_frames, args.exposure, compression))
        for key, runs in writes.items():
            results[key] = best(runs)
    finally:
        if ioc is not None:
            ioc.stop()
        shutil.rmtree(work, ignore_errors=True)
    results["elapsed_s"] = time.monotonic() - t_start
    results["machine"]["load_average_at_end"] = [round(x, 2) for x in os.getloadavg()]
    results["targets"] = evaluate(results)
    print(table(results))
    print(f"\n(benchmark took {results['elapsed_s']:.0f} s)")
    dump(args.json, results)
    return 0


if __name__ == "__main__":
    with ca_repeater():   # its own, so no repeater outlives the run holding our stdout
        sys.exit(main())
