"""zmq PUSH sender and PULL receiver for the stream defined in ``wire.py``.

The sender owns one thread that does every zmq call (zmq sockets are not
thread-safe); producers only touch a bounded in-memory queue, limited in frames.

Loss policy, so that nothing disappears without being counted:

* no receiver connected: blocks are dropped at once and counted ("no receiver");
* a receiver connected but slow: the sender waits; the queue fills and ``offer``
  returns False, which is the producer's back-pressure signal;
* ``end_series`` waits for the queue to drain; what is still queued at its
  timeout is counted ("end timeout").

Frames already handed to zmq for a peer that then disconnects are lost inside
zmq and cannot be counted; the receiver sees the gap in ``first_frame``.
"""
from __future__ import annotations

import collections
import logging
import socket
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Iterator, Optional, Union

import zmq
from zmq.utils.monitor import recv_monitor_message

from . import wire

log = logging.getLogger(__name__)

REASON_NO_RECEIVER = "no receiver"
REASON_END_TIMEOUT = "end timeout"
REASON_SEND_TIMEOUT = "send timeout"
REASON_CLOSED = "sender closed"

#: Losses the sender decides itself (not back-pressure the producer gave up on)
OWN_REASONS = (REASON_NO_RECEIVER, REASON_END_TIMEOUT, REASON_SEND_TIMEOUT, REASON_CLOSED)

_POLL_MS = 100
# libzmq (4.3.x) aborts the process when a PUSH socket is closed with linger 0 while a
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


@dataclass
class _Series:
    start: wire.SeriesStart
    frames_sent: int = 0
    frames_lost: int = 0
    lost_reasons: dict[str, int] = field(default_factory=dict)
    start_sent: bool = False  # at least one receiver got the start message
    resend_start: bool = False  # a receiver joined since; send the start again before the next block


@dataclass
class _EndRequest:
    final_state: str
    deadline: float  # monotonic time by which end_series wants to return
    done: threading.Event = field(default_factory=threading.Event)
    result: Optional[wire.SeriesEnd] = None


_Item = Union[wire.SeriesStart, wire.FrameBlock, _EndRequest]


