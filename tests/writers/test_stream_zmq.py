"""StreamSender -> StreamReceiver over real TCP sockets on 127.0.0.1."""
from __future__ import annotations

import logging
import threading
import time
from typing import Iterator

import numpy as np
import pytest
import zmq

from xspress3.writers import stream, wire

from writers_helpers import block_values, make_start

LOCAL = "tcp://127.0.0.1:0"


@pytest.fixture
def sender() -> Iterator[stream.StreamSender]:
    s = stream.StreamSender(LOCAL, max_queued_frames=64)
    s.start()
    yield s
    s.close(linger=0)


def collect(receiver: stream.StreamReceiver, timeout: float = 10.0) -> list[wire.Message]:
    """Messages until an end message (or timeout, which the caller's asserts will expose)."""
    got: list[wire.Message] = []
    while True:
        msg = receiver.recv(timeout)
        if msg is None:
            return got
        got.append(msg)
        if isinstance(msg, wire.SeriesEnd):
            return got


class Reader:
    """Collects a receiver's messages on a thread: the sender's end_series waits for the
    receiver's acknowledgements, so a test must read while it sends."""

    def __init__(self, receiver: stream.StreamReceiver, timeout: float = 10.0) -> None:
        self.messages: list[wire.Message] = []
        self.error: Exception | None = None
        self._thread = threading.Thread(target=self._run, args=(receiver, timeout))
        self._thread.start()

    def _run(self, receiver: stream.StreamReceiver, timeout: float) -> None:
        try:
            self.messages.extend(collect(receiver, timeout))
        except Exception as exc:  # handed to the test by join()
            self.error = exc

    def join(self, timeout: float = 20.0) -> list[wire.Message]:
        self._thread.join(timeout)
        if self.error is not None:
            raise self.error
        return self.messages


def test_every_frame_arrives_in_order_with_equal_values(sender):
    with stream.StreamReceiver(sender.endpoint) as receiver:
        assert sender.wait_for_receivers(1, timeout=10)
        start = make_start("inorder", channels=3, bins=40)
        sender.begin_series(start)
        sizes = [1, 5, 16, 3, 7, 1, 16] * 3
        sent, first = [], 0
        result: list[wire.Message] = []
        reader = threading.Thread(target=lambda: result.extend(collect(receiver)))
        reader.start()
        for n in sizes:
            block = block_values(first, n, channels=3, bins=40)
            assert sender.offer(block, timeout=10)
            sent.append(block)
            first += n
        end = sender.end_series("done", timeout=10)
        reader.join(15)
    assert (end.frames_sent, end.frames_lost, end.final_state) == (first, 0, "done")
    assert result[0] == start
    assert result[-1] == end
    frames = [m for m in result[1:-1]]
    assert all(isinstance(m, wire.FrameBlock) and m.series_id == "inorder" for m in frames)
    assert [m.first_frame for m in frames] == [b.first_frame for b in sent]
    for got, exp in zip(frames, sent):
        for name in wire.ARRAY_PARTS:
            np.testing.assert_array_equal(getattr(got, name), getattr(exp, name))
    assert sender.frames_sent == first and sender.lost_reasons == {}


def test_without_receiver_frames_are_counted_lost(sender):
    sender.begin_series(make_start("nobody"))
    for i in range(5):
        assert sender.offer(block_values(i * 4, 4)) is True
    end = sender.end_series("done", timeout=5)
    assert (end.frames_sent, end.frames_lost) == (0, 20)
    assert end.lost_reason == "no receiver: 20"
    assert sender.lost_reasons == {"no receiver": 20}


def test_slow_receiver_gets_back_pressure_not_loss():
    big = dict(channels=16, bins=4096)  # 256 KiB per frame: fills socket buffers quickly
    s = stream.StreamSender(LOCAL, max_queued_frames=8, sndhwm=1)
    s.start()
    try:
        with stream.StreamReceiver(s.endpoint, rcvhwm=1) as receiver:
            assert s.wait_for_receivers(1, timeout=10)
            s.begin_series(make_start("slow", **big))
            offered, refused = 0, False
            for _ in range(400):  # the receiver reads nothing yet
                if not s.offer(block_values(offered, 4, **big), timeout=0.0):
                    refused = True
                    break
                offered += 4
            assert refused, "queue never filled although the receiver read nothing"
            assert s.frames_lost == 0 and s.queued_frames > 0
            result: list[wire.Message] = []
            reader = threading.Thread(target=lambda: result.extend(collect(receiver)))
            reader.start()
            for _ in range(3):
                assert s.offer(block_values(offered, 4, **big), timeout=10)
                offered += 4
            end = s.end_series("done", timeout=20)
            reader.join(20)
    finally:
        s.close(linger=0)
    assert (end.frames_sent, end.frames_lost) == (offered, 0)
    frames = [m for m in result if isinstance(m, wire.FrameBlock)]
    assert sum(m.count for m in frames) == offered
    assert [m.first_frame for m in frames] == list(range(0, offered, 4))
    np.testing.assert_array_equal(frames[-1].spectra, block_values(offered - 4, 4, **big).spectra)


