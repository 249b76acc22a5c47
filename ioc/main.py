"""`xspress3-ioc`: start the IOC (on the built-in simulator unless --sdk is given)."""
from __future__ import annotations

import argparse
import asyncio
import faulthandler
import gc
import logging
import os
import signal
import sys
from typing import Optional


from xspress3.driver import LibraryError, Xspress3Error
from xspress3.writers.shared_frames import directory_for
from xspress3.writers.stream_keys import ServerKeys, StreamKeyError

from .access_security import AccessPolicy, AcfError, load_acf, secured_context
from .ca_server import RejectedPutLogFilter, SafeContext, tune_update_batching
from .options import DEFAULT_MONITOR, DEFAULT_STREAM, IocOptions, default_settings_file
from .server import build_ioc_class

log = logging.getLogger("xspress3.ioc")


def parse_args(argv=None) -> tuple[IocOptions, argparse.Namespace]:
    p = argparse.ArgumentParser(prog="xspress3-ioc", description=__doc__)
    p.add_argument("--prefix", default="XSP3:", help="PV prefix (default XSP3:)")
    p.add_argument("--channels", type=int, default=4, help="channels (default 4)")
    p.add_argument("--cards", type=int, default=1, help="cards (default 1)")
    p.add_argument("--frames-memory", type=int, default=16384,
                   help="detector frame memory in frames (default 16384)")
    p.add_argument("--sdk", metavar="PATH", default=None,
                   help="real libxspress3.so; without it the built-in simulator runs")
    p.add_argument("--address", default="192.168.0.1", help="detector base IP address")
    p.add_argument("--port", type=int, default=-1, help="detector base port (-1: SDK default)")
    p.add_argument("--config-dir", default=None, help="calibration directory restored at connect")
    p.add_argument("--settings", default=None, metavar="FILE",
                   help="where user settings persist (default ~/.config/xspress3-ioc/PREFIX.json; "
                        "'none' disables)")
    p.add_argument("--stream", default=None,
                   help=f"zmq endpoint the data stream binds (default {DEFAULT_STREAM} on the first "
                        "--interfaces address, or on all interfaces without --interfaces; 'none' disables)")
    p.add_argument("--monitor", default=None,
                   help=f"zmq endpoint of the monitor socket (default {DEFAULT_MONITOR}, bound as "
                        "--stream is; 'none' disables)")
    p.add_argument("--stream-queue", type=int, default=1024, metavar="FRAMES",
                   help="frames the stream may hold before back-pressure (high-water mark; "
                        "default %(default)s)")
    p.add_argument("--ts-points", type=int, default=16384, metavar="POINTS",
                   help="largest TSNumPoints of the ROI and SCA time series (default %(default)s)")
    p.add_argument("--interfaces", nargs="+", default=None,
                   help="network interfaces to serve Channel Access on (default: all)")
    p.add_argument("--access", metavar="FILE", default=None,
                   help="EPICS access security file (UAG/HAG/ASG/RULE); PVs are assigned to "
                        "groups by '#%%ASSIGN(ASG) \"glob\"' lines (see README, Security)")
    p.add_argument("--data-root", metavar="DIR", default=None,
                   help="HDF1:FilePath must resolve (after '..' and symbolic links) to DIR or a "
                        "directory below it; other paths are refused at the put")
    p.add_argument("--stream-keys", metavar="DIR", default=None,
                   help="CURVE keys for the stream and monitor sockets: only clients with an "
                        "authorized key get data (make a key directory with xspress3-keys DIR)")
    p.add_argument("--stream-shm", metavar="DIR", default=None,
                   help="where the readout keeps its frames so that a receiver on this host maps "
                        "them instead of copying them over the socket (default /dev/shm where "
                        "writable; 'none': every frame goes over the socket)")
    p.add_argument("--list-pvs", action="store_true", help="print the PV names at start")
    p.add_argument("-v", "--verbose", action="count", default=0, help="more logging (-vv: debug)")
    p.add_argument("-q", "--quiet", action="store_true", help="warnings and errors only")
    args = p.parse_args(argv)

    def none_or(value):
        return None if value is None or value.lower() == "none" else value

    def endpoint(given, default):
        """The zmq sockets listen where Channel Access does unless told otherwise."""
        if given is not None:
            return none_or(given)
        return default.replace("*", args.interfaces[0], 1) if args.interfaces else default

    options = IocOptions(
        prefix=args.prefix, library=args.sdk, cards=args.cards, channels=args.channels,
        frames_memory=args.frames_memory, address=args.address, port=args.port,
        config_dir=args.config_dir,
        settings_file=(default_settings_file(args.prefix) if args.settings is None
                       else none_or(args.settings)),
        stream=endpoint(args.stream, DEFAULT_STREAM), monitor=endpoint(args.monitor, DEFAULT_MONITOR),
        stream_queue_frames=args.stream_queue, ts_points=args.ts_points,
        data_root=os.path.realpath(args.data_root) if args.data_root else None,
        stream_keys=args.stream_keys,
        stream_shm=None if args.stream_shm is None else (none_or(args.stream_shm) or ""))
    if options.data_root is not None and not os.path.isdir(options.data_root):
        p.error(f"--data-root {args.data_root}: not an existing directory")
    if options.stream_shm and not (os.path.isdir(options.stream_shm)
                                   and os.access(options.stream_shm, os.W_OK | os.X_OK)):
        p.error(f"--stream-shm {options.stream_shm}: not a directory this user can write")
    if options.stream_keys is not None:
        try:
            ServerKeys(options.stream_keys)
        except StreamKeyError as ex:   # open sockets when keys were asked for: worse than stopping
            p.error(f"--stream-keys: {ex}")
    return options, args


