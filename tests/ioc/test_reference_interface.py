"""The served PV set against the areaDetector Xspress3 IOC's (4 channels, prefix XSP3:).

The reference table (../shared/reference/ad-records-4ch.tsv beside the repository)
lists every record that IOC serves. Every name we share must have its native DBR
type, element-count class, enum strings and record type; at least 99 % of its
names must be served; every difference is listed in db_docs/interface-differences.md.
"""
from __future__ import annotations

import re
from pathlib import Path

import pytest
from caproto import ChannelType

from xspress3.ioc.options import IocOptions
from xspress3.ioc.server import build_ioc_class

REPO = Path(__file__).resolve().parents[2]
REFERENCE = REPO.parent / "shared" / "reference" / "ad-records-4ch.tsv"
DIFFERENCES = REPO / "db_docs" / "interface-differences.md"
PREFIX = "XSP3:"

DBR_NAMES = {ChannelType.STRING: "STRING", ChannelType.INT: "SHORT", ChannelType.FLOAT: "FLOAT",
             ChannelType.ENUM: "ENUM", ChannelType.CHAR: "CHAR", ChannelType.LONG: "LONG",
             ChannelType.DOUBLE: "DOUBLE"}


def load_reference() -> dict:
    """name -> (rtype, dbr, enum strings tuple, nelm)."""
    rows = {}
    for line in REFERENCE.read_text().splitlines()[1:]:
        pv, rtype, dbr, strings, nelm = line.split("\t")
        rows[pv[len(PREFIX):]] = (rtype, dbr, tuple(strings.split("|")) if dbr == "ENUM" else (),
                                  int(nelm))
    return rows


def default_record_type(pv) -> str:
    """The record type a PV reports when none is declared (pvtypes' rule)."""
    read_only = type(pv).__name__.endswith("RO")
    if pv.max_length > 1 or pv.data_type == ChannelType.CHAR:
        return "waveform"
    if pv.data_type == ChannelType.ENUM:
        if len(pv.enum_strings) <= 2:
            return "bi" if read_only else "bo"
        return "mbbi" if read_only else "mbbo"
    if pv.data_type == ChannelType.STRING:
        return "stringin" if read_only else "stringout"
    if pv.data_type in (ChannelType.LONG, ChannelType.INT):
        return "longin" if read_only else "longout"
    return "ai" if read_only else "ao"


def served_pvs(channels: int = 4) -> dict:
    """name (without prefix) -> (record type, dbr, enum strings, count class) of every PV."""
    options = IocOptions(channels=channels, settings_file=None, stream=None, monitor=None)
    group = build_ioc_class(options)(prefix=PREFIX, options=options)
    out = {}

    def walk(g):
        for attr, prop in type(g)._pvs_.items():
            pv = g.attr_pvdb[attr]
            rtyp = getattr(prop, "record_type_name", None) or default_record_type(pv)
            out[pv.pvname[len(PREFIX):]] = (
                rtyp, DBR_NAMES[pv.data_type],
                tuple(pv.enum_strings) if pv.data_type == ChannelType.ENUM else (),
                pv.max_length)
        for sub in g.groups.values():
            walk(sub)
    walk(group)
    return out


def count_class(dbr: str, nelm: int) -> str:
    if dbr == "CHAR" and nelm > 1:
        return f"CHAR[{nelm}]"
    if nelm > 1:
        return f"{dbr}[{nelm}]"
    return dbr