def test_late_receiver_gets_start_before_frames(sender):
    start = make_start("late")
    sender.begin_series(start)
    assert sender.offer(block_values(0, 4))  # nobody listens: lost
    with stream.StreamReceiver(sender.endpoint) as receiver:
        assert sender.wait_for_receivers(1, timeout=10)
        reader = Reader(receiver)
        assert sender.offer(block_values(4, 4), timeout=5)
        end = sender.end_series("done", timeout=10)
        result = reader.join()
    assert result[0] == start
    assert [m.first_frame for m in result if isinstance(m, wire.FrameBlock)] == [4]
    assert result[-1] == end and (end.frames_sent, end.frames_lost) == (4, 4)


def test_end_timeout_counts_what_is_still_queued():
    s = stream.StreamSender(LOCAL, max_queued_frames=64, sndhwm=1)
    s.start()
    big = dict(channels=16, bins=4096)
    try:
        with stream.StreamReceiver(s.endpoint, rcvhwm=1):  # connected, never reads
            assert s.wait_for_receivers(1, timeout=10)
            s.begin_series(make_start("stalled", **big))
            offered = 0
            while s.offer(block_values(offered, 4, **big), timeout=0.0) and offered < 4000:
                offered += 4
            end = s.end_series("stopped", timeout=0.3)
    finally:
        s.close(linger=0)
    assert end.final_state == "stopped"
    assert end.frames_sent + end.frames_lost == offered
    assert end.frames_lost > 0 and "end timeout" in end.lost_reason
    assert s.queued_frames == 0


def test_offer_outside_series_is_an_error(sender):
    with pytest.raises(RuntimeError, match="begin_series"):
        sender.offer(block_values(0, 1))


def test_second_series_needs_end_of_first(sender):
    sender.begin_series(make_start("a"))
    with pytest.raises(RuntimeError, match="still open"):
        sender.begin_series(make_start("b"))
    sender.end_series()
    sender.begin_series(make_start("b"))
    assert sender.series_id == "b"
    sender.end_series()


def test_bind_conflict_raises(sender):
    other = stream.StreamSender(sender.endpoint)
    with pytest.raises(OSError, match="cannot bind"):
        other.start()
    other.close()


def test_receiver_skips_malformed_messages():
    ctx = zmq.Context.instance()
    ioc = ctx.socket(zmq.ROUTER)
    ioc.setsockopt(zmq.LINGER, 0)
    port = ioc.bind_to_random_port("tcp://127.0.0.1")
    try:
        with stream.StreamReceiver(f"tcp://127.0.0.1:{port}", name="probe") as receiver:
            assert ioc.poll(10000), "no hello"
            identity, hello = ioc.recv_multipart()
            assert wire.decode_control([hello]) == wire.Hello(wire.DEFAULT_WINDOW_BYTES, "probe")
            assert receiver.recv(timeout=0.05) is None
            ioc.send_multipart([identity, b"not json"])
            ioc.send_multipart([identity, *wire.encode_end(wire.SeriesEnd("x", 1))])
            msg = receiver.recv(timeout=10)
            assert isinstance(msg, wire.SeriesEnd) and msg.series_id == "x"
            assert receiver.bad_messages == 1
    finally:
        ioc.close()


