"""zmq sender (IOC) and receiver for the stream defined in ``wire.py``.

One receiver holds the stream and gets every frame. The IOC binds a ROUTER
socket, receivers connect DEALER sockets and say ``hello``; the first one holds
the stream (``welcome``), any other is told ``refused`` and gets nothing, so no
second client can take frames from the first. Frames count as sent only when the
holder acknowledges them stored (``ack``), and the holder's ``window_bytes`` caps
the frame bytes it may have in flight (credit), which bounds its memory:
db_docs/stream.md describes the flow with sample messages.

The sender owns one thread that does every zmq call (zmq sockets are not
thread-safe); producers only touch a bounded in-memory queue, limited in frames.

Loss policy, so that nothing disappears without being counted:

* no receiver holds the stream: blocks are dropped at once and counted ("no receiver");
* the receiver is slow: its window fills, the sender waits (the receiver sets the
  pace, logged and reported), the queue fills and ``offer`` returns False, which is
  the producer's back-pressure signal;
* the receiver goes away: what it had not acknowledged stored is counted ("receiver gone");
* ``end_series`` waits for the queue to drain and the receiver to acknowledge; what is
  still queued at its timeout is counted ("end timeout"), what was sent but not
  acknowledged ("not confirmed by receiver");
* the receiver reports frames it cannot store (disk full...): "receiver could not store".
"""
from __future__ import annotations

import collections
import dataclasses
import logging
import os
import socket
import threading
import time
import uuid
from dataclasses import dataclass, field
from typing import Callable, Iterator, Optional, Union

import zmq
from zmq.utils.monitor import recv_monitor_message

from . import wire
from .shared_frames import (SharedFramesError, SharedMaps, SharedPool, directory_for, pid_namespace,
                            process_alive)

log = logging.getLogger(__name__)

REASON_NO_RECEIVER = "no receiver"
REASON_END_TIMEOUT = "end timeout"
REASON_SEND_TIMEOUT = "send timeout"
REASON_CLOSED = "sender closed"
REASON_RECEIVER_GONE = "receiver gone"
REASON_UNCONFIRMED = "not confirmed by receiver"
REASON_RECEIVER_FAILED = "receiver could not store"

#: Losses the sender decides itself (not back-pressure the producer gave up on)
OWN_REASONS = (REASON_NO_RECEIVER, REASON_END_TIMEOUT, REASON_SEND_TIMEOUT, REASON_CLOSED,
               REASON_RECEIVER_GONE, REASON_UNCONFIRMED, REASON_RECEIVER_FAILED)

_POLL_MS = 100
#: How often the blocks of receivers that went away are checked for release
ORPHAN_CHECK_S = 0.5
#: Credit-only acks go out at most this often (each costs the IOC a decode).
ACK_INTERVAL_S = 0.005
#: Waiting this long for credit in a series is logged as "the receiver sets the pace".
PACE_LOG_S = 0.05
# libzmq (4.3.x) aborts the process when a socket is closed with linger 0 while a
# peer disconnects in the middle of a multipart message; a short linger avoids it and
# costs nothing, since the shared context is never terminated here.
_MIN_LINGER_MS = 200


def _keepalive(sock: zmq.Socket) -> None:
    """TCP keepalive, so a peer host that vanished without closing is noticed when idle.

    (zmq heartbeats are not used: a receiver busy writing stops reading its socket
    and would be disconnected as dead.)
    """
    sock.setsockopt(zmq.TCP_KEEPALIVE, 1)
    sock.setsockopt(zmq.TCP_KEEPALIVE_IDLE, 10)
    sock.setsockopt(zmq.TCP_KEEPALIVE_INTVL, 5)
    sock.setsockopt(zmq.TCP_KEEPALIVE_CNT, 3)


def sender_socket(ctx: zmq.Context, sndhwm: int) -> zmq.Socket:
    """The IOC's stream socket (not yet bound): the one place it is made."""
    sock = ctx.socket(zmq.ROUTER)
    sock.setsockopt(zmq.ROUTER_MANDATORY, 1)   # EAGAIN when full, EHOSTUNREACH when gone: never a silent drop
    sock.setsockopt(zmq.ROUTER_HANDOVER, 1)    # a receiver reconnecting under its id replaces its old link
    sock.setsockopt(zmq.SNDHWM, sndhwm)
    sock.setsockopt(zmq.LINGER, 0)
    _keepalive(sock)
    return sock


def receiver_socket(ctx: zmq.Context, rcvhwm: int, keys=None) -> zmq.Socket:
    """A receiver's stream socket (not yet connected): the one place it is made.
    ``keys``: stream_keys.ClientKeys (CURVE) or None."""
    sock = ctx.socket(zmq.DEALER)
    if keys is not None:
        keys.secure(sock)
    sock.setsockopt(zmq.ROUTING_ID, b"rx-" + uuid.uuid4().hex.encode("ascii"))
    sock.setsockopt(zmq.RCVHWM, rcvhwm)
    sock.setsockopt(zmq.SNDTIMEO, 1000)
    sock.setsockopt(zmq.LINGER, 0)
    _keepalive(sock)
    return sock


class StreamRefused(RuntimeError):
    """The IOC refused this receiver: another one holds the stream."""


@dataclass
class _Series:
    start: wire.SeriesStart
    frames_sent: int = 0   # frames receivers acknowledged stored
    frames_lost: int = 0
    lost_reasons: dict[str, int] = field(default_factory=dict)
    paced_s: float = 0.0   # time spent waiting for the receiver's credit
    pace_logged: bool = False


