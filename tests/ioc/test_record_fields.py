"""Every served PV answers the fields of its record type, as an EPICS IOC does.

The walk covers every PV the IOC serves (names and metadata from the IOC's own
group built in-process, with the subprocess's options), reading its fields and
TIME/CTRL/STRING reads of its value over Channel Access, many channels at once.
What each field must say is derived here from what Channel Access itself reports
about the PV (native type, element count, access rights, CTRL metadata), so the
walk checks the field machinery against the PV, not against itself.
"""
from __future__ import annotations

import asyncio

import math
import subprocess
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from caproto import AccessRights, ChannelType, ErrorResponse, field_types

from iochelp import close_context, epics_tool
from xspress3.ioc.options import IocOptions
from xspress3.ioc.server import build_ioc_class

#: PVs that cannot be read yet, by a declaration fault outside this machinery;
#: add an entry only with its reason (the walk then skips it).
KNOWN_UNREADABLE: dict = {}
REFERENCE = Path(__file__).resolve().parents[3] / "shared" / "reference" / "ad-records-4ch.tsv"
MBB_FIELDS = ("ZRST", "ONST", "TWST", "THST", "FRST", "FVST", "SXST", "SVST",
              "EIST", "NIST", "TEST", "ELST", "TVST", "TTST", "FTST", "FFST")
COMMON = ("RTYP", "DESC", "SCAN", "STAT", "SEVR")
#: Fields read over Channel Access for every PV; the others of its record type are read
#: for every PV from the same field objects in-process (caproto's Context lookup, as the
#: server does), since ~10 fields of each of ~11 000 PVs over CA would take minutes.
CA_FIELDS = ("RTYP", "DESC")


def served_group(prefix: str, channels: int = 4):
    """The IOC's PV group built in-process with the options IocProcess gives the
    subprocess: the names (and docs) of every PV it serves."""
    options = IocOptions(channels=channels, settings_file=None, stream=None, monitor=None)
    return build_ioc_class(options)(prefix=prefix, options=options)


def connect_all(ctx, names, timeout=30.0, batch=500):
    """Connect many channels at once; {name: PV}."""
    out = {}
    for i in range(0, len(names), batch):
        chunk = names[i:i + batch]
        pvs = ctx.get_pvs(*chunk, timeout=timeout)
        for name, pv in zip(chunk, pvs):
            pv.wait_for_connection(timeout=timeout)
            out[name] = pv
    return out


def read_all(pvs: dict, data_type=None, timeout=30.0, batch=500) -> dict:
    """Read every PV (data_type: a ChannelType, a callable PV -> ChannelType, or
    None for native) with all reads in flight at once; {name: response}, None for
    reads the server did not answer (it failed them)."""
    results = {}
    names = list(pvs)
    for i in range(0, len(names), batch):
        chunk = names[i:i + batch]
        done = threading.Event()
        lock = threading.Lock()
        pending = [len(chunk)]

        def callback(name):
            def store(response):
                with lock:
                    results[name] = response
                    pending[0] -= 1
                    if pending[0] == 0:
                        done.set()
            return store

        for name in chunk:
            pv = pvs[name]
            dtype = data_type(pv) if callable(data_type) else data_type
            pv.read(wait=False, callback=callback(name),
                    data_type="native" if dtype is None else dtype)
        if not done.wait(timeout):   # an unanswered read: the server failed it
            for name in chunk:
                results.setdefault(name, None)
    return results


def read_in_process(pvdb: dict, names: list) -> dict:
    """Read record fields as DBR_STRING from the field objects a server Context
    resolves for these names; {name: response-like object with .data}."""
    from types import SimpleNamespace

    from xspress3.ioc.ca_server import SafeContext

    async def run() -> dict:
        context = SafeContext(dict(pvdb))   # the Context caches fields in its own dict
        out = {}
        for name in names:
            _metadata, data = await context[name].read(ChannelType.STRING)
            out[name] = SimpleNamespace(data=data)
        return out
    return asyncio.run(run())


def text(response) -> str:
    return response.data[0].decode("latin-1")


def native(pv):
    return pv.channel.native_data_type


def expected_record_type(pv) -> str:
    """The default rule, from what the client sees of the channel."""
    writable = AccessRights.WRITE in pv.channel.access_rights
    dtype, count = native(pv), pv.channel.native_data_count
    if dtype == ChannelType.ENUM:
        return None   # needs the number of states: see the caller
    if dtype == ChannelType.STRING:
        return "stringout" if writable else "stringin"
    if dtype == ChannelType.CHAR or count > 1:
        return "waveform"
    if dtype in (ChannelType.DOUBLE, ChannelType.FLOAT):
        return "ao" if writable else "ai"
    return "longout" if writable else "longin"


