"""The benchmark and soak scripts run end to end and report what they measured.

No figure is judged here (machines are noisy): the runs are tiny and only the
report's shape and the correctness figures (frames delivered, none lost) are
checked. The soak's frame checker is also fed bad sequences to prove it can fail.
"""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

BENCH = Path(__file__).resolve().parents[2] / "benchmarks"
sys.path.insert(0, str(BENCH))

from harness import RssSampler  # noqa: E402
from soak import TICKS_PER_S, Checker, rss_violations  # noqa: E402

from xspress3.writers import wire  # noqa: E402


def run_script(args: list, timeout: float) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, *args], capture_output=True, text=True, timeout=timeout)


def test_bench_quick_writes_a_complete_report(tmp_path):
    out = tmp_path / "bench.json"
    proc = run_script([str(BENCH / "bench.py"), "--quick", "--frames", "3000", "--write-frames", "512",
                       "--step-points", "20", "--dir", str(tmp_path), "--json", str(out)], timeout=50)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    result = json.loads(out.read_text())
    assert result["machine"]["cores"] >= 1 and result["machine"]["numpy"] == np.__version__
    for key in ("baseline_pickle", "baseline_batched", "stream"):
        assert result[key]["frames"] == 3000 and result[key]["lost"] == 0, result[key]
        assert result[key]["frames_per_s"] > 0
    for key in ("raw_tofile", "layer_None", "layer_BSLZ4", "receiver_None", "receiver_BSLZ4",
                "builtin_None", "builtin_BSLZ4"):
        assert result[key]["frames"] == 512 and result[key]["lost"] == 0, result[key]
        assert result[key].get("complete", True), result[key]
    assert result["stream"]["caget"]["count"] > 0
    step = result["step_scan"]
    assert step["frames_written"] == 20 and step["lost"] == 0 and step["point_p50_ms"] > 0, step
    assert "step scan, 20 points" in proc.stdout
    assert result["stream"]["rss"]["ioc"]["samples"] >= 1
    assert len(result["targets"]) == 11 and all(isinstance(ok, bool) for _, _, ok in result["targets"])
    assert "stream >= 2x seed-style pickle" in proc.stdout    # the table was printed
    assert not list(tmp_path.glob("xspress3-bench-*")), "the work directory was not removed"


def test_soak_short_run_finds_no_violation(tmp_path):
    out = tmp_path / "soak.json"
    proc = run_script([str(BENCH / "soak.py"), "--runs", "8", "--abort-fraction", "0.5", "--long-frames", "3000",
                       "--seed", "7", "--json", str(out)], timeout=50)
    result = json.loads(out.read_text())
    assert proc.returncode == 0, proc.stdout + "\n".join(result["violations"])
    assert result["cycling"]["runs"] == 8 and result["long_run"]["frames"] == 3000


def _block(first: int, count: int, ticks: int) -> wire.FrameBlock:
    scalers = np.zeros((count, 2, wire.NUM_SCALERS), np.uint32)
    scalers[:, :, 0] = ticks
    return wire.FrameBlock(first_frame=first, spectra=np.zeros((count, 2, 8), np.uint32), scalers=scalers,
                           dtfactor=np.ones((count, 2)), dtpercent=np.zeros((count, 2)), series_id="s1")


@pytest.mark.parametrize("firsts, stale, expected", [
    ([0, 4, 8], False, None),
    ([0, 8], False, "skipped"),
    ([0, 4, 2], False, "duplicated"),
    ([0, 4], True, "TIME"),
])
def test_soak_checker_flags_gaps_duplicates_and_stale_frames(firsts, stale, expected):
    ticks = 8000
    checker = Checker("tcp://127.0.0.1:1")   # never started: messages are fed by hand
    try:
        checker._handle(wire.SeriesStart(series_id="s1", channels=2, bins=8, exposure_s=ticks / TICKS_PER_S), wire)
        for n, first in enumerate(firsts):
            checker._handle(_block(first, 4, ticks + (1000 if stale and n == 1 else 0)), wire)
        checker._handle(wire.SeriesEnd(series_id="s1", frames_sent=4 * len(firsts)), wire)
    finally:
        checker._receiver.close()
    record = checker.wait_ended(1, timeout=1)
    assert record is not None and record.frames == 4 * len(firsts)
    if expected is None:
        assert record.problems == []
    else:
        assert len(record.problems) == 1 and expected in record.problems[0]


def _growth(mb_at) -> dict:
    """RssSampler.growth of a made-up process whose RSS at time t (0..100 s) is mb_at(t)."""
    sampler = RssSampler.__new__(RssSampler)
    sampler.samples = [(float(t), {"p": mb_at(t) * 2**20}) for t in range(101)]
    return sampler.growth("p", 0.0, 100.0)


@pytest.mark.parametrize("mb_at, flat", [
    (lambda t: 66.0, True),
    (lambda t: 66.0 + min(t, 35) * 0.12, True),      # allocator warm-up: +4 MB by 35 s, then flat
    (lambda t: 66.0 + 0.1 * t, False),               # a leak: a steady rise
    (lambda t: 66.0 + (40.0 if t > 30 else 0.0), False),   # one large step after 10 %
])
def test_soak_flat_memory_rule_tells_a_leak_from_a_warm_up(mb_at, flat):
    assert (rss_violations("receiver", _growth(mb_at)) == []) == flat