def _logging(args) -> None:
    level = logging.WARNING if args.quiet else (logging.DEBUG if args.verbose > 1 else logging.INFO)
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)-7s %(name)s: %(message)s")
    if args.verbose < 2:
        logging.getLogger("caproto").setLevel(logging.WARNING)
        logging.getLogger("caproto.circ").addFilter(RejectedPutLogFilter())


def create(options: IocOptions):
    """Open the detector and build the IOC group. A detector that cannot be opened
    leaves the IOC up in Disconnected state (CONNECT retries)."""
    driver, error = None, ""
    try:
        driver = options.open_driver()
    except Xspress3Error as ex:
        error = str(ex)
        log.error("detector not opened: %s", error)
    cls = build_ioc_class(options)
    return cls(prefix=options.prefix, options=options, driver=driver, driver_error=error)


async def serve(ioc, interfaces=None, access: Optional[AccessPolicy] = None) -> None:
    tune_update_batching()
    if access is None:
        ctx = SafeContext(ioc.pvdb, interfaces)
    else:
        ctx = secured_context(SafeContext)(ioc.pvdb, interfaces)
        ctx.policy, ctx.prefix = access, ioc.prefix
    ioc.ca_context = ctx
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    server = asyncio.create_task(ctx.run(log_pv_names=False, startup_hook=None))
    stopper = asyncio.create_task(stop.wait())
    done, _ = await asyncio.wait({server, stopper}, return_when=asyncio.FIRST_COMPLETED)
    if server in done:
        server.result()  # re-raise a server failure
    log.info("stopping: acquisition, files, sockets and the SDK are being closed")
    await ioc.shutdown_ioc()
    server.cancel()
    try:
        await server
    except asyncio.CancelledError:
        pass


def main(argv=None) -> int:
    options, args = parse_args(argv)
    _logging(args)
    faulthandler.register(signal.SIGUSR1)  # `kill -USR1 <pid>` prints every thread's stack
    access = None
    if args.access:
        try:
            access = load_acf(args.access)
        except AcfError as ex:   # a bad ACF: serving with other rights than meant is worse
            print(f"xspress3-ioc: access security file refused: {ex}", file=sys.stderr)
            return 2
    try:
        ioc = create(options)
    except LibraryError as ex:   # a wrong --sdk path: nothing to serve, say why and stop
        print(f"xspress3-ioc: cannot load the SDK library: {ex}", file=sys.stderr)
        return 2
    driver = ioc.driver
    # The ~4000 PVs built above live as long as the IOC: move them out of the
    # collector's view, so a full collection during a run scans only what the run
    # made (measured: 25-50 ms pauses of the event loop otherwise, ~2 per run).
    gc.collect()
    gc.freeze()
    if options.simulated:
        log.warning("SIMULATION: no --sdk given, the built-in simulated Xspress3 is in use")
    describe = (f"{driver.library_path} ({'simulator' if driver.simulated else 'SDK'})"
                if driver is not None else f"none (not connected: {ioc.driver_error})")
    print(f"xspress3-ioc: prefix {options.prefix}, {len(ioc.pvdb)} PVs, {options.channels} channels",
          flush=True)
    print(f"xspress3-ioc: driver {describe}", flush=True)
    print(f"xspress3-ioc: stream {options.stream or 'off'}, monitor {options.monitor or 'off'}, "
          f"settings {options.settings_file or 'not saved'}", flush=True)
    everywhere = [e for e in (options.stream, options.monitor) if e and "://*:" in e]
    if everywhere or not args.interfaces:
        print("xspress3-ioc: listening on ALL network interfaces: "
              + ", ".join((["Channel Access"] if not args.interfaces else []) + everywhere)
              + " (limit with --interfaces, --stream, --monitor)", flush=True)
    if options.data_root is not None:
        print(f"xspress3-ioc: files only under the data root {options.data_root}", flush=True)
    shared = directory_for(options.stream_shm)
    if options.stream and shared:
        print(f"xspress3-ioc: frames in shared memory under {shared} for a receiver on this host "
              "(--stream-shm none: every frame over the socket)", flush=True)
    if options.stream_keys is not None:
        print(f"xspress3-ioc: stream and monitor need CURVE keys from {options.stream_keys}", flush=True)
    if access is not None:
        print(f"xspress3-ioc: access security {args.access}: {access.describe()}", flush=True)
    if args.list_pvs:
        for name in ioc.pvdb:
            print(name)
    try:
        asyncio.run(serve(ioc, args.interfaces, access))
    except KeyboardInterrupt:
        pass
    print("xspress3-ioc: stopped", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
