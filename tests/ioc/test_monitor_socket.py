"""The IOC's monitor socket over a plain zmq REQ socket: `start` answers as
db_docs/stream.md says (the open series' start message, `{"type": "none"}` when
idle), on a real IOC."""
from __future__ import annotations

import json

import zmq

from xspress3.writers import wire

NONE = {"type": "none", "version": wire.FORMAT_VERSION}


def ask(endpoint: str, what: bytes, timeout_s: float = 10.0) -> list[bytes]:
    sock = zmq.Context.instance().socket(zmq.REQ)
    sock.setsockopt(zmq.LINGER, 0)
    try:
        sock.connect(endpoint)
        sock.send(what)
        assert sock.poll(int(timeout_s * 1000), zmq.POLLIN), f"no reply to {what!r} from {endpoint}"
        return sock.recv_multipart()
    finally:
        sock.close(0)


def test_start_is_none_when_idle_and_the_series_during_a_run(fresh_ioc):
    ioc = fresh_ioc
    assert [json.loads(p) for p in ask(ioc.monitor_endpoint, b"start")] == [NONE]   # just started
    assert [json.loads(p) for p in ask(ioc.monitor_endpoint, b"latest")] == [NONE]
    ioc.put("det1:TriggerMode", "Internal")
    ioc.put("det1:AcquireTime", 0.01)
    ioc.put("det1:NumImages", 100000)
    thread = ioc.acquire_in_background()
    ioc.wait_for("det1:ArrayCounter_RBV", lambda v: v >= 3, timeout=20)
    start = wire.decode(ask(ioc.monitor_endpoint, b"start"))
    assert isinstance(start, wire.SeriesStart) and start.channels == 4
    ioc.put("det1:Acquire", 0, timeout=20)
    thread.join(20)
    assert [json.loads(p) for p in ask(ioc.monitor_endpoint, b"start")] == [NONE]   # after the run
    latest = wire.decode(ask(ioc.monitor_endpoint, b"latest"))
    assert isinstance(latest, wire.FrameBlock) and latest.series_id == start.series_id
