"""``xspress3-receive``: write the IOC's zmq stream into one HDF5 file per series.

Runs anywhere the stream port is reachable, independent of the IOC. Blocks are
decoded here (views of the received zmq frames, no copy) and written by an
`hdf5.HDF5Writer` thread, so receiving and writing overlap. Memory stays bounded
by the credit window this receiver announces: frames count against it until
written, so a slow disk makes the IOC wait (back-pressure) instead of this
process buffering. Frames are acknowledged as stored once flushed to the file,
which is what the IOC counts as sent; the file lists the frames it lacks.
"""
from __future__ import annotations

import argparse
import logging
import os
import re
import signal
import socket
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Callable, Optional, TextIO

import zmq

from . import layout, stream, wire
from .hdf5 import HDF5Writer
from .stream import StreamReceiver, StreamRefused
from .stream_keys import StreamKeyError, add_client_arguments, client_keys

log = logging.getLogger(__name__)

PROGRESS_INTERVAL_S = 0.25


def safe_file_stem(series_id: str) -> str:
    """A file name stem from a series id that cannot leave the output directory."""
    stem = re.sub(r"[^A-Za-z0-9._-]", "_", series_id).lstrip(".")
    return stem or "series"


def unused_path(directory: Path, stem: str, suffix: str = ".h5") -> Path:
    """``directory/stem.h5``, or ``stem-2.h5``, ``stem-3.h5``... if it exists (never overwrite)."""
    path = directory / f"{stem}{suffix}"
    n = 2
    while path.exists():
        path = directory / f"{stem}-{n}{suffix}"
        n += 1
    return path


#: The writer's queue is bounded by the credit window (frames count against it until
#: written), not by a frame count: offers never wait, so acknowledgements never stall.
WRITER_QUEUE_FRAMES = 1 << 30
OFFER_WAIT_S = 1.0
#: Flush (and so acknowledge) at least this often while frames arrive; an idle socket
#: flushes at once.
FLUSH_INTERVAL_S = 0.25
IDLE_S = 0.05
EXIT_REFUSED = 3


@dataclass
class _Open:
    """One series being received."""

    start: wire.SeriesStart
    writing: bool
    t0: float = field(default_factory=time.monotonic)
    frames: int = 0
    nbytes: int = 0
    next_frame: int = 0
    gaps: int = 0  # frames missing between consecutive blocks
    error: str = ""  # why the file is no longer being written
    path: str = ""
    stored_final: int = 0  # frames flushed before writing stopped on an error


