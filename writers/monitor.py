"""Latest-frame monitor: a REP server in the IOC and the ``xspress3-monitor`` client.

The data path only stores a reference (``update`` is one attribute assignment);
the server thread slices out the newest frame when a client asks, so a slow or
absent client never slows acquisition. Replies reuse the stream encoding
(``wire.py``): "latest" gets a one-frame frames message (or a "none" header),
"start" gets the open series' start message, or "none" while no series is open
(before the first run and after each run's series has ended)."""
from __future__ import annotations

import argparse
import json
import logging
import sys
import threading
import time
from typing import Any, Optional, Sequence

import numpy as np
import zmq

from . import wire
from .stream_keys import ClientKeys, ServerKeys, StreamKeyError, add_client_arguments, client_keys

log = logging.getLogger(__name__)

REQUEST_LATEST = b"latest"
REQUEST_START = b"start"
TYPE_ERROR = "error"

_POLL_MS = 100


class MonitorServer:
    """Answers "latest" and "start" requests from its own thread (REP socket)."""

    def __init__(self, endpoint: str = f"tcp://*:{wire.MONITOR_PORT}",
                 keys: Optional[ServerKeys] = None) -> None:
        """``keys``: CURVE keys (stream_keys.py); only clients holding authorized keys get replies.
        May also be set as the attribute before ``start``."""
        self._bind_endpoint = endpoint
        self.keys = keys
        self._endpoint = ""
        self._latest: Optional[tuple[wire.FrameBlock, str]] = None
        self._start: Optional[wire.SeriesStart] = None
        self._stop = threading.Event()
        self._ready = threading.Event()
        self._error: Optional[BaseException] = None
        self._thread: Optional[threading.Thread] = None
        self.requests_served = 0

    @property
    def endpoint(self) -> str:
        return self._endpoint

    def start(self, timeout: float = 10.0) -> None:
        """Bind and serve; raises OSError if the endpoint cannot be bound."""
        self._thread = threading.Thread(target=self._run, name="xspress3-monitor", daemon=True)
        self._thread.start()
        if not self._ready.wait(timeout):
            raise TimeoutError("monitor server thread did not start")
        if self._error is not None:
            raise OSError(f"cannot bind monitor socket to {self._bind_endpoint}: {self._error}") from self._error
        log.info("monitor server bound to %s", self._endpoint)

    def set_series(self, start: Optional[wire.SeriesStart]) -> None:
        """Announce the open series (None when idle); does not forget the last frame."""
        self._start = start

    # ---- consumer.SeriesConsumer: the monitor never refuses a block, so it loses none
    name = "monitor"
    stall_timeout = 0.0

    def begin_series(self, start: wire.SeriesStart) -> None:
        self.set_series(start)

    def offer(self, block: wire.FrameBlock, timeout: float = 0.0) -> bool:
        self.update(block)
        return True

    def count_lost(self, frames: int, reason: str) -> None:
        """Never called: offer always takes the block (it only keeps a reference)."""

    def losses(self) -> dict[str, int]:
        return {}

    def end_series(self, final_state: str) -> None:
        """Idle again: "start" answers "none"; "latest" keeps the last frame."""
        self.set_series(None)

    def update(self, block: wire.FrameBlock, series_id: str = "") -> None:
        """Remember the block; its last frame is what "latest" returns. No copy."""
        if block.count:
            self._latest = (block, series_id or block.series_id or (self._start.series_id if self._start else ""))

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()

    def __enter__(self) -> "MonitorServer":
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _reply(self, request: bytes) -> list:
        if request == REQUEST_LATEST:
            latest = self._latest
            if latest is None:
                return wire.encode_none()
            block, series_id = latest
            return wire.encode_block(block.slice(block.count - 1, block.count), series_id)
        if request == REQUEST_START:
            start = self._start
            return wire.encode_none() if start is None else wire.encode_start(start)
        text = request[:40].decode("utf-8", "replace")
        return [json.dumps({"type": TYPE_ERROR, "version": wire.FORMAT_VERSION,
                            "message": f"unknown request {text!r}; use 'latest' or 'start'"}).encode()]

    def _run(self) -> None:
        ctx = zmq.Context.instance()
        try:
            sock = ctx.socket(zmq.REP)
            sock.setsockopt(zmq.LINGER, 0)
            if self.keys is not None:
                self.keys.secure(sock)
            sock.bind(self._bind_endpoint)
            self._endpoint = sock.getsockopt_string(zmq.LAST_ENDPOINT)
        except zmq.ZMQError as exc:
            self._error = exc
            self._ready.set()
            return
        self._ready.set()
        try:
            while not self._stop.is_set():
                if not sock.poll(_POLL_MS, zmq.POLLIN):
                    continue
                request = b"".join(bytes(p) for p in sock.recv_multipart())
                try:
                    reply = self._reply(request)
                except wire.WireFormatError as exc:
                    log.error("monitor cannot encode the latest frame: %s", exc)
                    reply = [json.dumps({"type": TYPE_ERROR, "version": wire.FORMAT_VERSION,
                                         "message": str(exc)}).encode()]
                self.requests_served += 1  # before the reply, so a client that got it sees the count
                sock.send_multipart(reply, copy=False)
        finally:
            sock.close(0)