def test_a_second_receiver_is_refused_and_gets_no_frame(sender, caplog):
    """Two real receivers: the first holds the stream and gets every frame; the second is
    told why it gets none, and the IOC logs the refusal. When the first leaves, a new
    receiver may take the stream."""
    caplog.set_level(logging.INFO, logger="xspress3.writers.stream")
    first = stream.StreamReceiver(sender.endpoint, name="first")
    assert sender.wait_for_receivers(1, timeout=10)
    second = stream.StreamReceiver(sender.endpoint, name="second")
    with pytest.raises(stream.StreamRefused, match="another receiver .*first.* holds the stream"):
        while second.recv(timeout=10) is not None:
            pytest.fail("the refused receiver got a stream message")
    assert "holds the stream" in second.refused_reason and not second.holding
    assert sender.refused == 1 and sender.receivers == 1
    assert any("refused second" in r.getMessage() for r in caplog.records)
    reader = Reader(first)
    sender.begin_series(make_start("one_holder"))
    for i in range(50):
        assert sender.offer(block_values(i * 4, 4), timeout=10)
    end = sender.end_series(timeout=10)
    got = reader.join()
    assert first.holding
    assert sum(m.count for m in got if isinstance(m, wire.FrameBlock)) == 200
    assert (end.frames_sent, end.frames_lost) == (200, 0) and got[-1] == end
    assert second.recv(timeout=0.3) is None     # still nothing for the refused one
    first.close()
    second.close()
    deadline = time.monotonic() + 10
    while sender.receivers and time.monotonic() < deadline:
        time.sleep(0.01)
    assert sender.receivers == 0
    sender.begin_series(make_start("gone"))
    assert sender.offer(block_values(0, 2))
    assert sender.end_series(timeout=5).lost_reason == "no receiver: 2"
    with stream.StreamReceiver(sender.endpoint, name="third") as third:
        assert sender.wait_for_receivers(1, timeout=10), "the stream was not free again"
        assert third.recv(timeout=0.2) is None and third.holding


def test_receiver_reconnects_when_the_sender_restarts():
    first = stream.StreamSender(LOCAL)
    first.start()
    endpoint = first.endpoint
    with stream.StreamReceiver(endpoint) as receiver:
        assert first.wait_for_receivers(1, timeout=10)
        first.close()  # the IOC goes away...
        second = stream.StreamSender(endpoint)
        deadline = time.monotonic() + 10
        while True:  # ...and comes back on the same port once the OS has released it
            try:
                second.start()
                break
            except OSError:
                assert time.monotonic() < deadline, "port not released"
                time.sleep(0.05)
        try:
            # A receiver says hello again when its connection comes back, which it
            # notices while it polls (xspress3-receive always does).
            result: list[wire.Message] = []
            reader = threading.Thread(target=lambda: result.extend(collect(receiver, timeout=30)))
            reader.start()
            assert second.wait_for_receivers(1, timeout=30), "receiver did not reconnect"
            second.begin_series(make_start("after_restart"))
            assert second.offer(block_values(0, 3), timeout=10)
            end = second.end_series(timeout=10)
            reader.join(30)
        finally:
            second.close()
    assert result[0].series_id == "after_restart" and result[-1] == end
    assert end.frames_sent == 3


def test_a_same_host_receiver_may_use_ipc(tmp_path):
    """ipc:// (a Unix socket) serves a receiver on the IOC's host: every frame arrives with
    equal values, the session (hello, acks, sync, end) works without a peer address, and a
    receiver that leaves is noticed (its file descriptor, as over TCP)."""
    path = tmp_path / "stream.sock"
    assert len(str(path)) < 100, "Unix socket paths are limited to ~107 bytes"
    with stream.StreamSender(f"ipc://{path}", max_queued_frames=64) as sender:
        assert sender.endpoint == f"ipc://{path}"
        receiver = stream.StreamReceiver(sender.endpoint, name="local")
        assert sender.wait_for_receivers(1, timeout=10)
        reader = Reader(receiver)
        start = make_start("over_ipc", channels=2, bins=32)
        sender.begin_series(start)
        sent = [block_values(i * 5, 5, channels=2, bins=32) for i in range(20)]
        for block in sent:
            assert sender.offer(block, timeout=10)
        end = sender.end_series(timeout=10)
        got = reader.join()
        assert (end.frames_sent, end.frames_lost) == (100, 0)
        assert got[0] == start and got[-1] == end
        frames = [m for m in got if isinstance(m, wire.FrameBlock)]
        assert [m.first_frame for m in frames] == [b.first_frame for b in sent]
        for got_block, exp in zip(frames, sent):
            for name in wire.ARRAY_PARTS:
                np.testing.assert_array_equal(getattr(got_block, name), getattr(exp, name))
        receiver.close()
        deadline = time.monotonic() + 10
        while sender.receivers and time.monotonic() < deadline:
            time.sleep(0.01)
        assert sender.receivers == 0, "the sender did not notice the receiver leave"