class Session:
    """Turns stream messages into files and console output; usable without a socket."""

    def __init__(self, output: Optional[Path], compression: str = "None", quiet: bool = False,
                 out: TextIO = sys.stderr, on_stored: Optional[Callable[[int], None]] = None) -> None:
        """``on_stored``: called from the writer thread when more frames are flushed
        (the receiver loop wakes up and acknowledges them)."""
        self.output = output
        self.on_stored = on_stored
        self.compression = compression
        self.quiet = quiet
        self.out = out
        self.series_done = 0
        self.skipped_frames = 0  # frames of a series whose start was never seen
        self._current: Optional[_Open] = None
        self._last_progress = 0.0
        self._live = out.isatty() if hasattr(out, "isatty") else False
        self._warned_skip = ""
        self._writer: Optional[HDF5Writer] = None   # started with the first file

    def handle(self, msg: wire.Message) -> None:
        if isinstance(msg, wire.SeriesStart):
            self._on_start(msg)
        elif isinstance(msg, wire.FrameBlock):
            self._on_frames(msg)
        else:
            self._on_end(msg)

    def _on_start(self, start: wire.SeriesStart) -> None:
        cur = self._current
        if cur is not None and cur.start.series_id == start.series_id:
            return  # repeated for a receiver that joined late: already open
        if cur is not None:
            self._finish(cur, end=None, note="a new series started before its end message")
        writing, error, path = False, "", ""
        if self.output is not None:
            path = str(unused_path(self.output, safe_file_stem(start.series_id)))
            if self._writer is None:
                self._writer = HDF5Writer(max_queued_frames=WRITER_QUEUE_FRAMES, flush_interval_s=FLUSH_INTERVAL_S,
                                          on_stored=self.on_stored)
            try:
                self._writer.open_series(path, start, self.compression)
                writing = True
            except (OSError, ValueError) as exc:
                error, path = str(exc), ""
                self._say(f"series {start.series_id}: NOT WRITTEN: {error}")
        self._current = _Open(start, writing, error=error, path=path)
        self._say(f"series {start.series_id}: started"
                  + (f", writing {path}" if writing else "" if error else " (decode only)")
                  + (f", {start.frames_expected} frames expected" if start.frames_expected else ""))

    def _on_frames(self, block: wire.FrameBlock) -> None:
        cur = self._current
        if cur is None or block.series_id != cur.start.series_id:
            self.skipped_frames += block.count
            if self._warned_skip != block.series_id:
                self._warned_skip = block.series_id
                self._say(f"series {block.series_id}: skipping frames until its start message arrives")
            return
        if block.first_frame > cur.next_frame:
            cur.gaps += block.first_frame - cur.next_frame
            if cur.writing:
                self._writer.note_missing(cur.next_frame, block.first_frame - cur.next_frame)
        cur.next_frame = block.first_frame + block.count
        if cur.writing:
            while not self._writer.offer(block, OFFER_WAIT_S):
                pass   # the writer is behind: wait (back-pressure), never drop
            status = self._writer.status()
            if status.state == "error":
                self._stop_writing(cur, status.message)
        cur.frames += block.count
        cur.nbytes += sum(getattr(block, name).nbytes for name in wire.ARRAY_PARTS)
        self._progress(cur)

    def _stop_writing(self, cur: _Open, reason: str) -> None:
        """A write failed (disk full...): the writer closed the file incomplete; keep receiving."""
        cur.error = f"write failed: {reason}"
        self._say(f"series {cur.start.series_id}: {cur.error}; file closed incomplete")
        cur.writing = False
        self._writer.close_series(complete=False)
        cur.stored_final = self._writer.frames_stored

    def progress(self) -> Optional[wire.Ack]:
        """The acknowledgement for the open series: frames released from memory, stored
        in the file and given up on (None without an open series)."""
        cur = self._current
        if cur is None:
            return None
        sid = cur.start.series_id
        if cur.writing:
            status = self._writer.status()
            failed = status.frames_dropped
            return wire.Ack(sid, status.frames_written + failed, self._writer.frames_stored, failed,
                            status.message if failed else "")
        if cur.error:
            return wire.Ack(sid, cur.frames, cur.stored_final, cur.frames - cur.stored_final, cur.error)
        return wire.Ack(sid, cur.frames, cur.frames)   # decode only: having them is the job

    def idle(self) -> None:
        """Nothing arrived for a moment: flush now so the IOC gets its acknowledgement."""
        if self._current is not None and self._current.writing:
            self._writer.request_flush()

    def _on_end(self, end: wire.SeriesEnd) -> None:
        cur = self._current
        if cur is None or end.series_id != cur.start.series_id:
            log.info("end of series %s whose start was not received; ignored", end.series_id)
            return
        self._finish(cur, end=end, note="")

    def _finish(self, cur: _Open, end: Optional[wire.SeriesEnd], note: str) -> None:
        """Close the file; complete only if the end came and nothing is known missing."""
        missing = cur.gaps
        if end is not None:
            missing = max(missing, end.frames_sent - cur.frames) + end.frames_lost
            total = end.frames_sent + end.frames_lost   # every frame the IOC read in this series
            if cur.writing and total > cur.next_frame:
                self._writer.note_missing(cur.next_frame, total - cur.next_frame)
        complete = end is not None and missing == 0 and not cur.error
        if cur.writing:
            result = self._writer.close_series(complete=complete)
            complete = result.complete
            if result.error:
                cur.error = result.error
        self._current = None
        self.series_done += 1
        dt = max(time.monotonic() - cur.t0, 1e-9)
        lost = ""
        if end is not None and end.frames_lost:
            lost = f", sender lost {end.frames_lost} ({end.lost_reason})"
        if cur.gaps:
            lost += f", {cur.gaps} frames missing in the sequence"
        where = (f" -> {cur.path}" if cur.path else "") + (f"; {cur.error}" if cur.error else "")
        state = "complete" if complete else "INCOMPLETE"
        self._clear_live()
        self._say(f"series {cur.start.series_id}: {cur.frames} frames in {dt:.2f} s "
                  f"({cur.frames / dt:.0f} frames/s, {cur.nbytes / dt / 1e6:.1f} MB/s){lost}{where} "
                  f"[{state}{', ' + end.final_state if end else ''}]" + (f"; {note}" if note else ""))

    def close(self, reason: str) -> None:
        """Close an open series as incomplete (interrupted) and stop the writer thread."""
        if self._current is not None:
            self._finish(self._current, end=None, note=reason)
        if self._writer is not None:
            self._writer.close()
            self._writer = None

    def _progress(self, cur: _Open) -> None:
        if self.quiet or not self._live:
            return
        now = time.monotonic()
        if now - self._last_progress < PROGRESS_INTERVAL_S:
            return
        self._last_progress = now
        dt = max(now - cur.t0, 1e-9)
        of = f"/{cur.start.frames_expected}" if cur.start.frames_expected else ""
        self.out.write(f"\r{cur.start.series_id}: {cur.frames}{of} frames, {cur.frames / dt:.0f} frames/s, "
                       f"{cur.nbytes / dt / 1e6:.1f} MB/s, missing {cur.gaps}\x1b[K")
        self.out.flush()

    def _clear_live(self) -> None:
        if self._live and not self.quiet:
            self.out.write("\r\x1b[K")

    def _say(self, line: str) -> None:
        self._clear_live()
        self.out.write(line + "\n")
        self.out.flush()


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="xspress3-receive", description=__doc__.splitlines()[0])
    p.add_argument("--connect", default=f"tcp://localhost:{wire.DEFAULT_PORT}",
                   help="stream endpoint of the IOC (default %(default)s)")
    p.add_argument("--output", type=Path, help="directory for the HDF5 files (one per series)")
    p.add_argument("--compression", default="None", choices=layout.COMPRESSIONS,
                   help="spectra compression (default %(default)s)")
    p.add_argument("--decode-only", action="store_true", help="decode and count, write no file (benchmarks)")
    p.add_argument("--max-series", type=int, default=0, help="exit after this many series (0 = run forever)")
    p.add_argument("--window-mb", type=float, default=wire.DEFAULT_WINDOW_BYTES / (1 << 20),
                   help="frame memory the IOC may fill here before it waits (credit), MiB (default %(default)g)")
    p.add_argument("--no-shared-memory", dest="shared", action="store_false",
                   help="take every frame over the socket, even when the IOC offers its frame memory "
                        "on this host (shared memory, no copy; the default where it can be mapped)")
    p.add_argument("--quiet", action="store_true", help="no live progress line")
    p.add_argument("--log-level", default="WARNING", help="logging level (default %(default)s)")
    add_client_arguments(p)
    return p