class MonitorClient:
    """REQ client with the lazy-pirate recovery: after a timeout the socket is rebuilt."""

    def __init__(self, endpoint: str = f"tcp://localhost:{wire.MONITOR_PORT}", timeout_s: float = 1.0,
                 context: Optional[zmq.Context] = None, keys: Optional[ClientKeys] = None) -> None:
        self.endpoint = endpoint
        self.keys = keys
        self.timeout_s = timeout_s
        self._ctx = context or zmq.Context.instance()
        self._sock: Optional[zmq.Socket] = None

    def _socket(self) -> zmq.Socket:
        if self._sock is None:
            self._sock = self._ctx.socket(zmq.REQ)
            self._sock.setsockopt(zmq.LINGER, 0)
            # a REQ socket without a peer (not up yet, or its CURVE handshake refused)
            # blocks a send for ever: give the send the same time as the reply
            self._sock.setsockopt(zmq.SNDTIMEO, max(1, int(self.timeout_s * 1000)))
            if self.keys is not None:
                self.keys.secure(self._sock)
            self._sock.connect(self.endpoint)
        return self._sock

    def request(self, what: bytes) -> list[zmq.Frame]:
        """Send one request; TimeoutError (and a fresh socket) if no reply in time."""
        sock = self._socket()
        try:
            sock.send(what)
        except zmq.Again:
            pass   # no peer to send to in time: the same as no reply
        else:
            if sock.poll(int(self.timeout_s * 1000), zmq.POLLIN):
                return sock.recv_multipart(copy=False)
        sock.close(0)  # a REQ socket waiting for a lost reply can never send again
        self._sock = None
        raise TimeoutError(f"no reply from monitor {self.endpoint} within {self.timeout_s} s")

    @staticmethod
    def _decode(parts: Sequence[Any]) -> Optional[wire.Message]:
        hdr = wire.header(parts)
        if hdr["type"] == wire.TYPE_NONE:
            return None
        if hdr["type"] == TYPE_ERROR:
            raise wire.WireFormatError(f"monitor server: {hdr.get('message')}")
        return wire.decode(parts)

    def latest(self) -> Optional[wire.FrameBlock]:
        """The newest frame as a one-frame block, or None if the server has none yet."""
        msg = self._decode(self.request(REQUEST_LATEST))
        if msg is not None and not isinstance(msg, wire.FrameBlock):
            raise wire.WireFormatError(f"expected a frames reply, got {type(msg).__name__}")
        return msg

    def series(self) -> Optional[wire.SeriesStart]:
        """The open series' start message, or None when the IOC is idle."""
        msg = self._decode(self.request(REQUEST_START))
        if msg is not None and not isinstance(msg, wire.SeriesStart):
            raise wire.WireFormatError(f"expected a start reply, got {type(msg).__name__}")
        return msg

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close(0)
            self._sock = None

    def __enter__(self) -> "MonitorClient":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def channel_summary(block: wire.FrameBlock) -> list[dict[str, float]]:
    """Per-channel numbers of the block's last frame (what the console shows)."""
    frame = block.count - 1
    rows = []
    names = wire.SCALER_NAMES
    time_idx, all_event, all_good = names.index("TIME"), names.index("ALL_EVENT"), names.index("ALL_GOOD")
    for c in range(block.channels):
        sc = block.scalers[frame, c]
        live_s = float(sc[time_idx]) / wire.TICKS_PER_SECOND
        rows.append({
            "channel": c + 1,
            "total": float(np.sum(block.spectra[frame, c], dtype=np.float64)),
            "icr_cps": float(sc[all_event]) / live_s if live_s > 0 else 0.0,
            "good_cps": float(sc[all_good]) / live_s if live_s > 0 else 0.0,
            "dt_percent": float(block.dtpercent[frame, c]),
            "dt_factor": float(block.dtfactor[frame, c]),
        })
    return rows


