"""Shared pieces of the benchmark and soak scripts: an IOC subprocess on private
ports, `xspress3-receive` subprocesses whose summary lines are parsed, a
resident-memory sampler and a description of the machine.

Why a module of its own: bench.py and soak.py must drive the IOC exactly the
way a user does (separate processes, Channel Access, the console receiver), so
both reuse the test harness (tests/iochelp.py) instead of importing IOC code.
"""
from __future__ import annotations

import json
import os
import platform
import re
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))

from iochelp import IocProcess, ca_repeater  # noqa: E402  (tests/ is put on the path just above)

__all__ = ["IocProcess", "ca_repeater", "Receiver", "Summary", "RssSampler", "machine", "percentile", "start_ioc"]

FRAME_BYTES = 4 * 4096 * 4   # spectra of one frame: 4 channels x 4096 bins x uint32

_SUMMARY = re.compile(
    r"^series (?P<series>\S+): (?P<frames>\d+) frames in (?P<seconds>[\d.]+) s "
    r"\((?P<rate>\d+) frames/s, (?P<mbs>[\d.]+) MB/s\)(?P<rest>.*)$")


def start_ioc(tmp: Path, frames_memory: int, stream_queue: Optional[int] = None,
              monitor: bool = False) -> IocProcess:
    """An IOC on the built-in simulator with its own CA, stream and monitor ports
    (stream queue: the IOC's default unless given)."""
    extra = ["-q"] + (["--stream-queue", str(stream_queue)] if stream_queue else [])
    return IocProcess(tmp, *extra, frames_memory=frames_memory, monitor=monitor).start()


@dataclass
class Summary:
    """One series as `xspress3-receive` reported it on its last line for that series."""
    series_id: str
    frames: int
    seconds: float
    rate: float
    complete: bool
    sender_lost: int
    missing: int
    line: str
    seen_at: float           # time.monotonic() when this process read the line

    @classmethod
    def parse(cls, line: str, seen_at: float) -> Optional["Summary"]:
        m = _SUMMARY.match(line.strip())
        if m is None:
            return None
        rest = m.group("rest")
        lost = re.search(r"sender lost (\d+)", rest)
        missing = re.search(r"(\d+) frames missing", rest)
        return cls(series_id=m.group("series"), frames=int(m.group("frames")),
                   seconds=float(m.group("seconds")), rate=float(m.group("rate")),
                   complete="[complete" in rest, sender_lost=int(lost.group(1)) if lost else 0,
                   missing=int(missing.group(1)) if missing else 0, line=line.strip(), seen_at=seen_at)