def main(argv: Optional[list[str]] = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if not args.decode_only:
        if args.output is None:
            _parser().error("--output DIR is required unless --decode-only")
        if not args.output.is_dir():
            _parser().error(f"--output {args.output} is not a directory")
    try:
        keys = client_keys(args.keys, args.key_name)
    except StreamKeyError as exc:
        _parser().error(str(exc))
    stop = threading.Event()

    def on_signal(signum: int, frame: Optional[FrameType]) -> None:
        stop.set()

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    # The writer thread wakes the loop when it flushed, so the acknowledgement leaves at once.
    waker = stream.Waker()
    session = Session(None if args.decode_only else args.output, args.compression, args.quiet,
                      on_stored=lambda frames: waker.wake())
    sys.stderr.write(f"xspress3-receive: listening on {args.connect}\n")
    sys.stderr.flush()
    code = 0
    with StreamReceiver(args.connect, auto_ack=False, window_bytes=int(args.window_mb * (1 << 20)),
                        name=f"xspress3-receive {socket.gethostname()}:{os.getpid()}",
                        on_sync=lambda series_id: session.idle(), keys=keys,
                        shared=args.shared) as receiver:
        try:
            code = _receive_loop(receiver, session, stop, waker, args.max_series)
        except StreamRefused as exc:
            sys.stderr.write(f"xspress3-receive: {exc}\n")
            code = EXIT_REFUSED
        finally:
            session.close("interrupted" if stop.is_set() else "receiver stopped")
            waker.close()
    if session.skipped_frames:
        sys.stderr.write(f"skipped {session.skipped_frames} frames that arrived without their start message\n")
    return code


def _receive_loop(receiver: StreamReceiver, session: Session, stop: threading.Event,
                  waker: stream.Waker, max_series: int) -> int:
    """Receive, hand to the session and acknowledge until stopped or ``max_series`` done."""
    poller = zmq.Poller()
    sock, mon = receiver.sockets
    poller.register(sock, zmq.POLLIN)
    poller.register(mon, zmq.POLLIN)
    poller.register(waker.socket, zmq.POLLIN)
    while not stop.is_set():
        wait = stream.ACK_INTERVAL_S if receiver.ack_pending or receiver.shared_pending else IDLE_S
        events = dict(poller.poll(int(wait * 1000)))
        waker.woke(events)
        if mon in events:
            receiver.service()
        got = False
        while True:
            msg = receiver.recv(timeout=0)
            if msg is None:
                break
            got = True
            session.handle(msg)
            _acknowledge(receiver, session)
            if max_series and session.series_done >= max_series:
                return 0
        if not got and not events:
            session.idle()
        _acknowledge(receiver, session)
        if not got:
            receiver.send_pending_ack()   # quiet: the credit goes back now
    return 0


def _acknowledge(receiver: StreamReceiver, session: Session) -> None:
    ack = session.progress()
    if ack is not None:
        receiver.ack(ack)


if __name__ == "__main__":
    sys.exit(main())
