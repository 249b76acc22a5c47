"""Monitor server and client (lazy pirate), plus the xspress3-monitor console script."""
from __future__ import annotations

import importlib.util
import json
import socket
import subprocess
import sys

import numpy as np
import pytest

from xspress3.writers import monitor, wire

from writers_helpers import block_values, make_start


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def server():
    srv = monitor.MonitorServer("tcp://127.0.0.1:0")
    srv.start()
    yield srv
    srv.close()


def test_latest_frame_round_trip(server):
    with monitor.MonitorClient(server.endpoint, timeout_s=10) as client:
        assert client.latest() is None
        assert client.series() is None
        start = make_start("mon")
        server.set_series(start)
        block = block_values(40, 8)
        server.update(block)
        latest = client.latest()
        assert latest.count == 1 and latest.first_frame == 47 and latest.series_id == "mon"
        for name in wire.ARRAY_PARTS:
            np.testing.assert_array_equal(getattr(latest, name), getattr(block, name)[-1:])
        assert client.series() == start
    assert server.requests_served == 4


def raw_request(endpoint: str, what: bytes) -> list[bytes]:
    """One request on a plain zmq REQ socket, as any client would send it."""
    import zmq
    sock = zmq.Context.instance().socket(zmq.REQ)
    sock.setsockopt(zmq.LINGER, 0)
    try:
        sock.connect(endpoint)
        sock.send(what)
        assert sock.poll(10000, zmq.POLLIN), "no reply"
        return sock.recv_multipart()
    finally:
        sock.close(0)


def test_start_answers_none_when_idle_and_the_series_while_open(server):
    """db_docs/stream.md: `start` gets the open series' start message, else type none."""
    none = {"type": "none", "version": wire.FORMAT_VERSION}
    assert [json.loads(p) for p in raw_request(server.endpoint, b"start")] == [none]
    start = make_start("open")
    server.begin_series(start)
    server.offer(block_values(0, 3))
    reply = raw_request(server.endpoint, b"start")
    assert len(reply) == 1 and wire.decode(reply) == start
    server.end_series("done")
    assert [json.loads(p) for p in raw_request(server.endpoint, b"start")] == [none]
    latest = wire.decode(raw_request(server.endpoint, b"latest"))   # the last frame stays
    assert latest.first_frame == 2 and latest.series_id == "open"


def test_update_keeps_a_reference_not_a_copy(server):
    block = block_values(0, 4)
    server.update(block)
    kept, _ = server._latest
    assert kept is block


def test_unknown_request_gets_an_error_reply(server):
    with monitor.MonitorClient(server.endpoint, timeout_s=10) as client:
        with pytest.raises(wire.WireFormatError, match="unknown request 'hello'"):
            monitor.MonitorClient._decode(client.request(b"hello"))
        assert client.latest() is None  # the REQ socket is still in step


def test_client_times_out_then_recovers_when_server_appears():
    endpoint = f"tcp://127.0.0.1:{free_port()}"
    with monitor.MonitorClient(endpoint, timeout_s=0.2) as client:
        with pytest.raises(TimeoutError, match="no reply"):
            client.latest()
        with pytest.raises(TimeoutError):  # a fresh socket: no "operation cannot be accomplished"
            client.latest()
        srv = monitor.MonitorServer(endpoint)
        srv.start()
        try:
            srv.update(block_values(0, 1))
            client.timeout_s = 10
            assert client.latest().first_frame == 0
        finally:
            srv.close()


def test_channel_summary_numbers():
    block = block_values(0, 2, channels=2, bins=16)
    scalers = block.scalers.copy()
    scalers[-1, 0, 0] = 80_000_000  # TIME: one second of live time
    scalers[-1, 0, 3] = 12_345  # ALL_EVENT
    scalers[-1, 0, 4] = 12_000  # ALL_GOOD
    b = wire.FrameBlock(0, block.spectra, scalers, block.dtfactor, block.dtpercent, "s")
    row = monitor.channel_summary(b)[0]
    assert row["icr_cps"] == pytest.approx(12_345.0)
    assert row["good_cps"] == pytest.approx(12_000.0)
    assert row["total"] == float(block.spectra[-1, 0].sum())
    assert row["dt_percent"] == block.dtpercent[-1, 0]


def run_monitor(*args: str, env) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "xspress3.writers.monitor", *args], capture_output=True,
                          text=True, env=env, timeout=60)


def test_console_script_shows_channels(server, subprocess_env):
    server.update(block_values(0, 3, channels=2, bins=16))
    proc = run_monitor("--connect", server.endpoint, "--count", "2", "--interval", "0.01", env=subprocess_env)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.count("total counts") == 2
    assert "frame 2" in proc.stdout and "\n  2 " in proc.stdout


def test_console_script_without_server_does_not_hang(subprocess_env):
    proc = run_monitor("--connect", f"tcp://127.0.0.1:{free_port()}", "--count", "2", "--interval", "0.01",
                       "--timeout", "0.2", env=subprocess_env)
    assert proc.returncode == 1
    assert proc.stdout.count("no reply from monitor") == 2


@pytest.mark.skipif(importlib.util.find_spec("matplotlib") is not None, reason="matplotlib is installed")
def test_plot_without_matplotlib_says_so(subprocess_env):
    proc = run_monitor("--plot", "--count", "1", env=subprocess_env)
    assert proc.returncode == 2 and "needs matplotlib" in proc.stderr
