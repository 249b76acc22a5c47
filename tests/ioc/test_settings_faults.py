"""Settings survive a restart; SDK faults put the IOC in Error and a reset recovers."""
from __future__ import annotations

import json
import re

import pytest

from iochelp import IocProcess


def test_settings_survive_a_restart(tmp_path):
    settings = tmp_path / "xsp3.json"
    first = IocProcess(tmp_path, monitor=False, settings=settings).start()
    try:
        first.put("det1:AcquireTime", 0.25)
        first.put("det1:NumImages", 77)
        first.put("det1:TriggerMode", "TTL Veto Only")
        first.put("det1:RecordMinX", 100)
        first.put("MCA2ROI:3:Name", "Fe Ka")
        first.put("MCA2ROI:3:MinX", 620)
        first.put("MCA2ROI:3:SizeX", 40)
        first.put("MCA2ROI:3:Use", "Yes")
        first.put("det1:C3_SCA6_HLM", 900)
        first.put("det1:C3_SCA4_THRESHOLD", 12)
        first.put("HDF1:FileName", "scan_a")
        first.put("HDF1:FilePath", str(tmp_path))
        first.put("HDF1:Compression", "BSLZ4")
    finally:
        assert first.stop() == 0
    saved = json.loads(settings.read_text())["pvs"]
    assert saved["det1:AcquireTime"] == pytest.approx(0.25)
    second = IocProcess(tmp_path, monitor=False, settings=settings, prefix=first.prefix).start()
    try:
        assert second.get("det1:AcquireTime_RBV") == pytest.approx(0.25)
        assert second.get("det1:NumImages_RBV") == 77
        assert second.get("HDF1:NumCapture_RBV") == 77
        assert second.get("det1:TriggerMode_RBV") == "TTL Veto Only"
        assert second.get("det1:RecordMinX_RBV") == 100
        assert second.get("det1:RecordSizeX_RBV") == 3996
        assert second.get("MCA2ROI:3:Name_RBV") == "Fe Ka"
        assert second.get("MCA2ROI:3:MinX_RBV") == 620
        assert second.get("MCA2ROI:3:SizeX_RBV") == 40
        assert second.get("MCA2ROI:3:Use_RBV") == "Yes"
        assert second.get("det1:C3_SCA6_HLM_RBV") == 900
        assert second.get("det1:C3_SCA4_THRESHOLD_RBV") == 12
        assert second.get("HDF1:FileName_RBV") == "scan_a"
        assert second.get("HDF1:Compression_RBV") == "BSLZ4"
    finally:
        assert second.stop() == 0


def test_unreadable_settings_file_keeps_defaults(tmp_path):
    settings = tmp_path / "broken.json"
    settings.write_text("{ not json")
    ioc = IocProcess(tmp_path, monitor=False, settings=settings).start()
    try:
        assert ioc.get("det1:AcquireTime_RBV") == pytest.approx(1.0)
        assert ioc.get("det1:DetectorState_RBV") == "Idle"
    finally:
        assert ioc.stop() == 0
    assert "unreadable" in ioc.output()


def test_invalid_saved_values_are_skipped_and_reported(tmp_path):
    """A value that does not fit its PV (hand-edited file, older IOC) is reported
    by name and skipped; the rest restores and the IOC works."""
    settings = tmp_path / "edited.json"
    bad = {"det1:TriggerMode": 65535, "HDF1:FileName": "x" * 1000, "det1:NumImages": "many",
           "det1:AcquireTime": float("nan"), "MCA1ROI:1:Use": -1}
    good = {"det1:AcquirePeriod": 0.5, "MCA1ROI:1:MinX": 100, "HDF1:FilePath": str(tmp_path)}
    settings.write_text(json.dumps({"version": 1, "pvs": {**bad, **good}}))
    ioc = IocProcess(tmp_path, monitor=False, settings=settings).start()
    try:
        assert ioc.get("det1:AcquirePeriod_RBV") == pytest.approx(0.5)
        assert ioc.get("MCA1ROI:1:MinX_RBV") == 100
        assert ioc.get("HDF1:FilePath_RBV").rstrip("/") == str(tmp_path)
        assert ioc.get("det1:TriggerMode_RBV") in ("Software", "Internal")
        assert ioc.get("HDF1:FileName_RBV") != "x" * 1000
        assert ioc.get("det1:AcquireTime_RBV") == pytest.approx(1.0)
        assert ioc.get("MCA1ROI:1:Use_RBV") in ("No", "Yes")
        ioc.put("det1:TriggerMode", "Internal")
        ioc.put("det1:AcquireTime", 0.005)
        ioc.put("det1:NumImages", 2)
        ioc.put("det1:Acquire", 1, timeout=30)
        assert ioc.get("det1:ArrayCounter_RBV") == 2
    finally:
        assert ioc.stop() == 0
    log = ioc.output()
    for suffix in bad:
        assert re.search(rf"saved setting {re.escape(suffix)}=.* skipped: \S", log), \
            (suffix, log[-3000:])
    assert "restored 3 settings" in log, log[-3000:]
    saved = json.loads(settings.read_text())["pvs"]   # the skipped values are not written back
    assert saved["det1:TriggerMode"] != 65535 and saved["det1:NumImages"] != "many"