def walk_declared(pv):
    """A record type declared for this PV (pvtypes.record_type, pvproperty(record=))."""
    record = pv.pvspec.record
    return record if isinstance(record, str) else None


def fields_of(rtyp: str, nstates: int) -> tuple:
    if rtyp in ("ai", "ao"):
        extra = ("EGU", "PREC", "HOPR", "LOPR") + (("DRVH", "DRVL") if rtyp == "ao" else ())
    elif rtyp in ("longin", "longout"):
        extra = ("EGU", "HOPR", "LOPR") + (("DRVH", "DRVL") if rtyp == "longout" else ())
    elif rtyp == "waveform":
        extra = ("NELM", "NORD", "FTVL")
    elif rtyp in ("bi", "bo"):
        extra = ("ZNAM", "ONAM")
    elif rtyp in ("mbbi", "mbbo"):
        extra = MBB_FIELDS[:min(nstates + 1, 16)]
    else:
        extra = ()
    return COMMON + extra


@pytest.fixture(scope="module")
def walk(ioc):
    """Every PV's CTRL/TIME/STRING reads and the fields of its record type."""
    group = served_group(ioc.prefix)
    names = [n for n in group.pvdb if n[len(ioc.prefix):] not in KNOWN_UNREADABLE]
    ctx = ioc.context()
    try:
        t0 = time.monotonic()
        pvs = connect_all(ctx, names)
        ctrl = read_all(pvs, lambda pv: field_types["control"][native(pv)])
        timed = read_all(pvs, lambda pv: field_types["time"][native(pv)])
        strings = read_all(pvs, ChannelType.STRING)
        classes = read_all(pvs, ChannelType.CLASS_NAME)    # caproto's own RTYP answer
        record = {}
        field_names = []
        for name, pv in pvs.items():
            if ctrl[name] is None:
                continue      # reported by test_every_pv_answers_time_ctrl_and_string_reads
            nstates = len(ctrl[name].metadata.enum_strings) \
                if native(pv) == ChannelType.ENUM else 0
            declared = walk_declared(group.pvdb[name])
            rtyp = declared or expected_record_type(pv)
            if rtyp is None:
                writable = AccessRights.WRITE in pv.channel.access_rights
                rtyp = ("bo" if nstates <= 2 else "mbbo") if writable else \
                    ("bi" if nstates <= 2 else "mbbi")
            record[name] = (rtyp, fields_of(rtyp, nstates))
            field_names += [f"{name}.{f}" for f in record[name][1]]
        over_ca = [n for n in field_names if n.rsplit(".", 1)[1] in CA_FIELDS]
        field_pvs = connect_all(ctx, over_ca, timeout=60.0)
        fields = read_all(field_pvs, ChannelType.STRING, timeout=60.0)
        fields.update(read_in_process(group.pvdb, [n for n in field_names if n not in fields]))
        elapsed = time.monotonic() - t0
        yield dict(prefix=ioc.prefix, group=group, pvs=pvs, classes=classes, ctrl=ctrl,
                   timed=timed, strings=strings, record=record, fields=fields, field_pvs=field_pvs, elapsed=elapsed)
    finally:
        close_context(ctx)


def test_walk_covers_every_pv_quickly(walk):
    assert len(walk["pvs"]) + len(KNOWN_UNREADABLE) == len(walk["group"].pvdb) > 3000
    assert len(walk["fields"]) > 6 * len(walk["pvs"])
    assert walk["elapsed"] < 180, walk["elapsed"]


def unreadable(walk, name) -> bool:
    return name[len(walk["prefix"]):] in KNOWN_UNREADABLE


def test_every_pv_answers_time_ctrl_and_string_reads(walk):
    failures = []
    for name, pv in walk["pvs"].items():
        if unreadable(walk, name):
            continue
        for kind, expected in (("timed", field_types["time"][native(pv)]),
                               ("ctrl", field_types["control"][native(pv)]),
                               ("strings", ChannelType.STRING)):
            response = walk[kind][name]
            if response is None or response.data_type != expected:
                failures.append(f"{name} {kind}")
    assert not failures, f"{len(failures)} reads failed: {failures[:30]}"


def test_known_unreadable_pvs_are_served(walk):
    """The exclusions above name PVs that exist (a stale entry fails here)."""
    for suffix in KNOWN_UNREADABLE:
        assert walk["prefix"] + suffix in walk["group"].pvdb, suffix


