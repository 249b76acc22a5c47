"""Property-based: random values of random types into every writable PV while runs go on.

The IOC must never die, every PV put to must still answer TIME, CTRL and STRING
reads, readbacks must stay within their limits, and every rejected put must come
back to the client with its reason.
"""
from __future__ import annotations

import threading
import time

import pytest
from caproto import ChannelType, ErrorResponseReceived, field_types
from hypothesis import HealthCheck, given, settings, strategies as st

from xspress3.ioc.options import IocOptions
from xspress3.ioc.server import build_ioc_class

# Puts that would wait for long runs, touch the file system at random paths, or
# are exercised on purpose by the background loop below.
EXCLUDED = {"det1:Acquire", "HDF1:Capture", "HDF1:FilePath", "det1:CONFIG_PATH",
            "det1:CONFIG_SAVE_PATH", "det1:SAVE_SETTINGS", "det1:RESTORE_SETTINGS",
            "HDF1:CreateDirectory", "SIM:InjectFault", "det1:DISCONNECT", "SIM:CountRate"}


def writable_pvs():
    """(suffix, limits or None) of every client-writable PV, from the IOC's own classes."""
    cls = build_ioc_class(IocOptions(channels=2, settings_file=None, stream=None, monitor=None,
                                     ts_points=16))
    group = cls(prefix="", options=IocOptions(channels=2, settings_file=None, stream=None,
                                              monitor=None, ts_points=16))
    out = []
    for name, pv in group.pvdb.items():
        if type(pv).__name__.endswith("RO") or name in EXCLUDED or "ROI:" in name and \
                not name.startswith(("MCA1ROI:1:", "MCA2ROI:48:")):
            continue
        lo, hi = getattr(pv, "lower_ctrl_limit", 0), getattr(pv, "upper_ctrl_limit", 0)
        out.append((name, (lo, hi) if lo != hi else None))
    return out


PVS = writable_pvs()
VALUES = st.one_of(
    st.integers(min_value=-2**31, max_value=2**31 - 1),
    st.floats(allow_nan=True, allow_infinity=True, width=64),
    st.text(max_size=60),
    st.sampled_from(["Yes", "No", "Internal", "Enable", "1", "", "TTL Both", "none"]),
)


@pytest.fixture(scope="module")
def storm_ioc(ioc):
    """The module IOC with a background loop of short acquisitions."""
    stop = threading.Event()
    runs = []

    def loop():
        while not stop.is_set():
            try:
                if ioc.get("det1:DetectorState_RBV") in ("Error", "Disconnected"):
                    ioc.put("det1:RESET", 1, timeout=10)
                ioc.put("det1:AcquireTime", 0.001, timeout=10)
                ioc.put("det1:NumImages", 5, timeout=10)
                ioc.put("det1:TriggerMode", "Internal", timeout=10)
                ioc.put("det1:Acquire", 1, timeout=20)
                runs.append(ioc.get("det1:DetectorState_RBV"))
            except Exception as ex:  # rejected or raced by the storm: try again
                runs.append(type(ex).__name__)
                time.sleep(0.05)

    thread = threading.Thread(target=loop, daemon=True)
    thread.start()
    yield ioc, runs, stop, thread
    stop.set()
    thread.join(60)


@settings(max_examples=250, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(target=st.sampled_from(PVS), value=VALUES)
def test_random_puts_never_kill_the_ioc(storm_ioc, target, value):
    ioc = storm_ioc[0]
    name, limits = target
    try:
        ioc.put_checked(name, value, timeout=10)
    except ErrorResponseReceived as ex:
        # the client gets the reason (StatusMessage_RBV gets it too, but the background
        # runs overwrite it at once; test_bad_input checks that path)
        text = bytes(ex.args[0].error_message).rstrip(b"\0").decode()
        assert text.startswith("Python exception:") and len(text) > 30, (name, value, text)
    except (TypeError, ValueError, OverflowError, RuntimeWarning):
        pass  # the client library could not encode the value for this channel type
    assert ioc.proc.poll() is None, ioc.output()[-3000:]
    pv = ioc._pv(name, 5)       # whatever happened, the PV still answers TIME/CTRL/STRING reads
    for kind in ("time", "control"):
        pv.read(data_type=field_types[kind][pv.channel.native_data_type], timeout=5)
    pv.read(data_type=ChannelType.STRING, timeout=5)
    if limits is not None:
        try:
            rbv = ioc.get(name + "_RBV", timeout=5)
        except Exception:
            return  # no readback twin
        if isinstance(rbv, (int, float)):
            assert limits[0] <= rbv <= limits[1], (name, rbv, limits)


def test_storm_left_a_working_ioc(storm_ioc):
    ioc, runs, stop, thread = storm_ioc
    stop.set()
    thread.join(60)
    assert not thread.is_alive()
    assert "Idle" in runs, runs[-20:]
    ioc.put("det1:Acquire", 0, timeout=20)
    ioc.put("det1:RESET", 1)
    for name, value in (("det1:NUM_CHANNELS", 4), ("det1:RecordMinX", 0),
                        ("det1:RecordSizeX", 4096), ("det1:AcquireTime", 0.001),
                        ("det1:NumImages", 3), ("det1:TriggerMode", "Internal"),
                        ("det1:CTRL_DTC", "Disable")):
        ioc.put(name, value)
    ioc.put("det1:Acquire", 1, timeout=20)
    assert ioc.get("det1:DetectorState_RBV") == "Idle"
    assert ioc.get("det1:ArrayCounter_RBV") == 3