@dataclass
class _Holder:
    """The receiver holding the stream, as the sender thread sees it."""

    identity: bytes
    fd: int
    name: str
    window_bytes: int
    series_id: str = ""    # series whose start message it got
    sent: int = 0          # frames of that series sent to it
    released: int = 0      # cumulative, from its acks
    stored: int = 0
    failed: int = 0
    in_flight: collections.deque = field(default_factory=collections.deque)   # [frames, bytes per frame]
    in_flight_bytes: int = 0
    shared: bool = False   # it maps our frame memory (wire.Shared): spectra go by reference
    pid: int = 0           # its process (wire.Shared), for the leases it may hold after a drop
    #: (lease, block) of blocks sent by reference, oldest first, kept (so their memory is
    #: not reused) until the receiver's ack says it released every lease below that one
    leases: collections.deque = field(default_factory=collections.deque)
    next_lease: int = 0

    @property
    def unsettled(self) -> int:
        """Frames sent but neither stored nor given up by the receiver."""
        return self.sent - self.stored - self.failed

    def new_series(self, series_id: str) -> None:
        self.series_id = series_id
        self.sent = self.released = self.stored = self.failed = 0
        self.in_flight.clear()
        self.in_flight_bytes = 0

    def release(self, frames: int) -> None:
        while frames > 0 and self.in_flight:
            entry = self.in_flight[0]
            take = min(frames, entry[0])
            entry[0] -= take
            self.in_flight_bytes -= take * entry[1]
            frames -= take
            if entry[0] == 0:
                self.in_flight.popleft()

    def release_leases(self, released: int) -> None:
        """Leases 0.. released-1 are released by the receiver."""
        while self.leases and self.leases[0][0] < released:
            self.leases.popleft()


@dataclass
class _EndRequest:
    final_state: str
    deadline: float  # monotonic time by which end_series wants to return
    done: threading.Event = field(default_factory=threading.Event)
    result: Optional[wire.SeriesEnd] = None


_Item = Union[wire.SeriesStart, wire.FrameBlock, _EndRequest]


class Waker:
    """Wakes a thread waiting in a zmq poll from another thread: a socket pair whose
    read end is registered with the poller. Writes never block (a full buffer means a
    wake-up is pending already)."""

    def __init__(self) -> None:
        self.socket, self._write = socket.socketpair()
        self.socket.setblocking(False)
        self._write.setblocking(False)

    def wake(self) -> None:
        try:
            self._write.send(b"x")
        except BlockingIOError:
            return
        except OSError as exc:  # closed: its owner is shutting down
            log.debug("wake-up after close: %s", exc)

    def woke(self, events: dict) -> bool:
        """True if a poll's events (socket or fd keys) include the wake-up; drains it."""
        if self.socket not in events and self.socket.fileno() not in events:
            return False
        while True:
            try:
                if not self.socket.recv(4096):
                    return True
            except BlockingIOError:
                return True   # nothing left: the socket is non-blocking

    def close(self) -> None:
        self.socket.close()
        self._write.close()