class StreamSender:
    """Publishes series over a zmq PUSH socket from its own thread (a consumer.SeriesConsumer)."""

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
    ) -> None:
        """``send_timeout_s``: how long one message may wait for a connected but stalled
        receiver before it is counted lost; None waits as long as a receiver is connected.
        ``sndhwm``: messages zmq may hold beyond our own queue. A few keep the socket
        busy; each is a whole block (up to 8 MiB), so 16 instead of 4 only added
        ~85 MB to the IOC's peak memory at full rate, at the same frame rate.
        ``stall_timeout``: how long a producer keeps offering a refused block before
        counting it lost (consumer.SeriesConsumer); ``end_timeout``: how long
        ``end_series`` waits for the queue to drain unless told otherwise."""
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
        self._abort_pending = False  # end timeout: drop what is queued
        self._stop = False
        self._thread: Optional[threading.Thread] = None
        self._ready = threading.Event()
        self._start_error: Optional[BaseException] = None
        self._endpoint = ""
        self._linger_ms = 1000
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._wake_w.setblocking(False)

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
        self._wake_r.close()
        self._wake_w.close()

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
        """Number of connected receivers (TCP connections accepted and not yet closed)."""
        return self._receivers

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
    def series_open(self) -> bool:
        return self._series is not None

    @property
    def series_id(self) -> str:
        series = self._series
        return series.start.series_id if series else ""

    @property
    def frames_sent(self) -> int:
        """Frames handed to zmq in the open series (or the last one once it ended)."""
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
        """Interrupt the sender thread's poll (a full buffer means a wake-up is pending)."""
        try:
            self._wake_w.send(b"x")
        except BlockingIOError:
            return
        except OSError as exc:  # closed: the sender is shutting down
            log.debug("wake-up after close: %s", exc)

    def _run(self) -> None:
        ctx = zmq.Context.instance()
        sock = ctx.socket(zmq.PUSH)
        sock.setsockopt(zmq.SNDHWM, self.sndhwm)
        sock.setsockopt(zmq.LINGER, 0)
        _keepalive(sock)
        # Peers are tracked by file descriptor: ACCEPTED and DISCONNECTED both carry it
        # (HANDSHAKE_SUCCEEDED carries 0, so it cannot be paired with its disconnect).
        mon = sock.get_monitor_socket(zmq.EVENT_ACCEPTED | zmq.EVENT_DISCONNECTED)
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
        peers: set[Any] = set()
        poller = zmq.Poller()
        poller.register(mon, zmq.POLLIN)
        poller.register(self._wake_r, zmq.POLLIN)
        try:
            self._loop(sock, mon, poller, peers)
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

    def _loop(self, sock: zmq.Socket, mon: zmq.Socket, poller: zmq.Poller, peers: set[Any]) -> None:
        while True:
            with self._cond:
                if self._stop:
                    return
                item = self._queue[0] if self._queue else None
            if item is None:
                self._poll_events(poller, mon, peers, _POLL_MS)
                continue
            self._handle(item, sock, mon, poller, peers)
            with self._cond:
                if self._queue and self._queue[0] is item:
                    self._queue.popleft()
                    if isinstance(item, wire.FrameBlock):
                        self._queued_frames -= item.count
                self._cond.notify_all()

    def _poll_events(self, poller: zmq.Poller, mon: zmq.Socket, peers: set[Any], timeout_ms: int) -> dict:
        events = dict(poller.poll(timeout_ms))
        if self._wake_r in events or self._wake_r.fileno() in events:
            self._drain_wakeups()
        if mon in events:
            self._read_monitor(mon, peers)
        return events

    def _drain_wakeups(self) -> None:
        while True:
            try:
                if not self._wake_r.recv(4096):
                    return
            except BlockingIOError:
                return  # nothing left: the socket is non-blocking

    def _read_monitor(self, mon: zmq.Socket, peers: set[Any]) -> None:
        while mon.poll(0):
            event = recv_monitor_message(mon)
            if event["event"] == zmq.EVENT_ACCEPTED:
                peers.add(event["value"])
                log.info("stream receiver connected (%d now)", len(peers))
                new_peer = True
            elif event["event"] == zmq.EVENT_DISCONNECTED and event["value"] in peers:
                peers.discard(event["value"])
                log.info("stream receiver gone (%d left)", len(peers))
                new_peer = False
            else:
                continue
            with self._cond:
                self._receivers = len(peers)
                if new_peer and self._series is not None and self._series.start_sent:
                    # Best effort for a late receiver: it gets the start again (with one
                    # receiver it certainly does; receivers ignore a repeated start).
                    self._series.resend_start = True
                self._cond.notify_all()

    def _send(self, parts: list, sock: zmq.Socket, mon: zmq.Socket, poller: zmq.Poller, peers: set[Any],
              deadline: Optional[float], abortable: bool = False) -> Optional[str]:
        """Send one message; returns None when sent, else the reason it was not.

        ``abortable`` messages (frames) give up when end_series runs out of time.
        """
        while True:
            if not peers:
                return REASON_NO_RECEIVER
            try:
                sock.send_multipart(parts, flags=zmq.NOBLOCK, copy=False)
                return None
            except zmq.Again:
                log.debug("receiver queue full; waiting")  # back-pressure: wait below
            with self._cond:
                if self._stop:
                    return REASON_CLOSED
                if self._abort_pending and abortable:
                    return REASON_END_TIMEOUT
            if deadline is not None and time.monotonic() > deadline:
                return REASON_SEND_TIMEOUT
            poller.register(sock, zmq.POLLOUT)
            try:
                self._poll_events(poller, mon, peers, _POLL_MS)
            finally:
                poller.unregister(sock)

    def _handle(self, item: _Item, sock: zmq.Socket, mon: zmq.Socket, poller: zmq.Poller,
                peers: set[Any]) -> None:
        series = self._series
        if isinstance(item, wire.SeriesStart):
            self._send_start(series, sock, mon, poller, peers)
            return
        if isinstance(item, wire.FrameBlock):
            assert series is not None
            with self._cond:
                aborting = self._abort_pending
            if aborting:
                reason: Optional[str] = REASON_END_TIMEOUT
            else:
                if not series.start_sent or series.resend_start:
                    self._send_start(series, sock, mon, poller, peers)
                deadline = None if self.send_timeout_s is None else time.monotonic() + self.send_timeout_s
                reason = self._send(wire.encode_block(item, series.start.series_id), sock, mon, poller, peers,
                                    deadline, abortable=True)
            with self._cond:
                if reason is None:
                    series.frames_sent += item.count
                else:
                    self._count_lost_locked(item.count, reason)
            return
        self._finish(item, series, sock, mon, poller, peers)

    def _send_start(self, series: Optional[_Series], sock: zmq.Socket, mon: zmq.Socket, poller: zmq.Poller,
                    peers: set[Any]) -> None:
        if series is None or not peers:
            return  # nobody to tell; a receiver connecting later gets it before the next block
        deadline = None if self.send_timeout_s is None else time.monotonic() + self.send_timeout_s
        reason = self._send(wire.encode_start(series.start), sock, mon, poller, peers, deadline, abortable=True)
        if reason is None:
            series.start_sent = True
            series.resend_start = False
        else:
            log.warning("start message of %s not sent: %s", series.start.series_id, reason)

    def _finish(self, request: _EndRequest, series: Optional[_Series], sock: zmq.Socket, mon: zmq.Socket,
                poller: zmq.Poller, peers: set[Any]) -> None:
        assert series is not None
        with self._cond:
            reasons = "; ".join(f"{k}: {v}" for k, v in sorted(series.lost_reasons.items()))
            end = wire.SeriesEnd(
                series_id=series.start.series_id,
                frames_sent=series.frames_sent,
                frames_lost=series.frames_lost,
                lost_reason=reasons,
                final_state=request.final_state,
            )
        if peers and series.start_sent:
            # The end message may use what is left of end_series' time, and at least a moment.
            deadline = max(request.deadline, time.monotonic() + 0.5)
            reason = self._send(wire.encode_end(end), sock, mon, poller, peers, deadline)
            if reason is not None:
                log.warning("end message of %s not sent: %s", end.series_id, reason)
        with self._cond:
            self._last = series
            self._series = None
            self._abort_pending = False
        log.info("series %s ended: %d frames sent, %d lost%s", end.series_id, end.frames_sent,
                 end.frames_lost, f" ({reasons})" if reasons else "")
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
    """PULL side: yields decoded messages; zmq reconnects by itself if the IOC restarts."""

    def __init__(self, endpoint: str = f"tcp://localhost:{wire.DEFAULT_PORT}", rcvhwm: int = 64,
                 poll_timeout_s: float = 0.2, context: Optional[zmq.Context] = None,
                 keys=None) -> None:
        self.endpoint = endpoint
        self.poll_timeout_s = poll_timeout_s
        self.bad_messages = 0
        self._ctx = context or zmq.Context.instance()
        self._sock = self._ctx.socket(zmq.PULL)
        self._sock.setsockopt(zmq.RCVHWM, rcvhwm)
        self._sock.setsockopt(zmq.LINGER, 0)
        _keepalive(self._sock)
        if keys is not None:  # stream_keys.ClientKeys (CURVE)
            keys.secure(self._sock)
        self._sock.connect(endpoint)

    def recv(self, timeout: Optional[float] = None) -> Optional[wire.Message]:
        """Next valid message, or None if nothing arrived within ``timeout`` seconds.

        Malformed messages are logged, counted in ``bad_messages`` and skipped.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            wait = self.poll_timeout_s if deadline is None else min(self.poll_timeout_s,
                                                                   max(deadline - time.monotonic(), 0.0))
            if self._sock.poll(int(wait * 1000), zmq.POLLIN):
                parts = self._sock.recv_multipart(copy=False)
                try:
                    return wire.decode(parts)
                except wire.WireFormatError as exc:
                    self.bad_messages += 1
                    log.error("dropping malformed stream message: %s", exc)
                    continue
            if deadline is not None and time.monotonic() >= deadline:
                return None

    def messages(self, stop: Optional[threading.Event] = None) -> Iterator[wire.Message]:
        """Yield messages until ``stop`` is set (checked every poll timeout)."""
        while stop is None or not stop.is_set():
            msg = self.recv(timeout=self.poll_timeout_s)
            if msg is not None:
                yield msg

    def __iter__(self) -> Iterator[wire.Message]:
        return self.messages()

    def close(self) -> None:
        self._sock.close(0)

    def __enter__(self) -> "StreamReceiver":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
