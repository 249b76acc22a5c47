"""Soak test of the IOC: many acquisitions over Channel Access with random exposures,
frame counts and aborts, a stream receiver checking every frame, then one long
run that must keep the resident memory flat.

Why: an IOC on a beamline runs for weeks; the CI tests prove each behaviour once,
this proves it a thousand times in a row. It is not run in CI (it takes minutes).

    python benchmarks/soak.py [--runs 1000] [--long-frames 200000] [--seed N] [--json out.json]

Checked for every run (a failed check is a violation; any violation -> exit 1):
  * the Acquire put returns (never stuck) and the IOC ends Idle (all frames) or
    Aborted (a prefix of them);
  * det1:ArrayCounter_RBV, the frames the receiver got, the series' `end`
    message (frames_sent) and the simulator's run length agree;
  * the stream's frame indices run 0, 1, 2... with no gap and no duplicate,
    nothing is counted lost (IOC PV and `end` message), series ids are unique;
  * every frame's TIME scaler equals this run's exposure in 80 MHz ticks, so no
    frame of an earlier run (another exposure) leaks into this one.
The long run (circular buffer, `xspress3-receive --decode-only` attached) must
deliver every frame and, when it has at least 200 000 frames, keep the RSS of
the IOC and of the receiver flat: within 5 % between 50 % and 100 % of the run
(no steady rise), and within 5 % or WARMUP_SLACK_MB between 10 % and 100 %.
The slack is for allocator warm-up: the receiver's heap settles over the first
tens of seconds to the mix of stream message sizes (up to 8 MiB each), a step of
a few MB that 5 % of a 66 MB process cannot hold; a leak still fails both.
"""
from __future__ import annotations

import argparse
import random
import shutil
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent))

from harness import Receiver, RssSampler, ca_repeater, dump, machine, percentile, start_ioc  # noqa: E402

TICKS_PER_S = 80_000_000
MAX_RSS_GROWTH_PCT = 5.0
WARMUP_SLACK_MB = 16.0   # two of the largest stream messages
LONG_RUN = 200_000   # the minimum for the flat-memory check


@dataclass
class SeriesRecord:
    """What the checking receiver saw of one series."""
    series_id: str
    frames_expected: int
    ticks: int
    next_frame: int = 0
    frames: int = 0
    problems: list = field(default_factory=list)
    end: Optional[object] = None