def test_common_fields_describe_the_pv(walk):
    failures = []
    for name, pv in walk["pvs"].items():
        if name not in walk["record"]:
            assert unreadable(walk, name), name
            continue
        rtyp, _ = walk["record"][name]
        f = {field: text(walk["fields"][f"{name}.{field}"]) for field in COMMON}
        doc = " ".join((walk["group"].pvdb[name].pvspec.doc or "").split())
        writable = AccessRights.WRITE in pv.channel.access_rights
        stamp = walk["timed"][name].metadata
        checks = {
                "RTYP": f["RTYP"] == rtyp,
            "CLASS_NAME": walk["classes"][name] is not None
            and walk["classes"][name].metadata.value.decode() == rtyp,
            "DESC": 0 < len(f["DESC"]) <= 40 and doc.startswith(f["DESC"]),
            "SCAN": f["SCAN"] == ("Passive" if writable else "I/O Intr"),
            "STAT": f["STAT"] == ("NO_ALARM" if stamp.status == 0 else f["STAT"]),
            "SEVR": f["SEVR"] == ("NO_ALARM", "MINOR", "MAJOR", "INVALID")[stamp.severity],
        }
        failures += [f"{name}.{k}={f.get(k)!r}" for k, ok in checks.items() if not ok]
    assert not failures, f"{len(failures)} fields wrong, e.g. {failures[:20]}"


def close(a: float, b: float) -> bool:
    return a == b or math.isclose(a, b, rel_tol=1e-6, abs_tol=1e-9)


def test_type_specific_fields_match_the_ctrl_metadata(walk):
    failures = []
    for name, pv in walk["pvs"].items():
        if name not in walk["record"]:
            assert unreadable(walk, name), name
            continue
        rtyp, fields = walk["record"][name]
        md = walk["ctrl"][name].metadata
        f = {field: text(walk["fields"][f"{name}.{field}"]) for field in fields}
        checks = {}
        if rtyp in ("ai", "ao", "longin", "longout"):
            checks["EGU"] = f["EGU"] == md.units.decode()
            checks["HOPR"] = close(float(f["HOPR"]), md.upper_disp_limit)
            checks["LOPR"] = close(float(f["LOPR"]), md.lower_disp_limit)
            if rtyp in ("ai", "ao"):
                checks["PREC"] = int(f["PREC"]) == md.precision
            if rtyp in ("ao", "longout"):
                checks["DRVH"] = close(float(f["DRVH"]), md.upper_ctrl_limit)
                checks["DRVL"] = close(float(f["DRVL"]), md.lower_ctrl_limit)
        elif rtyp == "waveform":
            count = pv.channel.native_data_count
            checks["NELM"] = int(f["NELM"]) == count
            checks["NORD"] = 0 <= int(f["NORD"]) <= count
            checks["FTVL"] = f["FTVL"] == {ChannelType.CHAR: "CHAR", ChannelType.DOUBLE: "DOUBLE",
                                           ChannelType.LONG: "LONG", ChannelType.FLOAT: "FLOAT",
                                           ChannelType.INT: "SHORT"}[native(pv)]
        elif rtyp in ("bi", "bo"):
            strings = [s.decode() for s in md.enum_strings] + ["", ""]
            checks["ZNAM"] = f["ZNAM"] == strings[0]
            checks["ONAM"] = f["ONAM"] == strings[1]
        elif rtyp in ("mbbi", "mbbo"):
            strings = [s.decode() for s in md.enum_strings] + [""] * 16
            for i, field in enumerate(MBB_FIELDS[:len(fields) - len(COMMON)]):
                checks[field] = f[field] == strings[i]
        failures += [f"{name}.{k}={f.get(k)!r}" for k, ok in checks.items() if not ok]
    assert not failures, f"{len(failures)} fields wrong, e.g. {failures[:20]}"


def test_fields_are_read_only_except_desc_scan_proc(ioc):
    ioc.put("det1:NumImages.DESC", "frames to take")
    assert ioc.get("det1:NumImages.DESC") == "frames to take"
    for field, value in (("RTYP", "ai"), ("EGU", "s"), ("DRVH", 5), ("NAME", "x"), ("STAT", 1)):
        with pytest.raises(Exception):
            ioc.put_checked(f"det1:NumImages.{field}", value, timeout=5)
    assert ioc.get("det1:NumImages.EGU") == "frames"
    too_long = np.frombuffer(b"x" * 60, dtype=np.uint8)
    response = ioc._pv("det1:NumImages.DESC", 5).write(too_long, data_type=ChannelType.CHAR,
                                                       wait=True, timeout=5)
    assert isinstance(response, ErrorResponse), response
    assert ioc.get("det1:NumImages.DESC") == "frames to take"
    with pytest.raises(Exception):
        ioc.put_checked("det1:NumImages.SCAN", 12, timeout=5)
    assert ioc.get("det1:NumImages.SCAN") == "Passive"
    assert ioc.get("det1:DataType_RBV.DISA") == 1     # set by the IOC, as areaDetector's