def format_summary(block: wire.FrameBlock) -> list[str]:
    lines = [f"series {block.series_id}  frame {block.first_frame + block.count - 1}",
             f"{'ch':>3} {'total counts':>14} {'input cps':>12} {'good cps':>12} {'dead %':>8} {'DT factor':>10}"]
    for row in channel_summary(block):
        lines.append(f"{row['channel']:>3} {row['total']:>14.0f} {row['icr_cps']:>12.4g} {row['good_cps']:>12.4g} "
                     f"{row['dt_percent']:>8.2f} {row['dt_factor']:>10.4f}")
    return lines


class _Console:
    """Redraws the summary in place on a terminal; appends plain blocks otherwise."""

    def __init__(self, out: Any) -> None:
        self.out = out
        self.live = out.isatty() if hasattr(out, "isatty") else False
        self._lines = 0

    def show(self, lines: list[str]) -> None:
        if self.live and self._lines:
            self.out.write(f"\x1b[{self._lines}F")
        for line in lines:
            self.out.write(line + ("\x1b[K\n" if self.live else "\n"))
        if not self.live:
            self.out.write("\n")
        self.out.flush()
        self._lines = len(lines)


def _plotter() -> Any:
    """A callable that redraws the spectra with matplotlib, or None if it is not installed."""
    try:
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    plt.ion()
    fig, ax = plt.subplots()
    ax.set_xlabel("energy (eV)")
    ax.set_ylabel("counts")
    lines: dict[int, Any] = {}

    def draw(block: wire.FrameBlock, start: Optional[wire.SeriesStart]) -> None:
        frame = block.count - 1
        x = start.energy_axis() if start is not None and start.bins == block.bins else np.arange(block.bins)
        for c in range(block.channels):
            if c not in lines:
                (lines[c],) = ax.plot(x, block.spectra[frame, c], label=f"channel {c + 1}")
                ax.legend()
            else:
                lines[c].set_data(x, block.spectra[frame, c])
        ax.relim()
        ax.autoscale_view()
        ax.set_title(f"{block.series_id} frame {block.first_frame + frame}")
        plt.pause(0.001)

    return draw


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="xspress3-monitor", description=__doc__.splitlines()[0])
    p.add_argument("--connect", default=f"tcp://localhost:{wire.MONITOR_PORT}",
                   help="monitor endpoint of the IOC (default %(default)s)")
    p.add_argument("--interval", type=float, default=0.5, help="seconds between refreshes (default %(default)s)")
    p.add_argument("--timeout", type=float, default=1.0, help="seconds to wait for a reply (default %(default)s)")
    p.add_argument("--count", type=int, default=0, help="stop after this many refreshes (0 = run until Ctrl-C)")
    p.add_argument("--plot", action="store_true", help="also plot the spectra (needs matplotlib)")
    add_client_arguments(p)
    return p


def main(argv: Optional[list[str]] = None) -> int:
    """Exit status 0 if the server answered at least once, 1 if never, 2 for a missing --plot
    backend or unusable --keys."""
    args = _parser().parse_args(argv)
    logging.basicConfig(level="WARNING")
    draw = None
    if args.plot:
        draw = _plotter()
        if draw is None:
            sys.stderr.write("--plot needs matplotlib, which is not installed: pip install 'xspress3-ioc[plot]'\n")
            return 2
    try:
        keys = client_keys(args.keys, args.key_name)
    except StreamKeyError as exc:
        sys.stderr.write(f"xspress3-monitor: {exc}\n")
        return 2
    console = _Console(sys.stdout)
    answered = False
    done = 0
    try:
        with MonitorClient(args.connect, args.timeout, keys=keys) as client:
            while not args.count or done < args.count:
                t0 = time.monotonic()
                try:
                    block = client.latest()
                    answered = True
                    if block is None:
                        console.show([f"{args.connect}: no frame yet"])
                    else:
                        console.show(format_summary(block))
                        if draw is not None:
                            draw(block, client.series())
                except TimeoutError as exc:
                    console.show([f"{exc}; retrying"])
                done += 1
                if not args.count or done < args.count:
                    time.sleep(max(args.interval - (time.monotonic() - t0), 0.0))
    except KeyboardInterrupt:
        sys.stdout.write("\n")
    return 0 if answered else 1


if __name__ == "__main__":
    sys.exit(main())
