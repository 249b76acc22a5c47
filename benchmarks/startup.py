"""IOC start-up and idle memory, as a user meets them: `python benchmarks/startup.py`.

For each of --rounds fresh IOC subprocesses (simulator, 4 channels, no stream or
monitor, settings not saved) it prints:
- start: seconds from launching the process to the first answered caget;
- PVs: how many the IOC serves (its `--list-pvs` output);
- idle RSS after the IOC has settled;
- RSS after a Channel Access client has read two record fields (.DESC and .RTYP)
  of every PV, and the growth in percent (fields are built on first access).

Why a script and not a test: timings and memory vary with the machine; issue 14's
budgets (start within 3x, idle RSS within 2x of the interface before it grew to
the areaDetector name set, two fields of every PV within +50 % RSS) are read off
this table, not asserted.
"""
from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))

from iochelp import ca_env, ca_repeater, close_context, free_ca_port, random_prefix  # noqa: E402

FIELDS = ("DESC", "RTYP")
BATCH = 500


def _first_caget(prefix: str, env: dict, deadline: float) -> None:
    from caproto.sync import client as sync
    import os
    os.environ.update({k: v for k, v in env.items() if k.startswith("EPICS_CA")})
    while time.monotonic() < deadline:
        try:
            sync.read(prefix + "det1:DetectorState_RBV", timeout=0.2, repeater=False)
            return
        except Exception:   # not up yet: the search timed out or the port is closed
            time.sleep(0.01)
    raise TimeoutError("IOC did not answer a caget")


def _read_fields(names: list, env: dict) -> tuple:
    """Read FIELDS of every PV in batches; returns (fields read, fields missing)."""
    import os
    from caproto.threading.client import Context
    os.environ.update({k: v for k, v in env.items() if k.startswith("EPICS_CA")})
    ctx = Context()
    read = missing = 0
    try:
        wanted = [f"{n}.{f}" for n in names for f in FIELDS]
        for i in range(0, len(wanted), BATCH):
            pvs = ctx.get_pvs(*wanted[i:i + BATCH], timeout=2)
            deadline = time.monotonic() + 5.0
            while time.monotonic() < deadline and not all(pv.connected for pv in pvs):
                time.sleep(0.01)
            for pv in pvs:
                if not pv.connected:    # a field the IOC does not serve: counted, not fatal
                    missing += 1
                    continue
                pv.read(timeout=5)
                read += 1
    finally:
        close_context(ctx)
    return read, missing


def one_round(tmp: Path, with_fields: bool) -> dict:
    port = free_ca_port()
    prefix = random_prefix()
    env = ca_env(port)
    args = [sys.executable, "-m", "xspress3.ioc.main", "--prefix", prefix, "--channels", "4",
            "--settings", "none", "--stream", "none", "--monitor", "none", "-q", "--list-pvs"]
    out = open(tmp / f"{prefix.strip(':')}.out", "w+")
    t0 = time.monotonic()
    proc = subprocess.Popen(args, env=env, stdout=out, stderr=subprocess.STDOUT)
    try:
        _first_caget(prefix, env, t0 + 60)
        start_s = time.monotonic() - t0
        time.sleep(2.0)
        ps = psutil.Process(proc.pid)
        idle = ps.memory_info().rss
        out.flush()
        names = [ln.strip() for ln in Path(out.name).read_text().splitlines()
                 if ln.startswith(prefix)]
        result = {"start_s": start_s, "pvs": len(names), "idle_mb": idle / 1e6}
        if with_fields:
            read, missing = _read_fields(names, env)
            time.sleep(1.0)
            after = ps.memory_info().rss
            result.update(fields_read=read, fields_missing=missing, fields_mb=after / 1e6,
                          growth_pct=100.0 * (after - idle) / idle)
        return result
    finally:
        proc.terminate()
        proc.wait(20)
        out.close()


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--no-fields", action="store_true", help="skip the two-fields-of-every-PV read")
    args = p.parse_args(argv)
    rows = []
    with tempfile.TemporaryDirectory() as tmp, ca_repeater():
        for r in range(args.rounds):
            row = one_round(Path(tmp), with_fields=not args.no_fields and r == args.rounds - 1)
            rows.append(row)
            extra = ""
            if "fields_mb" in row:
                extra = (f", after reading {'/'.join(FIELDS)} of every PV: {row['fields_mb']:.0f} MB "
                         f"({row['growth_pct']:+.0f} %), {row['fields_read']} fields read, "
                         f"{row['fields_missing']} not served")
            print(f"round {r + 1}: {row['pvs']} PVs, start to first caget {row['start_s']:.2f} s, "
                  f"idle RSS {row['idle_mb']:.0f} MB{extra}", flush=True)
    starts = [r["start_s"] for r in rows]
    idles = [r["idle_mb"] for r in rows]
    print(f"median: start {statistics.median(starts):.2f} s (min {min(starts):.2f}, max {max(starts):.2f}), "
          f"idle RSS {statistics.median(idles):.0f} MB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