def tool(ioc, name, *args) -> str:
    result = subprocess.run(epics_tool(name) + list(args), env=ioc.env, capture_output=True,
                            text=True, timeout=30)
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


def test_epics_tools_read_and_write_fields(ioc):
    assert tool(ioc, "caget", "-t", ioc.pv("MCA1:ArrayData.EGU")).strip() == "counts"
    assert tool(ioc, "caget", "-t", ioc.pv("det1:TriggerMode.RTYP")).strip() == "mbbo"
    assert tool(ioc, "caget", "-t", ioc.pv("det1:TriggerMode.NAME")).strip() == \
        ioc.pv("det1:TriggerMode")
    assert tool(ioc, "caget", "-t", ioc.pv("HDF1:FileName.NELM")).strip() == "256"
    info = tool(ioc, "cainfo", ioc.pv("det1:AcquireTime.DRVH"))
    assert "DBF_DOUBLE" in info and "read, no write" in info, info
    tool(ioc, "caput", ioc.pv("det1:NumImages.DESC"), "set by caput")
    assert tool(ioc, "caget", "-t", ioc.pv("det1:NumImages.DESC")).strip() == "set by caput"


def test_proc_and_scan_process_the_time_series_read(ioc):
    ioc.put("det1:TriggerMode", "Internal")
    ioc.put("det1:AcquireTime", 0.01)
    ioc.put("det1:NumImages", 3)
    ioc.put("MCA1ROI:1:Use", "Yes")             # a series of ROI 1 is recorded
    ioc.put("MCA1ROI:TSControl", "Erase/Start")
    ioc.put("det1:Acquire", 1, timeout=30)     # a series to post
    ioc.put("MCA1ROI:TSControl", "Stop")
    values, sub, ctx = ioc.monitor("MCA1ROI:1:TSTotal")
    try:
        time.sleep(0.5)
        first = len(values)
        tool(ioc, "caput", ioc.pv("MCA1ROI:TSRead.PROC"), "1")
        deadline = time.monotonic() + 5
        while len(values) == first and time.monotonic() < deadline:
            time.sleep(0.05)
        assert len(values) > first, "PROC did not post the time series"
        tool(ioc, "caput", ioc.pv("MCA1ROI:TSRead.SCAN"), ".2 second")
        assert tool(ioc, "caget", "-t", ioc.pv("MCA1ROI:TSRead.SCAN")).strip() == ".2 second"
        before = len(values)
        time.sleep(1.5)
        scanned = len(values) - before
        assert scanned >= 4, f"{scanned} posts in 1.5 s at .2 second"
        tool(ioc, "caput", ioc.pv("MCA1ROI:TSRead.SCAN"), "Passive")
        time.sleep(0.4)
        stopped = len(values)
        time.sleep(1.0)
        assert len(values) == stopped, "Passive did not stop the scan"
    finally:
        sub.clear()
        close_context(ctx)


def reference_types() -> dict:
    lines = REFERENCE.read_text().splitlines()[1:]
    return {line.split("\t")[0]: line.split("\t")[1] for line in lines}


@pytest.mark.skipif(not REFERENCE.exists(), reason="reference record list not present")
def test_record_types_match_the_areadetector_ioc(walk, ioc):
    reference = reference_types()
    failures = []
    for name in walk["record"]:
        ref_name = "XSP3:" + name[len(ioc.prefix):]
        if ref_name in reference:
            served = text(walk["fields"][f"{name}.RTYP"])
            if served != reference[ref_name]:
                failures.append(f"{ref_name}: {served} (reference {reference[ref_name]})")
    assert not failures, f"{len(failures)} record types differ: {failures}"


def test_no_pv_builds_caproto_record_fields_at_start():
    """caproto's eager record fields cost seconds and hundreds of MB: none are built,
    not even for PVs that declare a record type; a field exists once asked for."""
    group = served_group("")
    assert all(pv.field_inst is None for pv in group.pvdb.values())
    assert all(len(pv.fields) == 0 for pv in group.pvdb.values())
    declared = group.pvdb["det1:DataType_RBV"]
    assert declared.reported_record_type == "mbbi"
    assert declared.fields["ZRST"].value == declared.enum_strings[0]
    with pytest.raises(KeyError):
        declared.get_field("DRVH")          # not a field of an mbbi record
