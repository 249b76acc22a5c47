"""The benchmark and soak scripts run end to end and report what they measured.

No figure is judged here (machines are noisy): the runs are tiny and only the
report's shape and the correctness figures (frames delivered, none lost) are
checked. The soak's frame checker is also fed bad sequences to prove it can fail.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

BENCH = Path(__file__).resolve().parents[2] / "benchmarks"
sys.path.insert(0, str(BENCH))

import cpu_per_frame  # noqa: E402
from harness import RssSampler  # noqa: E402
from soak import TICKS_PER_S, Checker, rss_violations  # noqa: E402

from xspress3.writers import wire  # noqa: E402


def run_script(args: list, timeout: float) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, *args], capture_output=True, text=True, timeout=timeout)


def test_bench_quick_writes_a_complete_report(tmp_path):
    out = tmp_path / "bench.json"
    proc = run_script([str(BENCH / "bench.py"), "--quick", "--frames", "3000", "--write-frames", "512",
                       "--step-points", "20", "--e2e-runs", "2", "--dir", str(tmp_path), "--json", str(out)],
                      timeout=120)   # a guard against a hang: ~20 s alone, slower on a busy machine
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
    rounds = result["e2e_runs"]
    assert len(rounds) == 2 and all(x["vs_pickle"] > 0 and 0 < x["vs_ceiling"] and x["lost"] == 0 for x in rounds)
    e2e = next(line for line in proc.stdout.splitlines() if line.startswith("end to end, run by run"))
    assert e2e.count("x pickle") == 2 and f"1: {rounds[0]['vs_pickle']:.2f}x pickle" in e2e
    assert not list(tmp_path.glob("xspress3-bench-*")), "the work directory was not removed"


def test_cpu_per_frame_reports_floors_processes_and_threads(tmp_path):
    out = tmp_path / "cpu.json"
    proc = run_script([str(BENCH / "cpu_per_frame.py"), "--frames", "3000", "--rounds", "1", "--dir", str(tmp_path),
                       "--json", str(out)], timeout=120)   # a hang guard (~10 s alone)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    r = json.loads(out.read_text())
    assert r["conditions"] == {"rois_in_use": 32, "ts_acquiring": "Acquiring", "update_rate_hz": 10.0}
    floors = r["floors"]
    assert 0 < floors["copy"] < floors["tofile_2copies"] and floors["tofile"] > 0, floors
    assert floors["tofile_2copies"] == pytest.approx(floors["tofile"] + 2 * floors["copy"])
    tick_us = 1e6 / os.sysconf("SC_CLK_TCK") / 3000    # /proc counts CPU in clock ticks
    for comp in ("None", "BSLZ4"):
        run = r["runs"][comp]
        assert run["frames"] == 3000 and run["lost"] == 0 and run["complete"], run
        for who in ("ioc", "receiver"):
            assert run["us"][who] > 0, run["us"]
            threads = run["threads"][who].values()
            assert len(threads) >= 2
            # the threads' CPU adds up to no more than the process's (threads that ended add less)
            assert sum(t["us"] for t in threads) <= run["us"][who] + tick_us * (len(threads) + 1)
            stages = r["stages"][comp][who]
            assert sum(stages.values()) == pytest.approx(sum(t["us"] for t in threads))
    if shutil.which("py-spy"):   # the profile split each Python thread by stage
        stages = {key.split("|")[1] for key in r["stages"]["None"]["ioc"]}
        assert {"sums / ROI / time series", "driver read (ctypes)", "zmq send"} <= stages, stages
        assert "HDF5 write" in {key.split("|")[1] for key in r["stages"]["None"]["receiver"]}
    assert [t[0] for t in r["targets"]] == [
        "ioc (uncompressed) <= 3.5x cold copy", "receiver (uncompressed) <= 1.2x tofile + 2 copies",
        "receiver (BSLZ4) <= 1x bitshuffle-LZ4 + 2 copies"]
    assert all(t[1] > 0 and isinstance(t[3], bool) for t in r["targets"])
    ioc_row = next(line for line in proc.stdout.splitlines() if line.startswith("IOC, user + system"))
    assert float(ioc_row.split()[4]) == pytest.approx(r["runs"]["None"]["us"]["ioc"], abs=0.06)
    assert not list(tmp_path.glob("xspress3-cpu-*")), "the work directory was not removed"


@pytest.mark.parametrize("who, stack, stage", [
    ("ioc", "Thread._bootstrap (/x/threading.py:1002);Readout.run (/w/ioc/readout.py:330);"
            "Readout._account (/w/ioc/readout.py:440);_sum (/s/numpy/_core/_methods.py:51)",
     "sums / ROI / time series"),
    ("ioc", "Readout._read_block (/w/ioc/readout.py:420);compute (/w/driver/deadtime.py:40)", "deadtime"),
    ("ioc", "Readout._read_block (/w/ioc/readout.py:420);Xspress3.read_spectra (/w/driver/device.py:200)",
     "driver read (ctypes)"),
    ("ioc", "Readout._deliver (/w/ioc/readout.py:460);StreamSender._wake (/w/writers/stream.py:320)", "zmq send"),
    ("ioc", "StreamSender._run (/w/writers/stream.py:340);Poller.poll (/s/zmq/sugar/poll.py:100)",
     "wait / poll (woken)"),
    ("receiver", "HDF5Writer._run (/w/writers/hdf5.py:300);SeriesFile.append (/w/writers/layout.py:400)",
     "HDF5 write"),
    ("receiver", "_worker (/p/concurrent/futures/thread.py:83);encode (/w/writers/layout.py:172)", "BSLZ4 encode"),
    ("receiver", "main (/w/writers/receive.py:230);decode (/w/writers/wire.py:200)", "receive / decode"),
    ("receiver", "<module> (/x/elsewhere.py:1)", "other"),
])
def test_profile_samples_fall_in_their_stage(who, stack, stage):
    assert cpu_per_frame.stage_of(who, stack) == stage


def test_profile_raw_lines_are_read_per_thread():
    text = ("thread (101): xsp3-readout;Readout.run (/w/ioc/readout.py:330) 7\n"
            "thread (101): xsp3-readout;Readout.run (/w/ioc/readout.py:331) 3\n"
            "thread (102): MainThread;main (/w/ioc/main.py:9) 5\n")
    threads = cpu_per_frame.parse_raw(text)
    assert set(threads) == {101, 102}
    name, stacks = threads[101]
    assert name == "xsp3-readout" and sum(stacks.values()) == 10
    run = {"threads": {"ioc": {101: {"comm": "python", "us": 20.0}, 102: {"comm": "python", "us": 4.0},
                               103: {"comm": "ZMQbg/IO/0", "us": 6.0}}}}
    split = cpu_per_frame.split_stages(run, {"ioc": threads})["ioc"]
    assert split == {("xsp3-readout", "readout loop"): 20.0, ("MainThread", "other"): 4.0,
                     ("zmq I/O thread (C)", "zmq send"): 6.0}


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
