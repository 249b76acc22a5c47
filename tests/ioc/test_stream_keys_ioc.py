"""`xspress3-ioc --stream-keys DIR` on a real IOC: the stream and monitor serve only
clients that hold the keys (`xspress3-receive --keys`, `xspress3-monitor --keys`);
a client without keys gets nothing."""
from __future__ import annotations

import subprocess
import sys
import time

import h5py
import pytest

from iochelp import IocProcess
from xspress3.writers import stream_keys


def receiver(endpoint, out, *extra):
    return subprocess.Popen([sys.executable, "-m", "xspress3.writers.receive", "--connect", endpoint,
                             "--output", str(out), "--max-series", "1", "--quiet", *extra],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def monitor(endpoint, *extra):
    return subprocess.run([sys.executable, "-m", "xspress3.writers.monitor", "--connect", endpoint,
                           "--count", "1", "--timeout", "2", *extra],
                          capture_output=True, text=True, timeout=60)


@pytest.fixture(scope="module")
def keyed(tmp_path_factory):
    base = tmp_path_factory.mktemp("keyed")
    stream_keys.make_keys(base / "keys")
    proc = IocProcess(base, "--stream-keys", str(base / "keys")).start()
    proc.base = base
    try:
        yield proc
    finally:
        assert proc.stop() == 0, proc.output()[-4000:]


def test_only_the_receiver_with_keys_gets_the_run(keyed):
    base = keyed.base
    (base / "plain").mkdir()
    (base / "with-keys").mkdir()
    plain = receiver(keyed.stream_endpoint, base / "plain")
    good = receiver(keyed.stream_endpoint, base / "with-keys", "--keys", str(base / "keys"))
    try:
        keyed.wait_for("det1:StreamReceivers_RBV", lambda v: v >= 1, timeout=20)
        time.sleep(0.5)            # both have tried to connect; only one handshake succeeds
        keyed.put("det1:TriggerMode", "Internal")
        keyed.put("det1:AcquireTime", 0.002)
        keyed.put("det1:NumImages", 40)
        keyed.put("det1:Acquire", 1, wait=True, timeout=60)
        out, err = good.communicate(timeout=60)
        assert good.returncode == 0, err
        assert keyed.get("det1:StreamFramesSent_RBV") == 40
        assert keyed.get("det1:StreamFramesLost_RBV") == 0
        files = list((base / "with-keys").glob("*.h5"))
        assert len(files) == 1
        with h5py.File(files[0], "r") as f:
            assert f["/entry/instrument/detector/data"].shape[0] == 40
        assert plain.poll() is None            # still waiting: it never saw the series
        assert list((base / "plain").iterdir()) == []
    finally:
        for p in (plain, good):
            if p.poll() is None:
                p.kill()
            p.communicate(timeout=10)


def test_only_the_monitor_client_with_keys_gets_an_answer(keyed):
    base = keyed.base
    without = monitor(keyed.monitor_endpoint)
    assert without.returncode == 1 and "no reply" in without.stdout, without.stdout
    with_keys = monitor(keyed.monitor_endpoint, "--keys", str(base / "keys"))
    assert with_keys.returncode == 0, with_keys.stderr
    assert "total counts" in with_keys.stdout or "no frame yet" in with_keys.stdout, with_keys.stdout


def test_unusable_keys_stop_the_ioc_at_start(tmp_path):
    (tmp_path / "empty").mkdir()
    done = subprocess.run([sys.executable, "-m", "xspress3.ioc.main", "--stream-keys", str(tmp_path / "empty"),
                           "--settings", "none", "--stream", "none", "--monitor", "none"],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 2 and "server.key_secret: no such key file" in done.stderr, done.stderr
