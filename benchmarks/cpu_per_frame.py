"""CPU time per frame of the IOC and of `xspress3-receive`, per process and per stage,
beside floors measured in the same run (issue 17).

Why CPU per frame: on a beamline server the IOC shares the machine with the
receiver, compression and analysis, so what an acquisition costs is CPU time per
frame, whatever the core count. Each figure is a ratio to a floor this script
measures itself on the same frames, so a slow or busy machine moves both.

    python benchmarks/cpu_per_frame.py --quick      # ~1 min: the figures for one change
    python benchmarks/cpu_per_frame.py              # full: more frames, 3 rounds, median

Set-up, as on a beamline: the IOC in its own process on the built-in simulator
(4 channels x 4096 bins, uint32 = 64 KiB per frame, AcquireTime 1e-5 s), 8 ROIs
per channel enabled over Channel Access, the ROI/SCA time series recording (circular
buffer, so it records the whole run), display updates at 10 Hz; the stream goes to
`xspress3-receive` writing HDF5, uncompressed and then bitshuffle-LZ4.

Floors (this process, one thread, `time.thread_time`, so user + system CPU):
  copy     memcpy of one 64 KiB frame from a cache-cold source into a cache-cold
           destination whose pages are mapped (a 256 MiB ring), minus the loop's own cost;
  tofile   `ndarray.tofile` of the run's frames, one call per readout block
           (the page-cache copy a writer cannot avoid);
  bslz4    `bitshuffle.compress_lz4` of the same frames in the writer's chunks and
           block size, one thread.
Processes: user + system CPU of each process (psutil) over the acquisition, per
frame; per thread the same from /proc. Stages: a sampling profile (py-spy, when
installed) of each process during a second, identical run splits each Python
thread's CPU by what it was doing (see STAGES); threads that run no Python (zmq's
I/O threads) count whole.
"""
from __future__ import annotations

import argparse
import ctypes
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter, defaultdict
from pathlib import Path
from typing import Optional

import numpy as np
import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench import acquire, block_frames, configure_run, make_pool, settle, stream_stats  # noqa: E402
from harness import FRAME_BYTES, CpuWatch, Receiver, ca_repeater, dump, machine, start_ioc  # noqa: E402

EXPOSURE_S = 1e-5            # AcquireTime's lower limit: the simulator's highest frame rate
CHANNELS = 4
ROIS_PER_CHANNEL = 8
UPDATE_RATE_HZ = 10.0
COLD_RING_BYTES = 256 << 20  # destination of the cold copy: far beyond any cache
TARGETS = {
    "ioc": 3.5,              # IOC <= 3.5x the cold copy of a frame
    "receiver_None": 1.2,    # receiver uncompressed <= 1.2x (tofile + 2 copies)
    "receiver_BSLZ4": 1.0,   # receiver BSLZ4 <= bitshuffle-LZ4 + 2 copies
}

#: Stage of a profile sample, per process: the first frame, from the innermost
#: outwards, that matches one of these regexes (on "function (file)") decides.
#: Patterns name files and roles rather than single functions, so that they survive
#: refactoring of the code measured; a sample that matches none counts as "other".
#: A sample whose innermost frame blocks (poll, select, a condition's wait) is a
#: thread woken or about to sleep: py-spy counts a thread as active while it is
#: runnable, which on a busy machine includes waiting for a core.
WAITING = ("wait / poll (woken)",
           r"^(?:Poller\.poll|\w*Selector\.select|Condition\.wait|Condition\.__enter__|Event\.wait|"
           r"Thread\._wait_for_tstate_lock|Queue\.get) |^_worker \(.*concurrent/futures")
STAGES = {
    "ioc": [
        ("deadtime", r"deadtime\.py"),
        ("driver read (ctypes)", r"/driver/"),
        ("sums / ROI / time series", r"rois\.py|_account|TimeSeries|sca_values"),
        ("PV summary + posting", r"_summary|publish|pv_publisher\.py|publisher\.py|caproto|controller\.py|"
                                 r"server\.py|_pvs\.py"),
        ("zmq send", r"writers/stream\.py|shared_frames\.py|/zmq/"),
        ("HDF1 writer", r"filewriter\.py|writers/(hdf5|layout)\.py"),
        ("block buffers", r"SpectrumBuffers"),
        ("readout loop", r"readout\.py"),
    ],
    "receiver": [
        ("BSLZ4 encode", r"encode|bitshuffle"),
        ("HDF5 write", r"hdf5\.py|layout\.py|h5py"),
        ("receive / decode", r"wire\.py|stream\.py|shared_frames\.py|/zmq/|receive\.py"),
    ],
}


