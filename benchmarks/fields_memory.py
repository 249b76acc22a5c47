"""What record fields cost: memory of fields read on every PV, and the IOC's start.

    python benchmarks/fields_memory.py [--channels 4] [--fields DESC,RTYP] [--no-ioc]

1. In-process: builds the IOC's PV group (no detector, no network) and a caproto
   server Context over it, then resolves and reads the given fields of every PV
   through ``Context.__getitem__`` (as a client's ``caget PV.DESC`` does) and
   prints resident memory (psutil) before and after, and the cost per field.
2. A real IOC subprocess (unless --no-ioc): seconds from start to the first
   answered read of ``det1:DetectorState_RBV``, and its RSS once idle, before and
   after a client reads the same fields of every PV over Channel Access.

The budget (issue 14 item 3): fields are built on first access, reading two
fields of every PV adds at most 50 % to the IOC's RSS.
"""
from __future__ import annotations

import argparse
import asyncio
import gc
import os
import sys
import tempfile
import time
from pathlib import Path

import psutil

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))


def rss_mb(pid: int | None = None) -> float:
    return psutil.Process(pid or os.getpid()).memory_info().rss / 1e6


def in_process(channels: int, fields: list) -> dict:
    from caproto import ChannelType
    from xspress3.ioc.ca_server import SafeContext
    from xspress3.ioc.options import IocOptions
    from xspress3.ioc.server import build_ioc_class

    gc.collect()
    start_rss = rss_mb()
    t0 = time.perf_counter()
    options = IocOptions(channels=channels, settings_file=None, stream=None, monitor=None)
    group = build_ioc_class(options)(prefix="BENCH:", options=options)
    names = list(group.pvdb)

    async def make_context():      # caproto's Context wants a running loop
        return SafeContext(group.pvdb, interfaces=["127.0.0.1"])

    async def read_all(ctx):
        for name in names:
            for field in fields:
                await ctx[f"{name}.{field}"].read(ChannelType.STRING)

    loop = asyncio.new_event_loop()
    ctx = loop.run_until_complete(make_context())
    build_s = time.perf_counter() - t0
    gc.collect()
    built_rss = rss_mb()
    t0 = time.perf_counter()
    loop.run_until_complete(read_all(ctx))
    read_s = time.perf_counter() - t0
    gc.collect()
    after_rss = rss_mb()
    count = len(names) * len(fields)
    return {"pvs": len(names), "fields read": count, "build s": build_s,
            "RSS before build MB": start_rss, "RSS after build MB": built_rss,
            "RSS after fields MB": after_rss, "read s": read_s,
            "added by fields %": 100 * (after_rss - built_rss) / built_rss,
            "bytes per field": 1e6 * (after_rss - built_rss) / count}


def subprocess_ioc(channels: int, fields: list) -> dict:
    from caproto import ChannelType
    from iochelp import IocProcess, ca_repeater, close_context

    with tempfile.TemporaryDirectory() as tmp, ca_repeater():
        ioc = IocProcess(Path(tmp), channels=channels, stream=False, monitor=False)
        t0 = time.perf_counter()
        ioc.start()
        first_s = time.perf_counter() - t0
        try:
            time.sleep(3)
            idle = rss_mb(ioc.proc.pid)
            from xspress3.ioc.options import IocOptions
            from xspress3.ioc.server import build_ioc_class
            options = IocOptions(channels=channels, settings_file=None, stream=None,
                                 monitor=None)
            group = build_ioc_class(options)(prefix=ioc.prefix, options=options)
            names = [f"{n}.{f}" for n in group.pvdb for f in fields]
            ctx = ioc.context()
            t0 = time.perf_counter()
            for i in range(0, len(names), 500):
                pvs = ctx.get_pvs(*names[i:i + 500], timeout=10)
                for pv in pvs:
                    pv.wait_for_connection(timeout=30)
                for pv in pvs:
                    pv.read(data_type=ChannelType.STRING, timeout=10)
            read_s = time.perf_counter() - t0
            close_context(ctx)
            time.sleep(2)
            after = rss_mb(ioc.proc.pid)
        finally:
            ioc.stop()
    return {"start to first read s": first_s, "idle RSS MB": idle,
            "RSS after fields over CA MB": after, "fields read over CA": len(names),
            "CA read s": read_s, "added by fields %": 100 * (after - idle) / idle}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--channels", type=int, default=4)
    parser.add_argument("--fields", default="DESC,RTYP")
    parser.add_argument("--no-ioc", action="store_true", help="in-process figures only")
    args = parser.parse_args()
    fields = args.fields.split(",")
    print("in-process (group + server Context, fields through Context.__getitem__):")
    for key, value in in_process(args.channels, fields).items():
        print(f"  {key:28s} {value:10.3f}" if isinstance(value, float) else
              f"  {key:28s} {value:10d}")
    if not args.no_ioc:
        print("IOC subprocess:")
        for key, value in subprocess_ioc(args.channels, fields).items():
            print(f"  {key:28s} {value:10.3f}" if isinstance(value, float) else
                  f"  {key:28s} {value:10d}")


if __name__ == "__main__":
    main()