def differences(served: dict, reference: dict) -> dict:
    """name -> text, for every shared name whose type, count, strings or record differ."""
    out = {}
    for name in sorted(served.keys() & reference.keys()):
        rtyp, dbr, strings, nelm = served[name]
        rrtyp, rdbr, rstrings, rnelm = reference[name]
        problems = []
        if rdbr != "?" and dbr != rdbr:
            problems.append(f"dbr {dbr} != {rdbr}")
        elif rdbr in ("CHAR", "STRING") and (nelm > 1) != (rnelm > 1):
            problems.append(f"count {nelm} != {rnelm}")
        elif rdbr == "CHAR" and nelm != rnelm:
            problems.append(f"CHAR nelm {nelm} != {rnelm}")
        elif rdbr not in ("?",) and (nelm > 1) != (rnelm > 1):
            problems.append(f"count {nelm} != {rnelm}")
        if rdbr == "ENUM" and dbr == "ENUM" and strings != rstrings:
            problems.append(f"strings {'|'.join(strings)} != {'|'.join(rstrings)}")
        if rrtyp not in ("asyn",) and rtyp != rrtyp:
            problems.append(f"rtype {rtyp} != {rrtyp}")
        if problems:
            out[name] = "; ".join(problems)
    return out


def listed_differences() -> tuple[set, set]:
    """(deliberate differences, names not served) listed in interface-differences.md.

    Table rows start with a backticked name; the section heading says which list."""
    deliberate, missing = set(), set()
    current = None
    for line in DIFFERENCES.read_text().splitlines():
        if line.startswith("## "):
            current = missing if "not served" in line.lower() else deliberate
        m = re.match(r"\|\s*`([^`]+)`", line)
        if m and current is not None:
            current.add(m.group(1))
    return deliberate, missing


@pytest.fixture(scope="module")
def reference():
    if not REFERENCE.exists():
        pytest.skip(f"reference table {REFERENCE} not present")
    return load_reference()


@pytest.fixture(scope="module")
def served():
    return served_pvs()


def test_shared_names_have_the_reference_types(served, reference):
    deliberate, _ = listed_differences()
    found = differences(served, reference)
    unlisted = {k: v for k, v in found.items() if k not in deliberate}
    assert not unlisted, "\n".join(f"{k}: {v}" for k, v in sorted(unlisted.items())[:80])
    stale = sorted(deliberate - found.keys())
    assert not stale, f"listed as different but the same (or not shared): {stale[:40]}"


def test_reference_names_are_served(served, reference):
    _, listed_missing = listed_differences()
    missing = reference.keys() - served.keys()
    assert len(missing) <= 0.01 * len(reference), f"{len(missing)} of {len(reference)} missing"
    unlisted = sorted(missing - listed_missing)
    assert not unlisted, f"not served and not listed: {unlisted[:60]}"
    stale = sorted(listed_missing - missing)
    assert not stale, f"listed as not served but served (or not in the reference): {stale[:40]}"


if __name__ == "__main__":  # a report for the developer: python tests/ioc/test_reference_interface.py
    ref, srv = load_reference(), served_pvs()
    diffs = differences(srv, ref)
    print(f"served {len(srv)}, reference {len(ref)}, shared {len(srv.keys() & ref.keys())}, "
          f"differ {len(diffs)}, missing {len(ref.keys() - srv.keys())}")
    for k, v in diffs.items():
        print("DIFF", k, v)
    for k in sorted(ref.keys() - srv.keys()):
        print("MISSING", k, *ref[k])


def test_every_enum_value_is_one_of_its_strings():
    """A value outside its own strings makes every read of the PV fail."""
    options = IocOptions(channels=2, settings_file=None, stream=None, monitor=None, ts_points=16)
    group = build_ioc_class(options)(prefix=PREFIX, options=options)
    bad = [name for name, pv in group.pvdb.items()
           if pv.data_type == ChannelType.ENUM and pv.value not in pv.enum_strings]
    assert not bad


# ---- the plugin PVs tell the truth, over Channel Access ---------------------------------

def _acquire(ioc, frames: int, exposure: float = 0.02) -> None:
    ioc.put("det1:TriggerMode", "Internal")
    ioc.put("det1:AcquireTime", exposure)
    ioc.put("det1:NumImages", frames)
    ioc.put("det1:Acquire", 1, wait=True, timeout=60)