class Receiver:
    """`xspress3-receive` in its own process; its stderr is read line by line."""

    def __init__(self, endpoint: str, output: Optional[Path] = None, compression: str = "None",
                 max_series: int = 0, shared: bool = True):
        """``shared``: take the IOC's shared frame memory (same host); False: copies."""
        args = [sys.executable, "-m", "xspress3.writers.receive", "--connect", endpoint, "--quiet"]
        if not shared:
            args.append("--no-shared-memory")
        if output is None:
            args.append("--decode-only")
        else:
            args += ["--output", str(output), "--compression", compression]
        if max_series:
            args += ["--max-series", str(max_series)]
        self.proc = subprocess.Popen(args, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True)
        self.lines: list[str] = []
        self.summaries: list[Summary] = []
        self._cond = threading.Condition()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    @property
    def pid(self) -> int:
        return self.proc.pid

    def _read(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            now = time.monotonic()
            with self._cond:
                self.lines.append(line.rstrip("\n"))
                summary = Summary.parse(line, now)
                if summary is not None:
                    self.summaries.append(summary)
                self._cond.notify_all()
        with self._cond:
            self._cond.notify_all()

    @classmethod
    def connected(cls, ioc: IocProcess, timeout: float = 20.0, **kwargs) -> "Receiver":
        """Start a receiver and return once the IOC counts it. The IOC's count is
        posted twice a second, so first wait for an earlier receiver to be gone."""
        ioc.wait_for("det1:StreamReceivers_RBV", lambda v: v == 0, timeout=timeout, interval=0.1)
        receiver = cls(ioc.stream_endpoint, **kwargs)
        try:
            ioc.wait_for("det1:StreamReceivers_RBV", lambda v: v >= 1, timeout=timeout, interval=0.1)
        except TimeoutError:
            receiver.stop()
            raise
        return receiver

    def wait_summaries(self, count: int, timeout: float) -> list[Summary]:
        deadline = time.monotonic() + timeout
        with self._cond:
            while len(self.summaries) < count:
                left = deadline - time.monotonic()
                if left <= 0 or (self.proc.poll() is not None and not self._reader.is_alive()):
                    raise TimeoutError(f"receiver reported {len(self.summaries)} of {count} series:\n"
                                       + "\n".join(self.lines[-20:]))
                self._cond.wait(min(left, 0.5))
            return list(self.summaries[:count])

    def stop(self, timeout: float = 10.0) -> int:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self._reader.join(5)
        return self.proc.returncode


class RssSampler:
    """Samples the resident memory of some processes every `interval` seconds."""

    def __init__(self, pids: dict, interval: float = 0.05):
        import psutil
        self._procs = {name: psutil.Process(pid) for name, pid in pids.items()}
        self.interval = interval
        self.samples: list[tuple] = []     # (monotonic time, {name: rss bytes})
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> "RssSampler":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(5)

    def sample(self) -> tuple:
        values = {}
        for name, proc in self._procs.items():
            try:
                values[name] = proc.memory_info().rss
            except Exception:   # the process ended: no value, the caller sees the gap
                values[name] = None
        return time.monotonic(), values

    def _run(self) -> None:
        while not self._stop.is_set():
            self.samples.append(self.sample())
            self._stop.wait(self.interval)

    def growth(self, name: str, t0: float, t1: float) -> dict:
        """RSS of `name` early and late in the run [t0, t1], and the growth between them.

        "At 10 %" is the median of the samples in 10-15 % of the run and "at 100 %"
        the median of those in 95-100 %, so that one message in flight at the
        sampling instant does not count as growth. `series` is (seconds, MB) every
        ~0.25 s for plotting.
        """
        inside = [(t, v[name]) for t, v in self.samples if t0 <= t <= t1 and v.get(name)]
        if len(inside) < 3:
            return {"samples": len(inside)}
        span = t1 - t0

        def median_between(a: float, b: float) -> float:
            values = [v for t, v in inside if t0 + a * span <= t <= t0 + b * span]
            if not values:   # too few samples: the nearest one
                values = [min(inside, key=lambda tv: abs(tv[0] - (t0 + a * span)))[1]]
            return float(np.median(values))

        early, middle, late = median_between(0.10, 0.15), median_between(0.50, 0.55), median_between(0.95, 1.0)
        series, last = [], -1.0
        for t, v in inside:
            if t - last >= 0.25:
                series.append((round(t - t0, 2), round(v / 2**20, 1)))
                last = t
        later = [(t - t0, v / 2**20) for t, v in inside if t >= t0 + 0.1 * span]
        trend = float(np.polyfit(*zip(*later), 1)[0]) if len(later) >= 3 else float("nan")
        return {"samples": len(inside), "rss_10pct_mb": early / 2**20, "rss_end_mb": late / 2**20,
                "rss_peak_mb": max(v for _, v in inside) / 2**20,
                "growth_pct": 100.0 * (late - early) / early,
                "rss_50pct_mb": middle / 2**20,
                "growth_2nd_half_pct": 100.0 * (late - middle) / middle,
                "trend_mb_per_s": trend,   # least-squares slope over 10..100 %: a leak shows as a steady rise
                "series": series}


def percentile(values: list, q: float) -> Optional[float]:
    """Nearest-rank percentile (q in 0..100) of a non-empty list, else None."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, int(round(q / 100.0 * len(ordered) + 0.5 - 1e-9)))
    return ordered[min(rank, len(ordered)) - 1]


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine(output_dir: Path) -> dict:
    """What the figures were measured on, including the load from other processes."""
    import bitshuffle
    import caproto
    import h5py
    import hdf5plugin
    import numpy
    import psutil
    import zmq
    fs = ""
    try:
        fs = subprocess.run(["df", "-T", str(output_dir)], capture_output=True, text=True,
                            timeout=10).stdout.splitlines()[-1].split()[1]
    except (OSError, IndexError, subprocess.SubprocessError):
        pass
    return {
        "cpu": _cpu_model(), "cores": os.cpu_count(), "physical_cores": psutil.cpu_count(logical=False),
        "memory_gb": round(psutil.virtual_memory().total / 2**30, 1),
        "os": f"{platform.system()} {platform.release()}", "python": platform.python_version(),
        "numpy": numpy.__version__, "pyzmq": zmq.__version__, "libzmq": zmq.zmq_version(),
        "h5py": h5py.version.version, "hdf5": h5py.version.hdf5_version,
        "hdf5plugin": hdf5plugin.version, "bitshuffle": bitshuffle.__version__,
        "bitshuffle_avx2": bool(bitshuffle.using_AVX2()), "caproto": caproto.__version__,
        "output_dir": str(output_dir), "output_fs": fs,
        "load_average_at_start": [round(x, 2) for x in os.getloadavg()],
    }


class CpuWatch:
    """CPU seconds used by the whole machine and by this process tree over a phase,
    so a report can say how busy other programs kept the machine meanwhile."""

    def __init__(self) -> None:
        import psutil
        self._psutil = psutil
        self._root = psutil.Process()

    def _ours(self) -> float:
        """This process and every descendant, alive or already reaped."""
        total = 0.0
        try:
            procs = [self._root] + self._root.children(recursive=True)
        except self._psutil.Error:
            procs = [self._root]
        for p in procs:
            try:
                t = p.cpu_times()
            except self._psutil.Error:
                continue
            total += t.user + t.system + t.children_user + t.children_system
        return total

    def __enter__(self) -> "CpuWatch":
        self._t0 = time.monotonic()
        self._sys0 = self._psutil.cpu_times()
        self._ours0 = self._ours()
        return self

    def __exit__(self, *exc) -> None:
        wall = max(time.monotonic() - self._t0, 1e-9)
        sys1 = self._psutil.cpu_times()
        busy = (sys1.user - self._sys0.user) + (sys1.system - self._sys0.system)
        irq = ((getattr(sys1, "softirq", 0) - getattr(self._sys0, "softirq", 0))
               + (getattr(sys1, "irq", 0) - getattr(self._sys0, "irq", 0)))
        ours = self._ours() - self._ours0
        self.result = {"wall_s": round(wall, 3), "machine_busy_cores": round((busy + irq) / wall, 2),
                       "ours_cores": round(ours / wall, 2),
                       "others_cores": round(max(0.0, busy - ours) / wall, 2),
                       "irq_cores": round(irq / wall, 2)}


def dump(path: Optional[str], data: dict) -> None:
    if path:
        Path(path).write_text(json.dumps(data, indent=2, default=str) + "\n")
