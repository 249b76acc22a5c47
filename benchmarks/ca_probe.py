"""A Channel Access client in its own process, for measuring the IOC while it streams.

Why a separate process with libca (pyepics): that is what a beamline's caget and
camonitor are; a client inside the benchmark process would share its GIL and
its CPU share. Two modes:

    get PV [--interval S]   repeated reads of a scalar; records (start time, latency)
    monitor PV              subscription; records the arrival time of each update

It prints "ready" once connected, runs until a line arrives on stdin (or stdin
closes), then prints one JSON object and exits. Times are time.monotonic(),
which is one clock for every process of the machine, so the caller can keep
the samples that fall inside its run.
"""
from __future__ import annotations

import argparse
import json
import sys
import threading
import time


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("mode", choices=("get", "monitor"))
    p.add_argument("pv")
    p.add_argument("--interval", type=float, default=0.01, help="pause between reads (get)")
    p.add_argument("--timeout", type=float, default=5.0, help="read timeout (get)")
    args = p.parse_args(argv)

    import epics   # pyepics: libca, the C client library of caget/camonitor

    stop = threading.Event()
    result: dict = {"mode": args.mode, "pv": args.pv}
    if args.mode == "get":
        pv = epics.PV(args.pv, auto_monitor=False)
        if not pv.wait_for_connection(timeout=10):
            print(json.dumps({"error": f"{args.pv} not connected"}), flush=True)
            return 1
        samples: list = []
        failures = 0

        def loop() -> None:
            nonlocal failures
            while not stop.is_set():
                t0 = time.monotonic()
                value = pv.get(use_monitor=False, timeout=args.timeout)
                t1 = time.monotonic()
                if value is None:
                    failures += 1
                samples.append((t0, t1 - t0))
                stop.wait(args.interval)

        worker = threading.Thread(target=loop, daemon=True)
    else:
        arrivals: list = []

        def on_update(**kw) -> None:
            arrivals.append(time.monotonic())

        pv = epics.PV(args.pv, auto_monitor=True, callback=on_update)
        if not pv.wait_for_connection(timeout=10):
            print(json.dumps({"error": f"{args.pv} not connected"}), flush=True)
            return 1
        worker = None
    if worker is not None:
        worker.start()
    print("ready", flush=True)
    sys.stdin.readline()
    stop.set()
    if worker is not None:
        worker.join(args.timeout + 1)
        result.update(samples=samples, failures=failures)
    else:
        result.update(arrivals=list(arrivals))
    print(json.dumps(result), flush=True)
    epics.ca.finalize_libca()
    return 0


if __name__ == "__main__":
    sys.exit(main())