def test_plugin_counters_enable_and_roi_selection_follow_acquisitions(fresh_ioc):
    ioc = fresh_ioc
    assert ioc.get("MCA1:PluginType_RBV") == "NDPluginStdArrays"
    ioc.put("MCA1:ArrayCounter", 0)
    _acquire(ioc, 40, 0.02)
    counted = ioc.get("MCA1:ArrayCounter_RBV")
    assert counted == 40                      # every frame handled by the MCA1: plugin
    assert ioc.get("ROI1:ArrayCounter_RBV") == 40
    assert ioc.get("Proc1:ArrayCounter_RBV") == 40
    assert 5.0 < ioc.get("MCA1:ArrayRate_RBV") < 100.0   # ~50 frames/s at 20 ms
    assert ioc.get("MCA1:DroppedArrays_RBV") == 0
    assert ioc.get("MCA1:ArraySize0_RBV") == 4096
    spectrum = ioc.get("MCA1:ArrayData")
    assert len(spectrum) == 4096 and spectrum.sum() > 0

    # EnableCallbacks Disable: the plugin stops counting and MCA1:ArrayData stops updating
    ioc.put("det1:ERASE", 1)                        # also resets every plugin's counters
    assert ioc.get("MCA1:ArrayData").sum() == 0
    assert ioc.get("MCA1:ArrayCounter_RBV") == 0 and ioc.get("MCA1:ArrayCounter") == 0
    ioc.put("MCA1:EnableCallbacks", "Disable")
    assert ioc.get("MCA1:EnableCallbacks_RBV") == "Disable"
    _acquire(ioc, 10, 0.02)
    assert ioc.get("MCA1:ArrayCounter_RBV") == 0
    assert ioc.get("MCA1:ArrayData").sum() == 0
    assert ioc.get("MCA2:ArrayData").sum() > 0      # other channels' plugins still work
    assert ioc.get("MCA2:ArrayCounter_RBV") == 10
    ioc.put("MCA1:EnableCallbacks", "Enable")
    ioc.put("MCA1:ArrayCounter", 40)                # a write sets the count it goes on from

    # ROI1:MinX/SizeX select the bins MCA1:ArrayData shows
    ioc.put("ROI1:MinX", 100)
    ioc.put("ROI1:SizeX", 200)
    assert ioc.get("ROI1:MinX_RBV") == 100 and ioc.get("ROI1:SizeX_RBV") == 200
    _acquire(ioc, 5, 0.05)
    cropped = ioc.get("MCA1:ArrayData")
    assert len(cropped) == 200
    assert ioc.get("MCA1:ArraySize0_RBV") == 200
    assert ioc.get("MCA1:ArrayCounter_RBV") == 45
    full = ioc.get("MCA2:ArrayData")
    assert len(full) == 4096


def test_ctrl_dtc_and_its_readback_stay_readable(fresh_ioc):
    ioc = fresh_ioc
    assert ioc.get("det1:CTRL_DTC_RBV") == "Disabled"
    ioc.put("det1:CTRL_DTC", "Enable")
    assert ioc.get("det1:CTRL_DTC") == "Enable"
    assert ioc.get("det1:CTRL_DTC_RBV") == "Enabled"
    assert ioc.get("det1:DataType_RBV") == "Float64"
    ioc.put("det1:CTRL_DTC", 0)
    assert (ioc.get("det1:CTRL_DTC"), ioc.get("det1:CTRL_DTC_RBV")) == ("Disable", "Disabled")


def test_roi_reset_zeroes_that_rois_statistics(fresh_ioc):
    ioc = fresh_ioc
    ioc.put("MCA1ROI:1:Use", "Yes")
    _acquire(ioc, 3, 0.05)
    assert ioc.get("MCA1ROI:1:Total_RBV") > 0
    ioc.put("MCA1ROI:1:Reset", 1)
    assert ioc.get("MCA1ROI:1:Total_RBV") == 0.0