STAGES = [   # (SDK call that fails, its code, trigger mode that reaches it)
    ("xsp3_histogram_stop", -2, "Internal"),          # first call of every start sequence
    ("xsp3_histogram_clear", -1, "Internal"),
    ("xsp3_set_run_flags", -6, "Internal"),           # configure
    ("xsp3_set_glob_timeA", -3, "Internal"),
    ("xsp3_itfg_setup", -6, "Internal"),
    ("xsp3_histogram_arm", -1, "TTL Both"),           # arm (external modes)
    ("xsp3_histogram_start", -1, "Internal"),         # start
    ("xsp3_scaler_check_progress_details", -5, "Internal"),   # progress
    ("xsp3_histogram_read4d", -6, "Internal"),        # read-out
    ("xsp3_scaler_read", -8, "Internal"),
]


@pytest.mark.parametrize("function,code,mode", STAGES)
def test_sdk_fault_sets_error_and_reset_recovers(ioc, function, code, mode):
    ioc.put("det1:TriggerMode", mode)
    ioc.put("det1:AcquireTime", 0.002)
    ioc.put("det1:NumImages", 5)
    ioc.put("SIM:FaultFunction", function)
    ioc.put("SIM:FaultCode", code)
    ioc.put("SIM:FaultAfter", 0)
    ioc.put("SIM:InjectFault", 1)
    try:
        ioc.put_checked("det1:Acquire", 1, timeout=30)
    except Exception as ex:   # the put callback reports the failure
        assert "ErrorResponse" in type(ex).__name__
    else:
        pytest.fail(f"a fault in {function} did not fail the acquisition")
    assert ioc.get("det1:DetectorState_RBV") == "Error"
    message = ioc.get("det1:StatusMessage_RBV")
    assert function in message and "simulated fault" in message, message
    assert ioc.get("det1:Acquire_RBV") == "Done"
    ioc.put("det1:RESET", 1)
    assert ioc.get("det1:DetectorState_RBV") == "Idle"
    ioc.put("det1:TriggerMode", "Internal")
    ioc.put("det1:Acquire", 1, wait=True, timeout=30)
    assert ioc.get("det1:ArrayCounter_RBV") == 5
    assert ioc.get("det1:DetectorState_RBV") == "Idle"


def test_connect_fault_then_reconnect(ioc):
    ioc.put("SIM:FaultFunction", "xsp3_config")
    ioc.put("SIM:FaultCode", -9)
    ioc.put("SIM:InjectFault", 1)
    with pytest.raises(Exception) as info:
        ioc.put_checked("det1:CONNECT", 1)
    assert "ErrorResponse" in type(info.value).__name__
    assert ioc.get("det1:DetectorState_RBV") == "Disconnected"
    assert ioc.get("det1:CONNECTED") == "Disconnected"
    assert "xsp3_config" in ioc.get("det1:StatusMessage_RBV")
    ioc.put("det1:CONNECT", 1)
    assert ioc.get("det1:CONNECTED") == "Connected"
    assert ioc.get("det1:DetectorState_RBV") == "Idle"
    ioc.put("det1:NumImages", 3)
    ioc.put("det1:Acquire", 1, wait=True, timeout=30)
    assert ioc.get("det1:ArrayCounter_RBV") == 3


def test_sdk_calibration_save_and_restore(ioc, tmp_path):
    ioc.put("det1:C1_SCA5_LLM", 0)
    ioc.put("det1:C1_SCA5_HLM", 321)
    ioc.put("det1:CONFIG_SAVE_PATH", str(tmp_path))
    ioc.put("det1:SAVE_SETTINGS", 1)
    assert "saved" in ioc.get("det1:StatusMessage_RBV")
    ioc.put("det1:C1_SCA5_HLM", 999)
    ioc.put("det1:CONFIG_PATH", str(tmp_path))
    ioc.put("det1:RESTORE_SETTINGS", 1)
    assert ioc.get("det1:C1_SCA5_HLM_RBV") == 321
    assert "restored" in ioc.get("det1:StatusMessage_RBV")
    ioc.put("det1:CONFIG_PATH", str(tmp_path / "missing"))
    with pytest.raises(Exception):
        ioc.put_checked("det1:RESTORE_SETTINGS", 1)
    assert "xsp3_restore_settings" in ioc.get("det1:StatusMessage_RBV")
