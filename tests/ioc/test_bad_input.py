"""Bad puts are rejected at the put, say why in StatusMessage_RBV, and change nothing."""
from __future__ import annotations

import pytest
from caproto import ErrorResponseReceived

from iochelp import run_tool


def rejected(ioc, suffix, value, expect_in_message: str):
    before = ioc.get(suffix)
    with pytest.raises(ErrorResponseReceived):
        ioc.put_checked(suffix, value)
    message = ioc.get("det1:StatusMessage_RBV")
    assert expect_in_message in message, message
    assert suffix.split(":")[-1].split("_RBV")[0] in message
    assert ioc.get(suffix) == before
    return message


def test_out_of_limits(ioc):
    rejected(ioc, "det1:AcquireTime", 100.0, "Limits")
    rejected(ioc, "det1:AcquireTime", -1.0, "Limits")
    rejected(ioc, "det1:NumImages", 0, "Limits")
    rejected(ioc, "MCA1ROI:1:MinX", 5000, "Limits")
    rejected(ioc, "det1:C1_SCA4_THRESHOLD", -3, "Limits")


def test_a_rejected_put_is_one_log_line_without_traceback(ioc):
    rejected(ioc, "det1:NumImages", -5, "Limits")
    log = ioc.output()
    assert "NumImages rejected: Cannot write data -5" in log, log[-2000:]
    assert "Traceback" not in log and "Invalid write request" not in log, log[-4000:]


def test_wrong_enum_string(ioc):
    rejected(ioc, "det1:TriggerMode", "Sometimes", "Sometimes")
    rejected(ioc, "det1:TriggerMode", 12, "12")


def test_wrong_type_is_rejected_by_the_command_line_tool(ioc):
    before = ioc.get("det1:NumImages_RBV")
    result = run_tool(ioc, "caput", ioc.pv("det1:NumImages"), "many")
    output = result.stdout + result.stderr
    # caput sends the word as a DBR_STRING; the IOC refuses it and caput prints why
    assert "write request failed" in output and "'many' is not a number" in output, output
    assert ioc.get("det1:NumImages_RBV") == before
    assert ioc.get("det1:NumImages") == before


def test_window_low_above_high(ioc):
    ioc.put("det1:C2_SCA5_HLM", 100)
    rejected(ioc, "det1:C2_SCA5_LLM", 200, "above high limit")


def test_unsupported_run_flags_and_compression(ioc):
    rejected(ioc, "det1:RUN_FLAGS", 1, "playback")
    rejected(ioc, "HDF1:Compression", "szip", "not supported")


def test_numimages_above_memory_without_circular_buffer(ioc):
    ioc.put("det1:NumImages", 10)
    ioc.put("det1:CircularBuffer", "No")
    memory = ioc.get("det1:MAX_FRAMES_RBV")
    rejected(ioc, "det1:NumImages", memory + 1, "frame memory")
    ioc.put("det1:CircularBuffer", "Yes")
    ioc.put("det1:NumImages", memory + 1)
    assert ioc.get("det1:NumImages_RBV") == memory + 1
    rejected(ioc, "det1:CircularBuffer", "No", "frame memory")
    ioc.put("det1:NumImages", 10)


def test_settings_fixed_while_acquiring_and_second_acquire(ioc):
    ioc.put("det1:TriggerMode", "Internal")
    ioc.put("det1:AcquireTime", 0.01)
    ioc.put("det1:NumImages", 100000)
    thread = ioc.acquire_in_background(timeout=60)
    ioc.wait_for("det1:Acquire_RBV", lambda v: v == "Acquiring", timeout=20)
    try:
        rejected(ioc, "det1:AcquireTime", 0.5, "while acquiring")
        rejected(ioc, "det1:TriggerMode", "TTL Veto Only", "while acquiring")
        rejected(ioc, "det1:ERASE", 1, "while acquiring")
        with pytest.raises(ErrorResponseReceived):
            ioc.put_checked("det1:Acquire", 1, timeout=5)
        assert "already running" in ioc.get("det1:StatusMessage_RBV")
        assert ioc.get("det1:Acquire_RBV") == "Acquiring"
    finally:
        ioc.put("det1:Acquire", 0, timeout=20)
        thread.join(20)
    assert ioc.get("det1:AcquireTime_RBV") == pytest.approx(0.01)
    assert ioc.get("det1:DetectorState_RBV") == "Aborted"


def test_soft_trigger_outside_software_mode(ioc):
    rejected(ioc, "det1:SoftTrigger", 1, "Software")