class Checker(threading.Thread):
    """A stream receiver that checks frame order and content as it goes."""

    def __init__(self, endpoint: str):
        super().__init__(name="soak-checker", daemon=True)
        from xspress3.writers.stream import StreamReceiver
        # shared memory: the checker lets go of each block once checked
        self._receiver = StreamReceiver(endpoint, shared=True)
        self._stop_event = threading.Event()
        self._cond = threading.Condition()
        self.series: list = []
        self.stray: list = []

    def run(self) -> None:
        from xspress3.writers import wire
        try:
            for msg in self._receiver.messages(self._stop_event):
                with self._cond:
                    self._handle(msg, wire)
                    self._cond.notify_all()
        finally:
            self._receiver.close()

    def _handle(self, msg, wire) -> None:
        current = self.series[-1] if self.series else None
        if isinstance(msg, wire.SeriesStart):
            if current is not None and current.series_id == msg.series_id:
                return   # repeated start for a late receiver
            self.series.append(SeriesRecord(msg.series_id, msg.frames_expected,
                                            round(msg.exposure_s * TICKS_PER_S)))
        elif current is None or msg.series_id != current.series_id:
            self.stray.append(f"{type(msg).__name__} of series {msg.series_id} outside its series")
        elif isinstance(msg, wire.FrameBlock):
            if msg.first_frame != current.next_frame:
                kind = "duplicated" if msg.first_frame < current.next_frame else "skipped"
                current.problems.append(f"frames {kind}: block starts at {msg.first_frame}, "
                                        f"expected {current.next_frame}")
            times = msg.scalers[:, :, 0]
            bad = int((times != current.ticks).sum())
            if bad:
                example = int(times.flat[(times != current.ticks).argmax()])
                current.problems.append(f"{bad} frame-channels with TIME != {current.ticks} ticks near frame "
                                        f"{msg.first_frame} (e.g. {example})")
            current.next_frame = msg.first_frame + msg.count
            current.frames += msg.count
        else:
            current.end = msg

    def wait_ended(self, count: int, timeout: float) -> Optional[SeriesRecord]:
        """The count-th series (1-based) once its end message arrived, or None."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while not (len(self.series) >= count and self.series[count - 1].end is not None):
                left = deadline - time.monotonic()
                if left <= 0:
                    return None
                self._cond.wait(left)
            return self.series[count - 1]

    def stop(self) -> None:
        self._stop_event.set()
        self.join(5)


def acquire(ioc, duration: float, abort_after: Optional[float]) -> dict:
    """One Acquire=1 with callback, optionally Acquire=0 after `abort_after` s."""
    result: dict = {}

    def run() -> None:
        try:
            ioc.put("det1:Acquire", 1, wait=True, timeout=duration + 30)
            result["ok"] = True
        except Exception as ex:   # reported as a violation by the caller
            result["error"] = f"{type(ex).__name__}: {ex}"

    t0 = time.monotonic()
    worker = threading.Thread(target=run, daemon=True)
    worker.start()
    if abort_after is not None:
        time.sleep(abort_after)
        try:
            ioc.put("det1:Acquire", 0, wait=True, timeout=30)
        except Exception as ex:
            result["abort_error"] = f"{type(ex).__name__}: {ex}"
    worker.join(duration + 40)
    result["stuck"] = worker.is_alive()
    result["seconds"] = time.monotonic() - t0
    return result


def cycle(ioc, checker: Checker, runs: int, rng: random.Random, abort_fraction: float,
          max_frames: int, violations: list) -> dict:
    ioc.put("det1:TriggerMode", "Internal")
    overheads, counts = [], {"Idle": 0, "Aborted": 0, "other": 0}
    frames_total = 0
    ioc_rss = [psutil.Process(ioc.proc.pid).memory_info().rss]
    for i in range(1, runs + 1):
        ticks = int(round(10 ** rng.uniform(3.6, 5.2)))           # 50 us .. 2 ms
        exposure = ticks / TICKS_PER_S
        frames = 1 if rng.random() < 0.05 else rng.randint(1, max(1, min(max_frames, int(0.3 / exposure))))
        duration = frames * exposure
        abort_after = rng.uniform(0, duration) if rng.random() < abort_fraction else None
        ioc.put("det1:AcquireTime", exposure)
        ioc.put("det1:NumImages", frames)
        res = acquire(ioc, duration, abort_after)
        where = f"run {i} ({frames} frames of {exposure * 1e3:.3f} ms{', aborted' if abort_after is not None else ''})"
        if res["stuck"] or "error" in res:
            violations.append(f"{where}: Acquire put {'stuck' if res['stuck'] else res['error']}")
            break
        if abort_after is None:
            overheads.append(res["seconds"] - duration)
        state = ioc.get("det1:DetectorState_RBV")
        counter = ioc.get("det1:ArrayCounter_RBV")
        lost = ioc.get("det1:StreamFramesLost_RBV")
        sent = ioc.get("det1:StreamFramesSent_RBV")
        counts[state if state in counts else "other"] += 1
        record = checker.wait_ended(i, timeout=15)
        problems = []
        if record is None:
            problems.append("no end message on the stream")
        else:
            frames_total += record.frames
            problems += record.problems
            if record.ticks != ticks:
                problems.append(f"series start says {record.ticks} ticks, {ticks} were set")
            if record.frames != counter:
                problems.append(f"receiver got {record.frames} frames, ArrayCounter_RBV {counter}")
            if record.end.frames_sent != record.frames or sent != record.frames:
                problems.append(f"frames_sent {record.end.frames_sent} (PV {sent}), received {record.frames}")
            if record.end.frames_lost or lost:
                problems.append(f"lost {record.end.frames_lost} ({record.end.lost_reason}), PV {lost}")
        if state == "Idle":
            if counter != frames:
                problems.append(f"Idle after {counter} of {frames} frames")
        elif state == "Aborted":
            if abort_after is None:
                problems.append("Aborted without an abort")
            if counter > frames:
                problems.append(f"{counter} frames of {frames}")
        else:
            problems.append(f"ended in state {state}: {ioc.get('det1:StatusMessage_RBV')}")
        violations += [f"{where}: {p}" for p in problems]
        if i % 100 == 0 or i == runs:
            ioc_rss.append(psutil.Process(ioc.proc.pid).memory_info().rss)
            print(f"  {i} runs: {counts['Idle']} Idle, {counts['Aborted']} Aborted, {counts['other']} other; "
                  f"{frames_total} frames; {len(violations)} violations; IOC RSS {ioc_rss[-1] / 2**20:.0f} MB",
                  flush=True)
    ids = [s.series_id for s in checker.series]
    if len(set(ids)) != len(ids):
        violations.append("a series id was used twice")
    violations += [f"stream: {text}" for text in checker.stray]
    return {"runs": sum(counts.values()), "states": counts, "frames": frames_total,
            "put_overhead_ms_p50": 1e3 * (percentile(overheads, 50) or 0),
            "put_overhead_ms_p99": 1e3 * (percentile(overheads, 99) or 0),
            "put_overhead_ms_max": 1e3 * max(overheads, default=0),
            "ioc_rss_mb_every_100_runs": [round(v / 2**20, 1) for v in ioc_rss]}


def long_run(ioc, frames: int, exposure: float, violations: list) -> dict:
    """One run of `frames` through the circular buffer with the console receiver attached."""
    ioc.put("det1:CircularBuffer", "Yes")
    ioc.put("det1:AcquireTime", exposure)
    ioc.put("det1:NumImages", frames)
    receiver = Receiver.connected(ioc, max_series=1)
    try:
        with RssSampler({"ioc": ioc.proc.pid, "receiver": receiver.pid}, interval=0.1) as rss:
            t0 = time.monotonic()
            ioc.put("det1:Acquire", 1, wait=True, timeout=frames * exposure * 3 + 60)
            summary = receiver.wait_summaries(1, timeout=60)[0]
            t1 = time.monotonic()
            rss.samples.append(rss.sample())
    finally:
        receiver.stop()
    state = ioc.get("det1:DetectorState_RBV")
    lost = ioc.get("det1:StreamFramesLost_RBV")
    result = {"frames": summary.frames, "seconds": t1 - t0, "frames_per_s": summary.rate, "state": state,
              "lost": lost, "receiver_line": summary.line,
              "rss": {who: rss.growth(who, t0, t1) for who in ("ioc", "receiver")}}
    if state != "Idle" or summary.frames != frames or not summary.complete or lost:
        violations.append(f"long run: state {state}, {summary.frames} of {frames} frames received, "
                          f"{lost} lost: {summary.line}")
    if frames < LONG_RUN:
        result["rss_note"] = f"indicative only: the flat-memory check needs >= {LONG_RUN} frames"
        return result
    for who, g in result["rss"].items():
        violations += rss_violations(who, g)
    return result


def rss_violations(who: str, g: dict) -> list:
    """Flat memory, as the module docstring defines it."""
    if "growth_pct" not in g:
        return [f"long run: too few RSS samples of the {who}"]
    out = []
    if g["growth_2nd_half_pct"] >= MAX_RSS_GROWTH_PCT:
        out.append(f"long run: {who} RSS grew {g['growth_2nd_half_pct']:.1f}% over the second half "
                   f"(limit {MAX_RSS_GROWTH_PCT}%)")
    grown_mb = g["rss_end_mb"] - g["rss_10pct_mb"]
    if g["growth_pct"] >= MAX_RSS_GROWTH_PCT and grown_mb >= WARMUP_SLACK_MB:
        out.append(f"long run: {who} RSS grew {g['growth_pct']:.1f}% ({grown_mb:.1f} MB) from 10% to "
                   f"100% (limit {MAX_RSS_GROWTH_PCT}% or {WARMUP_SLACK_MB:g} MB)")
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--runs", type=int, default=1000, help="acquisitions to cycle (default %(default)s)")
    p.add_argument("--abort-fraction", type=float, default=0.2, help="share of runs aborted mid-run")
    p.add_argument("--max-frames", type=int, default=4000, help="largest frame count of a cycled run")
    p.add_argument("--long-frames", type=int, default=200_000, help="frames of the long run (0: skip it)")
    p.add_argument("--long-exposure", type=float, default=1e-4, help="AcquireTime of the long run (s)")
    p.add_argument("--frames-memory", type=int, default=16384, help="simulated detector memory (frames)")
    p.add_argument("--seed", type=int, default=None, help="random seed (printed, to repeat a run)")
    p.add_argument("--json", help="write the figures here")
    args = p.parse_args(argv)
    seed = args.seed if args.seed is not None else random.randrange(2**31)
    rng = random.Random(seed)
    work = Path(tempfile.mkdtemp(prefix="xspress3-soak-"))
    results: dict = {"machine": machine(work), "seed": seed, "config": vars(args)}
    violations: list = []
    print(f"soak: seed {seed}, {args.runs} runs, {args.abort_fraction:.0%} aborted, then a long run of "
          f"{args.long_frames} frames", flush=True)
    t_start = time.monotonic()
    ioc = start_ioc(work, frames_memory=args.frames_memory)
    try:
        checker = Checker(ioc.stream_endpoint)
        checker.start()
        ioc.wait_for("det1:StreamReceivers_RBV", lambda v: v >= 1, timeout=20, interval=0.1)
        try:
            results["cycling"] = cycle(ioc, checker, args.runs, rng, args.abort_fraction, args.max_frames,
                                       violations)
        finally:
            checker.stop()
        if args.long_frames:
            print(f"long run: {args.long_frames} frames at {args.long_exposure:g} s", flush=True)
            results["long_run"] = long_run(ioc, args.long_frames, args.long_exposure, violations)
    finally:
        code = ioc.stop()
        results["ioc_exit_code"] = code
        if code != 0:
            violations.append(f"IOC exited with {code} on SIGTERM:\n{ioc.output()[-2000:]}")
        shutil.rmtree(work, ignore_errors=True)
    results["elapsed_s"] = time.monotonic() - t_start
    results["violations"] = violations
    report(results)
    dump(args.json, results)
    return 1 if violations else 0


def report(r: dict) -> None:
    c = r.get("cycling", {})
    print(f"\nmachine: {r['machine']['cpu']}, {r['machine']['cores']} cores; seed {r['seed']}; "
          f"{r['elapsed_s']:.0f} s")
    if c:
        print(f"cycling: {c['runs']} runs ({c['states']['Idle']} Idle, {c['states']['Aborted']} Aborted, "
              f"{c['states']['other']} other), {c['frames']} frames checked; Acquire put time beyond the "
              f"exposure (runs not aborted) p50 {c['put_overhead_ms_p50']:.0f} ms, "
              f"p99 {c['put_overhead_ms_p99']:.0f} ms, "
              f"max {c['put_overhead_ms_max']:.0f} ms; IOC RSS every 100 runs (MB): "
              f"{c['ioc_rss_mb_every_100_runs']}")
    lr = r.get("long_run")
    if lr:
        rss = "; ".join(f"{who} {g.get('rss_10pct_mb', 0):.0f} -> {g.get('rss_50pct_mb', 0):.0f} -> "
                        f"{g.get('rss_end_mb', 0):.0f} MB ({g.get('growth_pct', float('nan')):+.1f}%, "
                        f"second half {g.get('growth_2nd_half_pct', float('nan')):+.1f}%)"
                        for who, g in lr["rss"].items())
        print(f"long run: {lr['frames']} frames in {lr['seconds']:.1f} s ({lr['frames_per_s']:.0f} frames/s), "
              f"state {lr['state']}, lost {lr['lost']}; RSS at 10% -> 50% -> 100%: {rss}"
              + (f" ({lr['rss_note']})" if "rss_note" in lr else ""))
    if r["violations"]:
        print(f"\n{len(r['violations'])} VIOLATIONS:")
        for text in r["violations"][:50]:
            print(f"  {text}")
    else:
        print("\nno violations")


if __name__ == "__main__":
    with ca_repeater():   # its own, so no repeater outlives the run holding our stdout
        sys.exit(main())