class StreamSender:
    """Publishes series over a zmq ROUTER socket to the one receiver holding the stream, from
    its own thread (a consumer.SeriesConsumer)."""

    name = "stream"

    def __init__(
        self,
        endpoint: str = f"tcp://*:{wire.DEFAULT_PORT}",
        max_queued_frames: int = 4096,
        sndhwm: int = 4,
        send_timeout_s: Optional[float] = None,
        stall_timeout: float = 5.0,
        end_timeout: float = 10.0,
        keys=None,
        shared_dir: Optional[str] = None,
    ) -> None:
        """``endpoint``: any zmq endpoint to bind. For a receiver on the IOC's own host,
        ``ipc://PATH`` (a Unix socket) costs the IOC 5-30 % less CPU per frame than
        TCP over loopback (64 KiB frames in 128-frame blocks, five interleaved pairs of
        runs of the sender process: 12.6-15.8 against 14.7-22.5 us/frame), as the
        kernel skips the TCP/IP path; the frames are copied into the kernel once
        either way, and that copy is about half of what sending costs.
        ``send_timeout_s``: how long one message may wait for a connected but stalled
        receiver before it is counted lost; None waits as long as a receiver is connected.
        ``sndhwm``: messages zmq may hold beyond our own queue. A few keep the socket
        busy; each is a whole block (up to 8 MiB), so 16 instead of 4 only added
        ~85 MB to the IOC's peak memory at full rate, at the same frame rate.
        ``stall_timeout``: how long a producer keeps offering a refused block before
        counting it lost (consumer.SeriesConsumer); ``end_timeout``: how long
        ``end_series`` waits for the queue to drain unless told otherwise.
        ``shared_dir``: where `start` makes the frame memory it offers a receiver on
        this host (shared_frames.py; the readout allocates its blocks there through
        ``shared_pool``); None: /dev/shm if writable; "": never."""
        if max_queued_frames < 1:
            raise ValueError("max_queued_frames must be >= 1")
        self._bind_endpoint = endpoint
        self.keys = keys  # stream_keys.ServerKeys (CURVE) or None; may be set before start()
        self.max_queued_frames = max_queued_frames
        self.sndhwm = sndhwm
        self.send_timeout_s = send_timeout_s
        self.stall_timeout = stall_timeout
        self.end_timeout = end_timeout
        self._cond = threading.Condition()
        self._queue: collections.deque[_Item] = collections.deque()
        self._queued_frames = 0
        self._series: Optional[_Series] = None
        self._last: Optional[_Series] = None
        self._receivers = 0
        self._refused = 0
        self._holder: Optional[_Holder] = None   # sender thread only
        self._abort_pending = False  # end timeout: drop what is queued
        self._stop = False
        self._thread: Optional[threading.Thread] = None
        self._ready = threading.Event()
        self._start_error: Optional[BaseException] = None
        self._endpoint = ""
        self._linger_ms = 1000
        self._waker = Waker()
        self._shared_dir = shared_dir
        #: (receiver pid, leases) of holders that went away: kept while that process lives
        self._orphans: list[tuple[int, collections.deque]] = []
        self._orphans_checked = 0.0
        #: the frame memory offered to a receiver on this host (made by start), or None
        self.shared_pool: Optional[SharedPool] = None

    # ---- lifecycle -------------------------------------------------------------
    def start(self, timeout: float = 10.0) -> None:
        """Bind and start the sender thread; raises if the endpoint cannot be bound."""
        if self._thread is not None:
            raise RuntimeError("StreamSender already started")
        self._thread = threading.Thread(target=self._run, name="xspress3-stream-sender", daemon=True)
        self._thread.start()
        if not self._ready.wait(timeout):
            raise TimeoutError("stream sender thread did not start")
        if self._start_error is not None:
            error, self._start_error = self._start_error, None
            self._thread.join()
            self._thread = None  # start() may be tried again (e.g. once the port is free)
            self._ready.clear()
            raise OSError(f"cannot bind stream socket to {self._bind_endpoint}: {error}") from error
        log.info("stream sender bound to %s", self._endpoint)
        directory = directory_for(self._shared_dir)
        if directory:
            try:
                self.shared_pool = SharedPool(directory)
            except OSError as exc:   # the stream works without it, by copy
                log.warning("stream: no shared frame memory (%s); frames go by copy", exc)

    def close(self, linger: float = 1.0) -> None:
        """Stop the thread; queued blocks are counted lost ("sender closed").

        ``linger``: seconds zmq keeps trying to deliver what it already holds
        (at least 0.2 s, see _MIN_LINGER_MS).
        """
        with self._cond:
            self._stop = True
            self._linger_ms = max(int(linger * 1000), _MIN_LINGER_MS)
            self._cond.notify_all()
        self._wake()
        if self._thread is not None:
            self._thread.join()
        self._waker.close()
        if self.shared_pool is not None:
            self.shared_pool.close()

    def __enter__(self) -> "StreamSender":
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ---- producer API (any thread) ---------------------------------------------
    @property
    def endpoint(self) -> str:
        """The bound endpoint (with the real port when bound to ``*`` or port 0)."""
        return self._endpoint

    @property
    def receivers(self) -> int:
        """Receivers holding the stream (0 or 1): those that get frames."""
        return self._receivers

    @property
    def receiver_shared(self) -> bool:
        """The receiver holding the stream maps our frame memory (spectra go by reference)."""
        holder = self._holder
        return holder is not None and holder.shared

    @property
    def refused(self) -> int:
        """Receivers refused since start because another one held the stream."""
        return self._refused

    def wait_for_receivers(self, count: int = 1, timeout: float = 10.0) -> bool:
        """Block until at least ``count`` receivers are connected; False on timeout."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while self._receivers < count:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._cond.wait(left)
        return True

    def begin_series(self, start: wire.SeriesStart) -> None:
        """Open a series; its start message goes out before any of its blocks."""
        start.validate()
        with self._cond:
            self._check_running()
            if self._series is not None:
                raise RuntimeError(f"series {self._series.start.series_id} still open; call end_series first")
            self._series = _Series(start)
            self._abort_pending = False
            self._queue.append(start)
            self._cond.notify_all()
        self._wake()

    def offer(self, block: wire.FrameBlock, timeout: float = 0.0) -> bool:
        """Queue a block for sending.

        True: the sender took the block (queued, or counted lost at once because no
        receiver is connected). False: no room within ``timeout``; the caller may
        retry or call ``count_lost``. A block larger than the whole queue is taken
        when the queue is empty.
        """
        n = block.count
        with self._cond:
            self._check_running()
            series = self._series
            if series is None:
                raise RuntimeError("offer() outside a series; call begin_series first")
            if self._receivers == 0:
                self._count_lost_locked(n, REASON_NO_RECEIVER)
                return True
            deadline = time.monotonic() + timeout
            while self._queued_frames and self._queued_frames + n > self.max_queued_frames:
                left = deadline - time.monotonic()
                if left <= 0 or self._stop:
                    return False
                self._cond.wait(left)
            if self._series is not series:
                raise RuntimeError("the series ended while waiting for room")
            idle = not self._queue  # only an idle sender thread needs a wake-up
            self._queue.append(block)
            self._queued_frames += n
        if idle:
            self._wake()
        return True

    def count_lost(self, n: int, reason: str) -> None:
        """Record frames the caller chose not to send (e.g. after offer returned False)."""
        with self._cond:
            if self._series is None:
                raise RuntimeError("count_lost() outside a series")
            self._count_lost_locked(n, reason)

    def end_series(self, final_state: str = "done", timeout: Optional[float] = None) -> wire.SeriesEnd:
        """Drain the queue (up to ``timeout``, default ``end_timeout``), send the end
        message and return it."""
        if timeout is None:
            timeout = self.end_timeout
        request = _EndRequest(final_state, time.monotonic() + timeout)
        with self._cond:
            if self._series is None:
                raise RuntimeError("end_series() without an open series")
            self._queue.append(request)
            self._cond.notify_all()
        self._wake()
        if not request.done.wait(timeout):
            log.warning("stream queue not drained within %.1f s; dropping the rest", timeout)
            with self._cond:
                self._abort_pending = True
                self._cond.notify_all()
            self._wake()
            request.done.wait()
        assert request.result is not None
        return request.result

    @property
    def series_id(self) -> str:
        series = self._series
        return series.start.series_id if series else ""

    @property
    def frames_sent(self) -> int:
        """Frames the receiver acknowledged stored in the open series (or the last one)."""
        series = self._series or self._last
        return series.frames_sent if series else 0

    @property
    def frames_lost(self) -> int:
        """Frames counted lost in the open series (or the last one)."""
        series = self._series or self._last
        return series.frames_lost if series else 0

    @property
    def lost_reasons(self) -> dict[str, int]:
        """Lost frames by reason in the open series (or the last one)."""
        with self._cond:
            series = self._series or self._last
            return dict(series.lost_reasons) if series else {}

    @property
    def paced_s(self) -> float:
        """Seconds the open (or last) series waited for the receiver's credit: > 0 means the
        receiver set the pace."""
        series = self._series or self._last
        return series.paced_s if series else 0.0

    @property
    def queued_frames(self) -> int:
        return self._queued_frames

    def losses(self) -> dict[str, int]:
        """Frames of the open series the producer gave up on (count_lost), by reason."""
        with self._cond:
            series = self._series
            if series is None:
                return {}
            return {r: n for r, n in series.lost_reasons.items() if r not in OWN_REASONS}

    # ---- internals -----------------------------------------------------------
    def _check_running(self) -> None:
        if self._thread is None or self._stop or not self._thread.is_alive():
            raise RuntimeError("StreamSender is not running")

    def _count_lost_locked(self, n: int, reason: str) -> None:
        series = self._series
        if series is None or n <= 0:
            return
        series.frames_lost += n
        series.lost_reasons[reason] = series.lost_reasons.get(reason, 0) + n

    def _wake(self) -> None:
        """Interrupt the sender thread's poll."""
        self._waker.wake()

    def _run(self) -> None:
        ctx = zmq.Context.instance()
        sock = sender_socket(ctx, self.sndhwm)
        # A holder is tracked by its file descriptor (frame property SRCFD of its hello),
        # which is what DISCONNECTED carries.
        mon = sock.get_monitor_socket(zmq.EVENT_DISCONNECTED)
        try:
            if self.keys is not None:
                self.keys.secure(sock)
            sock.bind(self._bind_endpoint)
            self._endpoint = sock.getsockopt_string(zmq.LAST_ENDPOINT)
        except zmq.ZMQError as exc:
            sock.disable_monitor()
            mon.close(0)
            sock.close(0)
            self._start_error = exc
            self._ready.set()
            return
        self._ready.set()
        self._sock, self._mon = sock, mon
        poller = zmq.Poller()
        poller.register(mon, zmq.POLLIN)
        poller.register(sock, zmq.POLLIN)
        poller.register(self._waker.socket, zmq.POLLIN)
        self._poller = poller
        try:
            self._loop()
        except Exception:
            log.exception("stream sender thread failed")
            raise
        finally:
            with self._cond:
                self._stop = True
                self._drop_queue_locked(REASON_CLOSED)
                self._cond.notify_all()
            sock.setsockopt(zmq.LINGER, self._linger_ms)
            sock.disable_monitor()
            mon.close(0)
            sock.close()

    def _loop(self) -> None:
        while True:
            with self._cond:
                if self._stop:
                    return
                item = self._queue[0] if self._queue else None
            if item is None:
                self._poll_events(_POLL_MS)
                continue
            self._handle(item)
            with self._cond:
                if self._queue and self._queue[0] is item:
                    self._queue.popleft()
                    if isinstance(item, wire.FrameBlock):
                        self._queued_frames -= item.count
                self._cond.notify_all()

    def _poll_events(self, timeout_ms: int, want_send: bool = False) -> None:
        if want_send:
            self._poller.modify(self._sock, zmq.POLLIN | zmq.POLLOUT)
        try:
            events = dict(self._poller.poll(timeout_ms))
        finally:
            if want_send:
                self._poller.modify(self._sock, zmq.POLLIN)
        self._waker.woke(events)
        if self._sock in events:
            self._read_incoming()
        if self._mon in events:
            self._read_monitor()
        if self._orphans and time.monotonic() - self._orphans_checked >= ORPHAN_CHECK_S:
            self._orphans_checked = time.monotonic()
            self._orphans = [(pid, leases) for pid, leases in self._orphans if process_alive(pid)]

    def _read_monitor(self) -> None:
        while self._mon.poll(0):
            event = recv_monitor_message(self._mon)
            holder = self._holder
            if event["event"] == zmq.EVENT_DISCONNECTED and holder is not None and event["value"] == holder.fd:
                self._drop_holder("disconnected")

    def _read_incoming(self) -> None:
        """Session messages from receivers: hello (take the stream or be refused) and ack."""
        while self._sock.getsockopt(zmq.EVENTS) & zmq.POLLIN:
            parts = self._sock.recv_multipart(zmq.NOBLOCK, copy=False)
            identity, body = parts[0].bytes, parts[1:]
            try:
                msg = wire.decode_control(body)
            except wire.WireFormatError as exc:
                log.error("stream: malformed message from a receiver dropped: %s", exc)
                continue
            if isinstance(msg, wire.Hello):
                self._on_hello(identity, parts[-1], msg)
            elif isinstance(msg, (wire.Ack, wire.Shared)):
                holder = self._holder
                if holder is None or holder.identity != identity:
                    continue
                if isinstance(msg, wire.Ack):
                    self._on_ack(holder, msg)
                else:
                    self._on_shared(holder, msg)
            else:
                log.error("stream: a receiver sent %s, which only the IOC sends", type(msg).__name__)

    def _on_hello(self, identity: bytes, frame: zmq.Frame, hello: wire.Hello) -> None:
        fd = frame.get(zmq.SRCFD)
        try:
            address = frame.get("Peer-Address")
        except zmq.ZMQError:   # transports without a peer address (ipc, inproc)
            address = "?"
        name = f"{hello.receiver or 'receiver'} at {address}"
        holder = self._holder
        if holder is not None and holder.identity != identity:
            reason = (f"another receiver ({holder.name}) holds the stream; "
                      "only one receiver gets the frames")
            log.warning("stream: refused %s: %s", name, reason)
            self._refused += 1
            self._send_control(identity, wire.Refused(reason))
            return
        if holder is not None:   # the holder reconnected under its id (ROUTER_HANDOVER)
            log.info("stream: %s reconnected", holder.name)
            holder.fd = fd
            return
        window = max(int(hello.window_bytes), 1)
        self._holder = _Holder(identity, fd, name, window)
        log.info("stream: %s holds the stream (window %.1f MiB)", name, window / (1 << 20))
        with self._cond:
            self._receivers = 1
            self._cond.notify_all()
        pool = self.shared_pool
        offer = (pool.directory, pool.probe, pool.token) if pool is not None else ("", "", "")
        self._send_control(identity, wire.Welcome(window, *offer))

    def _on_shared(self, holder: _Holder, msg: wire.Shared) -> None:
        if not msg.token:
            if holder.shared:
                log.warning("stream: %s cannot map the frame memory any more: frames go by copy", holder.name)
            holder.shared = False
            return
        if self.shared_pool is None or msg.token != self.shared_pool.token:
            return
        own = pid_namespace()
        if not msg.pid or msg.pid_namespace != own:
            # its pid would not tell us when it is gone: it could still read what we reuse
            log.info("stream: %s maps the frame memory but runs in another pid namespace: "
                     "frames go by copy", holder.name)
            return
        holder.shared, holder.pid = True, msg.pid
        log.info("stream: %s maps the frame memory: spectra go by shared memory", holder.name)

    def _on_ack(self, holder: _Holder, ack: wire.Ack) -> None:
        holder.release_leases(ack.shared_released)   # over the connection, whatever the series
        if ack.series_id != holder.series_id:
            return   # a late ack of an earlier series: that series is settled already
        holder.release(ack.released - holder.released)
        holder.released = max(holder.released, ack.released)
        stored = max(ack.stored - holder.stored, 0)
        failed = max(ack.failed - holder.failed, 0)
        holder.stored += stored
        holder.failed += failed
        if failed:
            log.error("stream: %s could not store %d frames: %s", holder.name, failed, ack.failed_reason)
        with self._cond:
            series = self._series
            if series is None or series.start.series_id != ack.series_id:
                return
            series.frames_sent += stored
            self._count_lost_locked(failed, REASON_RECEIVER_FAILED)
            self._cond.notify_all()

    def _drop_holder(self, why: str) -> None:
        """The holder is gone: what it had not acknowledged is lost, counted here."""
        holder, self._holder = self._holder, None
        if holder is None:
            return
        lost = holder.unsettled
        if holder.leases:   # a process that lost its socket may still read these blocks
            self._orphans.append((holder.pid, holder.leases))
            log.info("stream: %d blocks %s may still read stay reserved until its process %d ends",
                     len(holder.leases), holder.name, holder.pid)
        with self._cond:
            self._receivers = 0
            series = self._series
            if series is not None and series.start.series_id == holder.series_id:
                self._count_lost_locked(lost, REASON_RECEIVER_GONE)
            else:
                lost = 0
            self._cond.notify_all()
        log.warning("stream: %s gone (%s)%s", holder.name, why,
                    f"; {lost} frames it had not stored counted lost" if lost else "")

    def _send_control(self, identity: bytes, msg: wire.Control) -> None:
        try:
            self._sock.send_multipart([identity, *wire.encode_control(msg)], zmq.NOBLOCK)
        except zmq.ZMQError as exc:   # full or gone: the peer learns nothing, the IOC logged it
            log.warning("stream: %s not delivered: %s", type(msg).__name__.lower(), exc)

    def _send(self, holder: _Holder, parts: list, deadline: Optional[float],
              abortable: bool = False) -> Optional[str]:
        """Send one message to the holder; returns None when sent, else the reason it was not.

        ``abortable`` messages (frames) give up when end_series runs out of time.
        """
        while True:
            if self._holder is not holder:
                return REASON_RECEIVER_GONE
            try:
                self._sock.send_multipart([holder.identity, *parts], flags=zmq.NOBLOCK, copy=False)
                return None
            except zmq.Again:
                log.debug("receiver queue full; waiting")  # back-pressure: wait below
            except zmq.ZMQError as exc:
                if exc.errno != zmq.EHOSTUNREACH:
                    raise
                self._drop_holder("unreachable")
                return REASON_RECEIVER_GONE
            reason = self._should_give_up(deadline, abortable)
            if reason:
                return reason
            self._poll_events(_POLL_MS, want_send=True)

    def _should_give_up(self, deadline: Optional[float], abortable: bool) -> Optional[str]:
        with self._cond:
            if self._stop:
                return REASON_CLOSED
            if self._abort_pending and abortable:
                return REASON_END_TIMEOUT
        if deadline is not None and time.monotonic() > deadline:
            return REASON_SEND_TIMEOUT
        return None

    def _wait_for_credit(self, holder: _Holder, series: _Series, nbytes: int,
                         deadline: Optional[float]) -> Optional[str]:
        """Wait until the holder's window has room for ``nbytes`` (any block fits an
        empty window); the time waited is the receiver setting the pace."""
        t0 = None
        try:
            while holder.in_flight_bytes and holder.in_flight_bytes + nbytes > holder.window_bytes:
                if self._holder is not holder:
                    return REASON_RECEIVER_GONE
                reason = self._should_give_up(deadline, abortable=True)
                if reason:
                    return reason
                if t0 is None:
                    t0 = time.monotonic()
                self._poll_events(_POLL_MS)
            return None
        finally:
            if t0 is not None:
                waited = time.monotonic() - t0
                with self._cond:
                    series.paced_s += waited
                if series.paced_s >= PACE_LOG_S and not series.pace_logged:
                    series.pace_logged = True
                    log.info("stream: the receiver sets the pace (its %.1f MiB window full, %.3f s waited "
                             "so far); the readout waits for it", holder.window_bytes / (1 << 20),
                             series.paced_s)

    def _handle(self, item: _Item) -> None:
        series = self._series
        if isinstance(item, wire.SeriesStart):
            holder = self._holder
            if holder is not None and series is not None:
                self._send_start(holder, series)
            return
        if isinstance(item, wire.FrameBlock):
            assert series is not None
            with self._cond:
                aborting = self._abort_pending
            reason = REASON_END_TIMEOUT if aborting else self._send_block(item, series)
            if reason is not None:
                with self._cond:
                    self._count_lost_locked(item.count, reason)
            return
        self._finish(item, series)

    def _send_block(self, block: wire.FrameBlock, series: _Series) -> Optional[str]:
        holder = self._holder
        if holder is None:
            return REASON_NO_RECEIVER
        deadline = None if self.send_timeout_s is None else time.monotonic() + self.send_timeout_s
        if holder.series_id != series.start.series_id:
            reason = self._send_start(holder, series)
            if reason is not None:
                return reason
        where = None
        if holder.shared and self.shared_pool is not None:
            located = self.shared_pool.locate(block.spectra)
            if located is not None:
                where = (*located, holder.next_lease)
        parts = wire.encode_block(block, series.start.series_id, shared=where)
        # a block sent by reference takes the same credit: the receiver holds its frames
        nbytes = sum(getattr(block, name).nbytes for name in wire.ARRAY_PARTS)
        reason = self._wait_for_credit(holder, series, nbytes, deadline)
        if reason is None:
            reason = self._send(holder, parts, deadline, abortable=True)
        if reason is None:
            if where is not None:
                holder.leases.append((holder.next_lease, block))
                holder.next_lease += 1
            holder.sent += block.count
            holder.in_flight.append([block.count, nbytes // max(block.count, 1)])
            holder.in_flight_bytes += nbytes // max(block.count, 1) * block.count
        return reason

    def _send_start(self, holder: _Holder, series: _Series) -> Optional[str]:
        deadline = None if self.send_timeout_s is None else time.monotonic() + self.send_timeout_s
        reason = self._send(holder, wire.encode_start(series.start), deadline, abortable=True)
        if reason is None:
            holder.new_series(series.start.series_id)
        else:
            log.warning("start message of %s not sent: %s", series.start.series_id, reason)
        return reason

    def _finish(self, request: _EndRequest, series: Optional[_Series]) -> None:
        assert series is not None
        sid = series.start.series_id
        # Ask the holder to store and acknowledge now, and wait for it.
        holder = self._holder
        if holder is not None and holder.series_id == sid and holder.unsettled > 0:
            reason = self._send(holder, wire.encode_control(wire.Sync(sid)), request.deadline)
            if reason is not None:
                log.warning("stream: sync of %s not sent: %s", sid, reason)
        while True:
            holder = self._holder
            if holder is None or holder.series_id != sid or holder.unsettled <= 0:
                break
            with self._cond:
                if self._stop:
                    break
            if time.monotonic() > request.deadline:
                with self._cond:
                    self._count_lost_locked(holder.unsettled, REASON_UNCONFIRMED)
                log.warning("stream: %s did not confirm %d frames of %s in time", holder.name,
                            holder.unsettled, sid)
                holder.failed += holder.unsettled   # settled as lost
                break
            self._poll_events(_POLL_MS)
        with self._cond:
            reasons = "; ".join(f"{k}: {v}" for k, v in sorted(series.lost_reasons.items()))
            end = wire.SeriesEnd(
                series_id=sid,
                frames_sent=series.frames_sent,
                frames_lost=series.frames_lost,
                lost_reason=reasons,
                final_state=request.final_state,
            )
        holder = self._holder
        if holder is not None and holder.series_id == sid:
            # The end message may use what is left of end_series' time, and at least a moment.
            deadline = max(request.deadline, time.monotonic() + 0.5)
            reason = self._send(holder, wire.encode_end(end), deadline)
            if reason is not None:
                log.warning("end message of %s not sent: %s", end.series_id, reason)
            holder.in_flight.clear()
            holder.in_flight_bytes = 0
        with self._cond:
            self._last = series
            self._series = None
            self._abort_pending = False
        paced = f"; the receiver set the pace for {series.paced_s:.2f} s" if series.paced_s >= PACE_LOG_S else ""
        log.info("series %s ended: %d frames sent (stored by the receiver), %d lost%s%s", end.series_id,
                 end.frames_sent, end.frames_lost, f" ({reasons})" if reasons else "", paced)
        request.result = end
        request.done.set()

    def _drop_queue_locked(self, reason: str) -> None:
        while self._queue:
            item = self._queue.popleft()
            if isinstance(item, wire.FrameBlock):
                self._queued_frames -= item.count
                self._count_lost_locked(item.count, reason)
            elif isinstance(item, _EndRequest):
                series = self._series
                item.result = wire.SeriesEnd(
                    series_id=series.start.series_id if series else "",
                    frames_sent=series.frames_sent if series else 0,
                    frames_lost=series.frames_lost if series else 0,
                    lost_reason="; ".join(f"{k}: {v}" for k, v in sorted(series.lost_reasons.items()))
                    if series else reason,
                    final_state=item.final_state,
                )
                self._last = series
                self._series = None
                item.done.set()


class StreamReceiver:
    """Receiver side: asks to hold the stream, yields decoded messages and acknowledges.

    On every (re)connection it says ``hello`` (zmq reconnects by itself if the IOC
    restarts). With ``auto_ack`` a frames message counts as stored and released as
    soon as ``recv`` returns it (receivers that keep frames in memory); a receiver
    that writes files passes ``auto_ack=False`` and calls ``ack`` once frames are
    safe. ``recv`` raises StreamRefused when another receiver holds the stream.
    """

    def __init__(self, endpoint: str = f"tcp://localhost:{wire.DEFAULT_PORT}", rcvhwm: int = 0,
                 poll_timeout_s: float = 0.2, context: Optional[zmq.Context] = None,
                 window_bytes: int = wire.DEFAULT_WINDOW_BYTES, auto_ack: bool = True,
                 name: str = "", on_sync: Optional[Callable[[str], None]] = None, keys=None,
                 shared: Optional[bool] = None) -> None:
        """``rcvhwm``: messages zmq may queue here (0: no limit; the window bounds them).
        ``keys``: stream_keys.ClientKeys (CURVE) or None. ``shared``: take the IOC's offer
        of shared frame memory when it can be mapped here (shared_frames.py); False:
        every frame is copied over the socket. By default only a receiver that
        acknowledges itself (``auto_ack=False``, a writer) takes it: frames kept in
        memory would keep the IOC's block pool (the memory it reads the detector
        into) from being reused for as long as they are kept.
        ``on_sync(series_id)``: the IOC sent every frame of the series and waits for the
        acknowledgement (a writer flushes now)."""
        self.endpoint = endpoint
        self.on_sync = on_sync
        self.poll_timeout_s = poll_timeout_s
        self.auto_ack = auto_ack
        self.bad_messages = 0
        self.holding = False   # the IOC welcomed this receiver
        self.refused_reason = ""
        self.shared = (not auto_ack) if shared is None else shared
        self._maps: Optional[SharedMaps] = None   # the IOC's frame memory, once welcomed
        #: frames of the open series lost here (their spectra could not be mapped): the
        #: caller never saw them, ack() adds them as failed
        self._failed_here: tuple[str, int, str] = ("", 0, "")   # series, frames, reason
        self._hello = wire.Hello(window_bytes, name or f"{socket.gethostname()}:{os.getpid()}")
        self._ctx = context or zmq.Context.instance()
        self._sock = receiver_socket(self._ctx, rcvhwm, keys)
        self._mon = self._sock.get_monitor_socket(zmq.EVENT_HANDSHAKE_SUCCEEDED)
        self._poller = zmq.Poller()
        self._poller.register(self._sock, zmq.POLLIN)
        self._poller.register(self._mon, zmq.POLLIN)
        self._last_ack: Optional[wire.Ack] = None     # as sent (with what ack() adds)
        self._caller_ack: Optional[wire.Ack] = None   # as the caller gave it last
        self._pending_ack: Optional[wire.Ack] = None
        self._last_ack_t = 0.0
        self._auto_series = ""
        self._auto_frames = 0
        self._connections = 0
        self._sock.connect(endpoint)
        # Queued now, delivered with the first connection; later connections (the IOC
        # restarted) get a fresh hello from _read_monitor.
        self._sock.send_multipart(wire.encode_control(self._hello))

    @property
    def sockets(self) -> tuple[zmq.Socket, zmq.Socket]:
        """Sockets to poll for readability before calling ``recv(0)`` from an outer loop."""
        return self._sock, self._mon

    def recv(self, timeout: Optional[float] = None) -> Optional[wire.Message]:
        """Next valid stream message, or None if nothing arrived within ``timeout`` seconds.

        Malformed messages are logged, counted in ``bad_messages`` and skipped.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            msg = self._recv_ready()
            if msg is not None:
                return msg
            self._shared_update()
            self.send_pending_ack()   # caught up: the IOC gets its credit before we wait
            if deadline is not None and time.monotonic() >= deadline:
                return None
            wait = self.poll_timeout_s if deadline is None else min(self.poll_timeout_s,
                                                                   max(deadline - time.monotonic(), 0.0))
            if self._mon in dict(self._poller.poll(int(wait * 1000))):
                self._read_monitor()

    def _recv_ready(self) -> Optional[wire.Message]:
        while self._sock.getsockopt(zmq.EVENTS) & zmq.POLLIN:
            parts = self._sock.recv_multipart(zmq.NOBLOCK, copy=False)
            hdr: dict = {}
            try:
                hdr = wire.header(parts)   # parsed once, for the check and the decode
                if wire.is_control(hdr):
                    self._on_control(wire.decode_control(parts, hdr))
                    continue
                maps = self._maps
                msg = wire.decode(parts, hdr, None if maps is None else maps.array)
            except wire.SharedSpectraError as exc:
                self._shared_spectra_failed(hdr, str(exc))
                continue
            except wire.WireFormatError as exc:
                self.bad_messages += 1
                log.error("dropping malformed stream message: %s", exc)
                lease = wire.shared_lease(hdr)
                if lease is not None and self._maps is not None:
                    self._maps.release(lease)   # nothing of it is held here
                continue
            if self.auto_ack:
                self._auto_acknowledge(msg)
            return msg
        return None

    def _on_control(self, msg: wire.Control) -> None:
        if isinstance(msg, wire.Welcome):
            self.holding = True
            log.info("holding the stream at %s (window %.1f MiB)", self.endpoint, msg.window_bytes / (1 << 20))
            self._take_shared_offer(msg)
        elif isinstance(msg, wire.Sync):
            self.send_pending_ack()
            if self.on_sync is not None:
                self.on_sync(msg.series_id)
        elif isinstance(msg, wire.Refused):
            self.holding = False
            self.refused_reason = msg.reason
            raise StreamRefused(f"the IOC at {self.endpoint} refused this receiver: {msg.reason}")
        else:
            log.error("the IOC sent %s, which only receivers send", type(msg).__name__)

    def _take_shared_offer(self, welcome: wire.Welcome) -> None:
        """Map the IOC's frame memory if it offers it and this host sees it (a receiver
        on another host, or in another container, cannot open the probe: copies)."""
        self._maps = None
        if not (self.shared and welcome.shared_token):
            return
        maps = SharedMaps(welcome.shared_dir, welcome.shared_token)
        try:
            maps.check_probe(welcome.shared_probe)
        except SharedFramesError as exc:
            log.info("frames come by copy: %s", exc)
            return
        try:
            answer = wire.Shared(welcome.shared_token, os.getpid(), pid_namespace())
            self._sock.send_multipart(wire.encode_control(answer), zmq.NOBLOCK)
        except zmq.Again:
            log.warning("shared-memory answer not sent; frames come by copy")
            return
        self._maps = maps
        log.info("frames come by shared memory (%s)", welcome.shared_dir)

    def _shared_spectra_failed(self, hdr: dict, reason: str) -> None:
        """Frames whose spectra cannot be mapped here: lost, so acknowledged failed with the
        reason at once (the IOC counts them and gets its credit back), and the IOC is
        asked to send copies from now on."""
        count, series_id = int(hdr.get("count", 0)), str(hdr.get("series_id", ""))
        log.error("%d frames of %s lost: %s; asking the IOC for copies from now on", count, series_id, reason)
        held_series, done, _ = self._failed_here
        self._failed_here = (series_id, (done if held_series == series_id else 0) + count, reason)
        try:
            self._sock.send_multipart(wire.encode_control(wire.Shared("")), zmq.NOBLOCK)
        except zmq.Again:
            log.warning("could not ask the IOC for copies (not connected)")
        given = self._caller_ack
        self.ack(given if given is not None and given.series_id == series_id else wire.Ack(series_id, 0, 0))

    def _shared_update(self) -> None:
        """Shared blocks let go of since the last ack: say so (the IOC reuses their memory)."""
        if self.shared_pending and self._pending_ack is None and self._caller_ack is not None:
            self.ack(self._caller_ack)

    @property
    def shared_pending(self) -> bool:
        """Shared blocks were let go of and the IOC was not told yet (an outer loop
        should not sleep long: the IOC's frame memory waits for it)."""
        maps, last = self._maps, self._last_ack
        return maps is not None and last is not None and maps.released != last.shared_released

    def _read_monitor(self) -> None:
        while self._mon.poll(0):
            event = recv_monitor_message(self._mon)
            if event["event"] == zmq.EVENT_HANDSHAKE_SUCCEEDED:
                self._connections += 1
                if self._connections == 1:
                    continue   # the hello queued at connect went with this one
                self._last_ack = None
                try:
                    self._sock.send_multipart(wire.encode_control(self._hello))
                except zmq.Again:
                    log.warning("hello to %s not sent; waiting for the next connection", self.endpoint)

    def service(self) -> None:
        """Handle connection events without receiving (for an outer poll loop)."""
        self._read_monitor()

    def _auto_acknowledge(self, msg: wire.Message) -> None:
        if isinstance(msg, wire.SeriesStart):
            if msg.series_id != self._auto_series:
                self._auto_series, self._auto_frames = msg.series_id, 0
        elif isinstance(msg, wire.FrameBlock) and msg.series_id == self._auto_series:
            self._auto_frames += msg.count
            self.ack(wire.Ack(self._auto_series, self._auto_frames, self._auto_frames))

    def ack(self, ack: wire.Ack) -> None:
        """Tell the IOC how far this receiver got. A change of ``stored`` or ``failed``
        goes out at once (the IOC counts those); credit alone (``released``) at most
        every ACK_INTERVAL_S, and before ``recv`` waits: the counts are cumulative,
        so the last ack says everything the skipped ones said. The count of shared
        blocks released (``shared_released``) is this receiver's to fill in."""
        self._caller_ack = ack
        if self._maps is not None:
            ack = dataclasses.replace(ack, shared_released=self._maps.released)
        failed_series, failed, reason = self._failed_here
        if failed and failed_series == ack.series_id:   # frames lost here, which the caller never saw
            ack = dataclasses.replace(ack, released=ack.released + failed, failed=ack.failed + failed,
                                      failed_reason=ack.failed_reason or reason)
        last = self._last_ack
        if ack == last:
            self._pending_ack = None
            return
        self._pending_ack = ack
        settled = last is None or ack.series_id != last.series_id or (ack.stored, ack.failed) != (
            last.stored, last.failed)
        if settled or time.monotonic() - self._last_ack_t >= ACK_INTERVAL_S:
            self.send_pending_ack()

    @property
    def ack_pending(self) -> bool:
        """An ack is held back by the interval (an outer loop should not sleep long)."""
        return self._pending_ack is not None

    def send_pending_ack(self) -> None:
        ack = self._pending_ack
        if ack is None:
            return
        try:
            self._sock.send_multipart(wire.encode_control(ack), zmq.NOBLOCK)
            self._last_ack, self._pending_ack = ack, None
            self._last_ack_t = time.monotonic()
        except zmq.Again:
            log.debug("ack not sent (not connected); the next one carries the same counts")

    def messages(self, stop: Optional[threading.Event] = None) -> Iterator[wire.Message]:
        """Yield messages until ``stop`` is set (checked every poll timeout)."""
        while stop is None or not stop.is_set():
            msg = self.recv(timeout=self.poll_timeout_s)
            if msg is not None:
                yield msg

    def __iter__(self) -> Iterator[wire.Message]:
        return self.messages()

    def close(self) -> None:
        self._maps = None   # arrays still in use keep their mapping
        if self._sock.closed:
            return
        self._sock.disable_monitor()
        self._mon.close(0)
        self._sock.close(0)

    def __enter__(self) -> "StreamReceiver":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
