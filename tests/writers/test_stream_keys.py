"""CURVE keys (writers/stream_keys.py): key files, and the monitor and stream sockets
answering only clients that hold authorized keys (real zmq sockets, in-process)."""
from __future__ import annotations

import stat
import subprocess
import sys
import threading

import pytest

from xspress3.writers import monitor, stream_keys, wire
from xspress3.writers.stream import StreamReceiver, StreamSender

from writers_helpers import block_values, make_start


@pytest.fixture(scope="module")
def keys(tmp_path_factory):
    directory = tmp_path_factory.mktemp("keys")
    made = stream_keys.make_keys(directory, ["client", "beamline"])
    assert {p.name for p in made} >= {"server.key", "server.key_secret", "client.key_secret",
                                      "beamline.key_secret"}
    return directory


def test_key_files_and_their_permissions(keys, tmp_path):
    for name in ("server", "client", "beamline"):
        assert stat.S_IMODE((keys / f"{name}.key_secret").stat().st_mode) == 0o600
    assert sorted(p.name for p in (keys / "authorized").iterdir()) == ["beamline.key", "client.key"]
    secret = (keys / "client.key_secret").read_bytes()
    assert stream_keys.make_keys(keys, ["client"]) == []       # kept, never overwritten
    assert (keys / "client.key_secret").read_bytes() == secret
    with pytest.raises(stream_keys.StreamKeyError, match="not a client name"):
        stream_keys.make_keys(keys, ["../evil"])
    with pytest.raises(stream_keys.StreamKeyError, match="no such key file"):
        stream_keys.ServerKeys(tmp_path)
    # the console entry point
    done = subprocess.run([sys.executable, "-m", "xspress3.writers.stream_keys", str(tmp_path / "k")],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "k" / "server.key_secret").is_file()
    assert (tmp_path / "k" / "authorized" / "client.key").is_file()
    stream_keys.ServerKeys(tmp_path / "k")
    stream_keys.ClientKeys(tmp_path / "k")


@pytest.fixture
def secured_monitor(keys):
    srv = monitor.MonitorServer("tcp://127.0.0.1:0", keys=stream_keys.ServerKeys(keys))
    srv.start()
    yield srv
    srv.close()


def test_monitor_answers_only_clients_with_authorized_keys(secured_monitor, keys, tmp_path):
    srv = secured_monitor
    srv.begin_series(make_start("secret"))
    srv.offer(block_values(0, 2))
    with monitor.MonitorClient(srv.endpoint, timeout_s=1.0) as plain:
        with pytest.raises(TimeoutError):
            plain.latest()
    stranger_dir = tmp_path / "stranger"        # valid keys, but not authorized by this IOC
    stream_keys.make_keys(stranger_dir)
    (stranger_dir / "server.key").write_bytes((keys / "server.key").read_bytes())
    with monitor.MonitorClient(srv.endpoint, timeout_s=1.0,
                               keys=stream_keys.ClientKeys(stranger_dir)) as stranger:
        with pytest.raises(TimeoutError):
            stranger.latest()
    assert srv.requests_served == 0
    for name in ("client", "beamline"):
        with monitor.MonitorClient(srv.endpoint, timeout_s=10,
                                   keys=stream_keys.ClientKeys(keys, name)) as client:
            assert client.series().series_id == "secret"
            assert client.latest().first_frame == 1


def test_stream_reaches_only_the_receiver_with_keys(keys):
    sender = StreamSender("tcp://127.0.0.1:0", keys=stream_keys.ServerKeys(keys))
    sender.start()
    got = {"plain": [], "keyed": []}
    stop = threading.Event()
    plain = StreamReceiver(sender.endpoint)
    keyed = StreamReceiver(sender.endpoint, keys=stream_keys.ClientKeys(keys))

    def collect(name, receiver):
        for msg in receiver.messages(stop):
            got[name].append(msg)

    threads = [threading.Thread(target=collect, args=item, daemon=True)
               for item in (("plain", plain), ("keyed", keyed))]
    for t in threads:
        t.start()
    try:
        assert sender.wait_for_receivers(1, timeout=10)
        start = make_start("keyed-run")
        sender.begin_series(start)
        for first in range(0, 20, 4):
            assert sender.offer(block_values(first, 4, bins=64), timeout=5)
        end = sender.end_series("done")
        assert end.frames_sent == 20 and end.frames_lost == 0
        deadline = threading.Event()
        for _ in range(100):
            if any(isinstance(m, wire.SeriesEnd) for m in got["keyed"]):
                break
            deadline.wait(0.1)
    finally:
        stop.set()
        for t in threads:
            t.join(5)
        plain.close()
        keyed.close()
        sender.close()
    frames = [m for m in got["keyed"] if isinstance(m, wire.FrameBlock)]
    assert got["keyed"][0] == start and sum(b.count for b in frames) == 20
    assert got["plain"] == []