def log(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


# ---- floors -------------------------------------------------------------------------------
def cold_copy_us(spectra: np.ndarray, copies: int) -> float:
    """CPU us of one memcpy of a frame, cache-cold at both ends, loop cost removed.

    The source cycles through the pool (64 MiB), the destination through a ring of
    COLD_RING_BYTES touched once beforehand (so no page fault counts, as for the
    IOC's recycled block buffers). ctypes.memmove keeps the call cheap; an
    identical loop copying 0 bytes measures what the loop itself costs."""
    frame = spectra[0].nbytes
    ring = np.ones(COLD_RING_BYTES // frame * frame // 8)   # touched: pages mapped
    src0, dst0 = spectra.ctypes.data, ring.ctypes.data
    nsrc, ndst = spectra.shape[0], ring.nbytes // frame
    srcs = [src0 + (i % nsrc) * frame for i in range(copies)]
    dsts = [dst0 + (i % ndst) * frame for i in range(copies)]
    move = ctypes.memmove

    def loop(nbytes: int) -> float:
        t0 = time.thread_time()
        for s, d in zip(srcs, dsts):
            move(d, s, nbytes)
        return time.thread_time() - t0

    loop(frame)                      # first pass maps nothing new but warms the code
    ring[:] = 0                      # and the ring cold again: evict by touching all of it
    full = loop(frame)
    empty = loop(0)
    return 1e6 * max(full - empty, 0.0) / copies


def tofile_us(directory: Path, spectra: np.ndarray, frames: int) -> float:
    """CPU us per frame of `ndarray.tofile` of `frames` frames, one call per readout block."""
    path = directory / "floor-tofile.bin"
    block, size = block_frames(), spectra.shape[0]
    settle(frames * FRAME_BYTES)
    t0 = time.thread_time()
    with open(path, "wb") as fh:
        done = 0
        while done < frames:
            k = done % size
            n = min(block, frames - done, size - k)
            spectra[k:k + n].tofile(fh)
            done += n
    used = time.thread_time() - t0
    path.unlink()
    return 1e6 * used / frames


def bslz4_us(spectra: np.ndarray, frames: int) -> Optional[float]:
    """CPU us per frame of bitshuffle-LZ4 alone, in the chunks and block size the writer
    uses, on one thread (OpenMP limited to 1, as the writer's encoding threads are)."""
    try:
        import bitshuffle
        from threadpoolctl import threadpool_limits
        from xspress3.writers import layout
        from xspress3.writers.wire import SeriesStart
    except ImportError:
        return None
    start = SeriesStart(series_id="floor", channels=CHANNELS, bins=4096)
    rows = layout.chunk_frames(start)
    size = spectra.shape[0]
    with threadpool_limits(limits=1, user_api="openmp"):
        t0 = time.thread_time()
        done = 0
        while done < frames:
            k = done % size
            n = min(rows, frames - done, size - k)
            bitshuffle.compress_lz4(spectra[k:k + n], layout.BSLZ4_BLOCK_ELEMENTS)
            done += n
        used = time.thread_time() - t0
    return 1e6 * used / frames


def measure_floors(directory: Path, pool: dict, frames: int) -> dict:
    spectra = pool["spectra"]
    copy = cold_copy_us(spectra, min(frames, 20_000))
    tofile = tofile_us(directory, spectra, frames)
    bslz4 = bslz4_us(spectra, frames)
    return {"copy": copy, "tofile": tofile, "bslz4": bslz4,
            "tofile_2copies": tofile + 2 * copy,
            "bslz4_2copies": None if bslz4 is None else bslz4 + 2 * copy}


# ---- the IOC as on a beamline ----------------------------------------------------------------
def configure_ioc(ioc) -> None:
    """8 ROIs per channel, the time series recording the whole run, display at 10 Hz."""
    width = 4096 // ROIS_PER_CHANNEL
    for ch in range(1, CHANNELS + 1):
        for r in range(1, ROIS_PER_CHANNEL + 1):
            ioc.put(f"MCA{ch}ROI:{r}:MinX", (r - 1) * width + 8)
            ioc.put(f"MCA{ch}ROI:{r}:SizeX", width - 16)
            ioc.put(f"MCA{ch}ROI:{r}:Use", "Yes")
    ioc.put("C1SCA:TS:TSAcquireMode", "Circ. buffer")
    ioc.put("MCA1ROI:TSControl", "Erase/Start")
    ioc.put("det1:UpdateRate", UPDATE_RATE_HZ)


def check_configured(ioc) -> dict:
    """What the IOC reports back, so the run's conditions are on record, not assumed."""
    used = sum(1 for ch in range(1, CHANNELS + 1) for r in range(1, ROIS_PER_CHANNEL + 1)
               if ioc.get(f"MCA{ch}ROI:{r}:Use_RBV") == "Yes")
    return {"rois_in_use": used, "ts_acquiring": ioc.get("MCA1ROI:TSAcquiring"),
            "update_rate_hz": ioc.get("det1:UpdateRate_RBV")}


def thread_times(pid: int) -> dict:
    """{tid: (name, user + system seconds)} of every thread of `pid` (name: /proc comm)."""
    out = {}
    try:
        threads = psutil.Process(pid).threads()
    except psutil.Error:
        return out
    for t in threads:
        try:
            name = Path(f"/proc/{pid}/task/{t.id}/comm").read_text().strip()
        except OSError:
            name = "?"
        out[t.id] = (name, t.user_time + t.system_time)
    return out


def counters(proc: psutil.Process) -> dict:
    """CPU seconds (user + system, and system alone) and minor page faults of a process so far."""
    t = proc.cpu_times()
    fields = Path(f"/proc/{proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
    return {"cpu": t.user + t.system, "system": t.system, "minflt": int(fields[7])}


class Profiler:
    """py-spy sampling one process (no pause of the target: --nonblocking)."""

    RATE_HZ = 250
    MIN_LIFETIME_S = 4.0

    def __init__(self, pid: int, out: Path):
        self.out = out
        self.proc = subprocess.Popen(
            ["py-spy", "record", "--pid", str(pid), "--rate", str(self.RATE_HZ), "--nonblocking",
             "--threads", "--full-filenames", "--format", "raw", "--output", str(out)],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        self.started = time.monotonic()

    def stop(self) -> dict:
        """{tid: (thread name, Counter of stack -> samples)} of the active samples."""
        # Interrupted before it has attached, py-spy writes no profile at all, and on a
        # loaded machine attaching takes a second or more (its "Sampling" line only
        # comes out at exit, so there is nothing to wait for). Samples after the run are
        # idle and not recorded, so a short run just waits here.
        time.sleep(max(0.0, self.started + self.MIN_LIFETIME_S - time.monotonic()))
        if self.proc.poll() is None:
            self.proc.send_signal(2)    # SIGINT: py-spy writes its output and exits
        try:
            _, err = self.proc.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            _, err = self.proc.communicate()
        if not self.out.exists():
            raise RuntimeError(f"py-spy wrote no profile: {err.strip()[-500:]}")
        return parse_raw(self.out.read_text())


class PerfProfiler:
    """`perf record` of one process (kernel and native frames, which py-spy cannot see:
    the page-cache and socket copies, page clearing, numpy's loops)."""

    RATE_HZ = 499

    def __init__(self, pid: int, out: Path):
        self.out = out
        self.proc = subprocess.Popen(["perf", "record", "-F", str(self.RATE_HZ), "-p", str(pid), "-o", str(out)],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)

    def stop(self, top: int) -> list:
        """[(share of the samples, thread comm, symbol)] of the `top` hottest symbols."""
        if self.proc.poll() is None:
            self.proc.send_signal(2)
        try:
            _, err = self.proc.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            _, err = self.proc.communicate()
        report = subprocess.run(["perf", "report", "-i", str(self.out), "--stdio", "--no-children",
                                 "--sort", "comm,sym", "--percent-limit", "0.5"],
                                capture_output=True, text=True, timeout=120)
        rows = []
        for line in report.stdout.splitlines():
            m = re.match(r"^\s+([\d.]+)%\s+(\S+)\s+\[(.)\]\s+(.+?)\s*$", line)
            if m:
                kind = "kernel" if m.group(3) == "k" else "user"
                rows.append((float(m.group(1)) / 100, m.group(2), f"{m.group(4)} ({kind})"))
        if not rows:
            raise RuntimeError(f"perf recorded nothing: {err.strip()[-300:]} {report.stderr.strip()[-300:]}")
        return rows[:top]


_RAW = re.compile(r"^thread \((?P<tid>\d+)\): (?P<name>[^;]*);?(?P<stack>.*) (?P<count>\d+)$")


def parse_raw(text: str) -> dict:
    threads: dict = {}
    for line in text.splitlines():
        m = _RAW.match(line.strip())
        if m is None:
            continue
        name, stacks = threads.setdefault(int(m.group("tid")), (m.group("name"), Counter()))
        stacks[m.group("stack")] += int(m.group("count"))
    return threads


_STAGE_RES = {who: [(stage, re.compile(pattern)) for stage, pattern in rules] for who, rules in STAGES.items()}
_WAITING_RE = re.compile(WAITING[1])


def stage_of(who: str, stack: str) -> str:
    """The stage of one sample of process `who` (see STAGES): innermost matching frame wins."""
    frames = stack.split(";")
    if _WAITING_RE.search(frames[-1]):
        return WAITING[0]
    for frame in reversed(frames):
        for stage, rx in _STAGE_RES[who]:
            if rx.search(frame):
                return stage
    return "other"


def leaf(stack: str) -> str:
    """The innermost frame, without its line number: where the sample's CPU went."""
    frame = stack.split(";")[-1]
    frame = re.sub(r":\d+\)$", ")", frame)
    return re.sub(r"\(/.*/(site-packages|wt-[^/]+|main|python3\.\d+)/", "(", frame)


def thread_label(proc: str, comm: str, pyname: Optional[str]) -> str:
    if pyname:
        return pyname
    if comm.startswith("ZMQbg/IO"):
        return "zmq I/O thread (C)"
    if comm.startswith("ZMQbg"):
        return f"zmq {comm} (C)"
    return f"{comm} (no Python samples)"



def thread_group(label: str) -> str:
    """Threads of one pool count together (ThreadPoolExecutor-0_0, _1... -> one row)."""
    return re.sub(r"_\d+$", "", label)


def run_once(ioc, receiver: Receiver, series: int, frames: int, profile_dir: Optional[Path],
             perf_top: int = 0) -> dict:
    """One acquisition streamed to the running receiver (its `series`-th): CPU of both
    processes and of each of their threads, from Acquire=1 until the receiver reported
    the series closed; with `profile_dir`, a sampling profile of both meanwhile."""
    configure_run(ioc, frames, EXPOSURE_S)
    pids = {"ioc": ioc.proc.pid, "receiver": receiver.pid}
    procs = {who: psutil.Process(pid) for who, pid in pids.items()}
    profilers: dict = {}
    perfs: dict = {}
    try:
        settle(frames * FRAME_BYTES)
        if profile_dir is not None:
            profilers = {who: Profiler(pid, profile_dir / f"{who}-{series}.raw") for who, pid in pids.items()}
            if perf_top:
                perfs = {who: PerfProfiler(pid, profile_dir / f"{who}-{series}.perf") for who, pid in pids.items()}
            time.sleep(0.5)     # the profilers attached before the first frame
        with CpuWatch() as cpu:
            before = {who: counters(p) for who, p in procs.items()}
            threads0 = {who: thread_times(pid) for who, pid in pids.items()}
            t0, t1 = acquire(ioc, frames)
            summary = receiver.wait_summaries(series, timeout=60 + frames / 500)[-1]
            after = {who: counters(p) for who, p in procs.items()}
            threads1 = {who: thread_times(pid) for who, pid in pids.items()}
        samples = {who: prof.stop() for who, prof in profilers.items()}
        perf = {who: prof.stop(perf_top) for who, prof in perfs.items()}
    finally:
        for prof in list(profilers.values()) + list(perfs.values()):
            if prof.proc.poll() is None:
                prof.proc.kill()
                prof.proc.wait()
    stats = stream_stats(ioc)
    lost = max(stats["stream_lost"], frames - summary.frames, summary.sender_lost + summary.missing)
    threads = {}
    for who in pids:
        threads[who] = {tid: {"comm": comm, "us": 1e6 * (cpu1 - threads0[who].get(tid, (comm, 0.0))[1]) / frames}
                        for tid, (comm, cpu1) in threads1[who].items()}
    return {"frames": summary.frames, "lost": lost, "complete": summary.complete,
            "frames_per_s": summary.rate, "acquire_s": t1 - t0,
            "us": {who: 1e6 * (after[who]["cpu"] - before[who]["cpu"]) / frames for who in pids},
            "system_us": {who: 1e6 * (after[who]["system"] - before[who]["system"]) / frames for who in pids},
            "faults_per_frame": {who: (after[who]["minflt"] - before[who]["minflt"]) / frames for who in pids},
            "threads": threads,
            "others_cores": cpu.result["others_cores"], "cpu": cpu.result, "profile": samples, "perf": perf}


def split_stages(run: dict, profile: dict) -> dict:
    """{process: {(thread, stage): us/frame}}: each thread's CPU in `run` split by the
    stage shares of its active samples in `profile` (same processes, same thread ids);
    a thread without samples (zmq's C threads) counts whole under its own name."""
    out: dict = {}
    for who, threads in run["threads"].items():
        prof = profile.get(who, {})
        rows: Counter = Counter()
        for tid, row in threads.items():
            pyname, stacks = prof.get(tid, (None, Counter()))
            label = thread_group(thread_label(who, row["comm"], pyname))
            total = sum(stacks.values())
            if total:
                for stack, count in stacks.items():
                    rows[(label, stage_of(who, stack))] += row["us"] * count / total
            else:
                rows[(label, C_THREAD_STAGE[who] if row["comm"].startswith("ZMQbg/IO") else "other")] += row["us"]
        out[who] = dict(rows)
    return out


#: What zmq's I/O thread (C, never in a Python profile) does in each process.
C_THREAD_STAGE = {"ioc": "zmq send", "receiver": "receive / decode"}


def short_thread(label: str) -> str:
    label = re.sub(r"^(xsp3|xspress3)-", "", label)
    label = re.sub(r" \(no Python samples\)$", "", label)
    return {"MainThread": "main", "zmq I/O thread (C)": "zmq I/O"}.get(label, label)


def by_stage(rows: dict) -> dict:
    """{stage: (us/frame, [(thread, us/frame)] largest first)} from {(thread, stage): us}."""
    out: dict = {}
    for (thread, stage), us in rows.items():
        total, threads = out.get(stage, (0.0, []))
        out[stage] = (total + us, threads + [(thread, us)])
    return {stage: (total, sorted(threads, key=lambda t: -t[1])) for stage, (total, threads) in out.items()}


def top_leaves(profile: dict, n: int) -> dict:
    """{thread name: (samples, [(innermost frame, share of the thread's active samples)])}."""
    out = {}
    for tid, (name, stacks) in profile.items():
        total = sum(stacks.values())
        if total < 20:
            continue
        leaves: Counter = Counter()
        for stack, count in stacks.items():
            leaves[leaf(stack)] += count
        out[name] = (total, [(f, c / total) for f, c in leaves.most_common(n)])
    return out


def median_run(runs: list) -> dict:
    """The round whose IOC + receiver CPU is the median (its threads stay consistent)."""
    ordered = sorted(runs, key=lambda r: r["us"]["ioc"] + r["us"]["receiver"])
    return ordered[(len(ordered) - 1) // 2]


# ---- report ---------------------------------------------------------------------------------
COMPRESSIONS = ("None", "BSLZ4")
FLOOR_ROWS = [("copy", "floor: cold copy of one frame (64 KiB)"),
              ("tofile", "floor: ndarray.tofile, same volume"),
              ("tofile_2copies", "floor: tofile + 2 copies"),
              ("bslz4", "floor: bitshuffle-LZ4 alone, 1 thread"),
              ("bslz4_2copies", "floor: bitshuffle-LZ4 + 2 copies")]
#: (process, run, floor key, floor name) of each target
TARGET_ROWS = [("ioc", "None", "copy", "cold copy"),
               ("receiver", "None", "tofile_2copies", "tofile + 2 copies"),
               ("receiver", "BSLZ4", "bslz4_2copies", "bitshuffle-LZ4 + 2 copies")]


def evaluate(r: dict) -> list:
    """[(text, measured ratio or None, limit, pass)] for each target of issue 17 (1 and 2)."""
    out = []
    for who, comp, key, name in TARGET_ROWS:
        limit = TARGETS[who if who == "ioc" else f"receiver_{comp}"]
        floor = r["floors"].get(key)
        run = r["runs"].get(comp)
        if floor is None or run is None:
            out.append((f"{who} ({'uncompressed' if comp == 'None' else comp}) <= {limit:g}x {name}",
                        None, limit, None))    # not measured in this run
            continue
        ratio = run["us"][who] / floor
        ok = ratio <= limit and run["lost"] == 0 and run["complete"]
        out.append((f"{who} ({'uncompressed' if comp == 'None' else comp}) <= {limit:g}x {name}",
                    ratio, limit, ok))
    return out


def _us(value: Optional[float]) -> str:
    return "-" if value is None else f"{value:.1f}"


def table(r: dict, min_us: float = 0.3) -> str:
    c, m = r["config"], r["machine"]
    cond = r["conditions"]
    lines = [
        f"CPU per frame: {c['frames']} frames per run, {c['rounds']} round(s), median; 4 ch x 4096 bins uint32 "
        f"(64 KiB), AcquireTime {EXPOSURE_S:g} s; IOC: {cond['rois_in_use']} ROIs in use, time series "
        f"{cond['ts_acquiring']}, UpdateRate {cond['update_rate_hz']:g} Hz",
        "stream: " + ("every frame copied over TCP (--copy)" if c.get("transport") == "copy" else
                      "spectra by shared memory (receiver on this host; --copy: over TCP)"),
        f"machine: {m['cpu']}, {m['cores']} cores; 'others' = CPU cores other programs used during the run",
        "",
        f"{'':50s} {'uncompressed':>22s} {'BSLZ4':>22s}",
        f"{'row':50s} {'us/frame':>9s} {'ratio':>12s} {'us/frame':>9s} {'ratio':>12s}",
    ]
    for key, label in FLOOR_ROWS:
        spread = ""
        values = [f[key] for f in r.get("floor_rounds", []) if f.get(key) is not None]
        if len(values) > 1:
            spread = f"({min(values):.1f}-{max(values):.1f})"
        lines.append(f"{label:50s} {_us(r['floors'].get(key)):>9s} {spread:>12s}")
    floors = r["floors"]
    for who, title in (("ioc", "IOC"), ("receiver", "xspress3-receive")):
        cells = []
        for comp in COMPRESSIONS:
            run = r["runs"].get(comp)
            if run is None:
                cells.append(f"{'':>9s} {'':>12s}")
                continue
            key = "copy" if who == "ioc" else ("tofile_2copies" if comp == "None" else "bslz4_2copies")
            floor = floors.get(key)
            ratio = "" if not floor else f"{run['us'][who] / floor:.1f}x {'copy' if key == 'copy' else 'floor'}"
            cells.append(f"{run['us'][who]:9.1f} {ratio:>12s}")
        lines.append(f"{title + ', user + system':50s} " + " ".join(cells))
        if c["rounds"] > 1:
            lines.append(f"{'  (every round: lowest-highest)':50s} " + " ".join(
                f"{min(x['us'][who] for x in r['rounds'][comp]):9.1f}-{max(x['us'][who] for x in r['rounds'][comp]):<12.1f}"
                if comp in r["rounds"] else f"{'':22s}" for comp in COMPRESSIONS))
        stage_rows: dict = defaultdict(dict)
        threads_of: dict = defaultdict(Counter)
        for comp in COMPRESSIONS:
            rows = r.get("stages", {}).get(comp, {}).get(who, {})
            for stage, (us, threads) in by_stage(rows).items():
                stage_rows[stage][comp] = us
                for thread, t_us in threads:
                    threads_of[stage][short_thread(thread)] += t_us
        for stage, values in sorted(stage_rows.items(), key=lambda kv: -max(kv[1].values())):
            names = [name for name, us in threads_of[stage].most_common() if us >= min_us] or \
                [threads_of[stage].most_common(1)[0][0]]
            label = f"  {stage} [{', '.join(names)}]"
            if len(label) > 50:
                label = label[:48] + ".]"
            lines.append(f"{label:50s} " + " ".join(
                f"{_us(values.get(comp)):>9s} {'':>12s}" for comp in COMPRESSIONS))
        lines.append(f"{'  (of it: system time; minor page faults)':50s} " + " ".join(
            f"{r['runs'][comp]['system_us'][who]:9.1f} {r['runs'][comp]['faults_per_frame'][who]:7.1f} flt"
            if comp in r["runs"] else f"{'':22s}" for comp in COMPRESSIONS))
    runs = [r["runs"].get(comp) for comp in COMPRESSIONS]
    lines.append(f"{'frames/s (receiver), frames lost':50s} " + " ".join(
        f"{run['frames_per_s']:9,.0f} {str(run['lost']) + ' lost':>12s}" if run else f"{'':22s}" for run in runs))
    lines.append(f"{'others (cores), max over the rounds':50s} " + " ".join(
        f"{max(x['others_cores'] for x in r['rounds'][comp]):9.2f} {'':>12s}" if run else f"{'':22s}"
        for comp, run in zip(COMPRESSIONS, runs)))
    if r.get("profile_note"):
        lines.append(r["profile_note"])
    lines += ["", f"{'target (issue 17)':52s} {'measured':>9s}  result"]
    for text, ratio, limit, ok in r["targets"]:
        lines.append(f"{text:52s} {'-' if ratio is None else f'{ratio:.2f}x':>9s}  "
                     f"{'not run' if ok is None else 'pass' if ok else 'MISS'}")
    if r.get("top"):
        lines += ["", "profile: innermost frames, share of each thread's active samples"]
        for comp, procs in r["top"].items():
            for who, threads in procs.items():
                for name, (samples, leaves) in threads.items():
                    lines.append(f"  {who} {name} ({'uncompressed' if comp == 'None' else comp}, "
                                 f"{samples} samples): " + "; ".join(f"{f} {s:.0%}" for f, s in leaves))
    if r.get("perf"):
        lines += ["", "perf: hottest symbols in the profiled run, us/frame (share of the process's CPU x its "
                  "us/frame; thread: python or zmq's ZMQbg)"]
        for comp, procs in r["perf"].items():
            for who, rows in procs.items():
                us = r["profiled_run"][comp]["us"][who]
                lines.append(f"  {who} ({'uncompressed' if comp == 'None' else comp}, {us:.1f} us/frame): " + "; ".join(
                    f"{comm} {sym} {share * us:.1f}" for share, comm, sym in rows))
    return "\n".join(lines)


def have_py_spy() -> bool:
    return shutil.which("py-spy") is not None


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="one round of 30 000 frames (under a minute)")
    p.add_argument("--frames", type=int, help="frames per run (default 100 000; --quick 30 000)")
    p.add_argument("--rounds", type=int, help="rounds of every measurement, median kept (default 3; --quick 1)")
    p.add_argument("--compression", default=",".join(COMPRESSIONS),
                   help="receiver runs, comma-separated (default %(default)s)")
    p.add_argument("--no-profile", action="store_true", help="no py-spy run (stages not split)")
    p.add_argument("--top", type=int, help="innermost frames shown per profiled thread (default 4; --quick 0)")
    p.add_argument("--perf", type=int, default=0, metavar="N",
                   help="also `perf record` both processes in the profiled run and show their N hottest "
                        "symbols, kernel included (needs perf)")
    p.add_argument("--dir", type=Path, help="directory for the written files (default: a new temp dir)")
    p.add_argument("--json", help="write the results here")
    p.add_argument("--copy", action="store_true",
                   help="receivers decline the IOC's shared frame memory: every frame over the socket")
    args = p.parse_args(argv)
    frames = args.frames or (30_000 if args.quick else 100_000)
    rounds = args.rounds or (1 if args.quick else 3)
    top = args.top if args.top is not None else (0 if args.quick else 4)
    compressions = [c for c in args.compression.split(",") if c]
    profile = not args.no_profile and have_py_spy()
    work = Path(tempfile.mkdtemp(prefix="xspress3-cpu-", dir=args.dir))
    r: dict = {"machine": machine(work), "config": {"frames": frames, "rounds": rounds, "profile": profile,
                                                    "compressions": compressions,
                                                    "transport": "copy" if args.copy else "shared"},
               "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "runs": {}, "rounds": {}, "stages": {}, "top": {}}
    if not profile:
        r["profile_note"] = ("stages: not split (" + ("--no-profile" if args.no_profile else "py-spy not installed")
                             + "); threads shown whole")
    t_start = time.monotonic()
    ioc = None
    try:
        log("frames from the simulator")
        pool = make_pool(work / "pool.npz", EXPOSURE_S)
        floor_rounds: list = []
        log("IOC starting, 8 ROIs per channel, time series, 10 Hz display")
        ioc = start_ioc(work, frames_memory=max(frames, 16384))
        configure_ioc(ioc)
        r["conditions"] = check_configured(ioc)
        for comp in compressions:
            out = work / f"recv-{comp}"
            out.mkdir()
            receiver = Receiver.connected(ioc, output=out, compression=comp, shared=not args.copy)
            try:
                series = 1
                warm = min(frames, 10_000 if args.quick else 20_000)
                log(f"{comp}: warm-up run of {warm} frames")
                run_once(ioc, receiver, series, warm, None)
                runs = []
                for k in range(rounds):
                    series += 1
                    # floors right before each round: the page cache and the machine's load
                    # then are the run's (tofile's cost swings 2x with them)
                    log(f"{comp}: floors, then run {k + 1}/{rounds}, {frames} frames")
                    floor_rounds.append(measure_floors(work, pool, frames))
                    runs.append(run_once(ioc, receiver, series, frames, None))
                    for f in out.glob("*.h5"):
                        f.unlink()
                chosen = median_run(runs)
                r["rounds"][comp] = [{k: v for k, v in x.items() if k != "profile"} for x in runs]
                r["runs"][comp] = {k: v for k, v in chosen.items() if k != "profile"}
                if profile:
                    series += 1
                    log(f"{comp}: profiled run (py-spy), {frames} frames")
                    prof = run_once(ioc, receiver, series, frames, work, args.perf)
                    if prof["perf"]:
                        r.setdefault("perf", {})[comp] = prof["perf"]
                    r["stages"][comp] = {who: {f"{t}|{s}": us for (t, s), us in rows.items()}
                                         for who, rows in split_stages(chosen, prof["profile"]).items()}
                    r.setdefault("profiled_run", {})[comp] = {k: v for k, v in prof.items()
                                                              if k not in ("profile", "threads", "perf")}
                    if top:
                        r["top"][comp] = {who: top_leaves(samples, top) for who, samples in prof["profile"].items()}
                else:
                    r["stages"][comp] = {who: {f"{t}|{s}": us for (t, s), us in rows.items()}
                                         for who, rows in split_stages(chosen, {}).items()}
            finally:
                receiver.stop()
                shutil.rmtree(out, ignore_errors=True)
    finally:
        if ioc is not None:
            ioc.stop()
        shutil.rmtree(work, ignore_errors=True)
    r["floor_rounds"] = floor_rounds
    r["floors"] = {key: (None if any(f[key] is None for f in floor_rounds)
                         else statistics.median(f[key] for f in floor_rounds)) for key in floor_rounds[0]}
    # stage keys back to (thread, stage) for the table
    for comp, procs in r["stages"].items():
        for who, rows in procs.items():
            procs[who] = {tuple(k.split("|", 1)): v for k, v in rows.items()}
    r["targets"] = evaluate(r)
    r["elapsed_s"] = time.monotonic() - t_start
    print(table(r))
    print(f"\n(took {r['elapsed_s']:.0f} s)")
    if args.json:
        for comp, procs in r["stages"].items():
            for who, rows in procs.items():
                procs[who] = {"|".join(k): v for k, v in rows.items()}
        dump(args.json, r)
    return 0


if __name__ == "__main__":
    with ca_repeater():
        sys.exit(main())
