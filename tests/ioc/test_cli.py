"""The xspress3-ioc command line: options, start-up report, --list-pvs, SIGINT."""
from __future__ import annotations

import os
import signal
import stat
import subprocess
import sys

from iochelp import IocProcess


def test_help_lists_the_options():
    result = subprocess.run([sys.executable, "-m", "xspress3.ioc.main", "--help"],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0
    for option in ("--prefix", "--channels", "--cards", "--frames-memory", "--sdk", "--config-dir",
                   "--settings", "--stream", "--monitor", "--interfaces", "--list-pvs", "-v",
                   "--access", "--data-root", "--stream-keys", "--stream-shm"):
        assert option in result.stdout, option


def test_start_up_report_and_list_pvs_and_ctrl_c(tmp_path):
    ioc = IocProcess(tmp_path, "--list-pvs", channels=2).start()
    assert ioc.stop(signal.SIGINT) == 0
    out = ioc.output()
    assert f"prefix {ioc.prefix}" in out and "PVs, 2 channels" in out
    assert "(simulator)" in out and "SIMULATION" in out
    assert f"stream tcp://127.0.0.1:{ioc.stream_port}" in out
    assert f"{ioc.prefix}det1:Acquire\n" in out and f"{ioc.prefix}MCA2:ArrayData\n" in out
    assert "stopped" in out


def test_stream_shm_puts_the_frame_memory_where_asked_and_removes_it_at_stop(tmp_path):
    shm = tmp_path / "shm"
    shm.mkdir()
    ioc = IocProcess(tmp_path, "--stream-shm", str(shm), channels=2).start()
    try:
        files = os.listdir(shm)
        assert files and all(name.startswith(f"xspress3-{ioc.proc.pid}-") for name in files), files
        assert all(stat.S_IMODE(os.stat(shm / name).st_mode) == 0o600 for name in files)
        assert f"frames in shared memory under {shm} for a receiver on this host" in ioc.output()
    finally:
        assert ioc.stop(signal.SIGINT) == 0
    assert os.listdir(shm) == []
    ioc = IocProcess(tmp_path, "--stream-shm", "none", channels=2).start()
    try:
        default = "/dev/shm"
        if os.path.isdir(default):
            assert not [n for n in os.listdir(default) if n.startswith(f"xspress3-{ioc.proc.pid}-")]
    finally:
        assert ioc.stop(signal.SIGINT) == 0


def test_a_stream_shm_that_is_not_a_writable_directory_stops_the_ioc_at_start(tmp_path):
    result = subprocess.run([sys.executable, "-m", "xspress3.ioc.main", "--stream-shm",
                             str(tmp_path / "missing"), "--settings", "none"],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert "--stream-shm" in result.stderr and "missing" in result.stderr


def test_a_missing_sdk_library_is_a_clear_error(tmp_path):
    result = subprocess.run([sys.executable, "-m", "xspress3.ioc.main", "--sdk",
                             str(tmp_path / "libxspress3.so"), "--settings", "none"],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode != 0
    assert "libxspress3.so" in result.stderr + result.stdout
    assert "Traceback" not in result.stderr


def test_zmq_sockets_listen_where_channel_access_does():
    from xspress3.ioc.main import parse_args
    options, _ = parse_args(["--interfaces", "127.0.0.1", "--settings", "none"])
    assert options.stream == "tcp://127.0.0.1:9999"
    assert options.monitor == "tcp://127.0.0.1:9998"
    options, _ = parse_args(["--settings", "none"])          # no --interfaces: all, as CA
    assert options.stream == "tcp://*:9999" and options.monitor == "tcp://*:9998"
    options, _ = parse_args(["--interfaces", "127.0.0.1", "--stream", "tcp://*:7000",
                             "--monitor", "none", "--settings", "none"])
    assert options.stream == "tcp://*:7000" and options.monitor is None


def test_listening_on_all_interfaces_is_said_at_start(tmp_path):
    from iochelp import free_port
    port = free_port()
    ioc = IocProcess(tmp_path, "--interfaces", "127.0.0.1", "--stream", f"tcp://*:{port}",
                     monitor=False)
    # IocProcess passes its own --stream first; the later one given here wins (argparse)
    ioc.start()
    assert ioc.stop() == 0
    out = ioc.output()
    assert f"listening on ALL network interfaces: tcp://*:{port}" in out, out
    quiet = IocProcess(tmp_path, "--interfaces", "127.0.0.1", monitor=False).start()
    assert quiet.stop() == 0
    assert "ALL network interfaces" not in quiet.output(), quiet.output()


def test_data_root_and_keys_are_said_at_start(tmp_path):
    from xspress3.writers.stream_keys import make_keys
    make_keys(tmp_path / "keys")
    (tmp_path / "data").mkdir()
    ioc = IocProcess(tmp_path, "--data-root", str(tmp_path / "data" / ".." / "data"),
                     "--stream-keys", str(tmp_path / "keys")).start()
    try:
        # the default /tmp/ is outside the root: FilePath starts at the (resolved) root
        assert ioc.get("HDF1:FilePath_RBV") == f"{tmp_path / 'data'}/"
        assert ioc.get("HDF1:FilePathExists_RBV") == "Yes"
    finally:   # a failed check must not leave the IOC running
        assert ioc.stop() == 0
    out = ioc.output()
    assert f"files only under the data root {tmp_path / 'data'}\n" in out, out
    assert f"stream and monitor need CURVE keys from {tmp_path / 'keys'}" in out, out
