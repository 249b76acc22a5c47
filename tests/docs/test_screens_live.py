"""Every PV a checked-in Phoebus screen names exists in a running IOC, and every
widget that writes names a PV that accepts writes."""
from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from caproto import AccessRights

from iochelp import close_context
from xspress3.ioc import screens

SCREEN_DIR = Path(__file__).resolve().parents[2] / "db_docs" / "screens"
SCREEN_FILES = sorted(SCREEN_DIR.glob("*.bob"))
CHANNELS = 4  # the live_ioc fixture and the checked-in screens
WRITING_WIDGETS = ("textentry", "combo")
KNOWN_WIDGETS = {"label", "textupdate", "textentry", "combo", "led", "action_button", "xyplot"}


def resolve(pv: str, prefix: str) -> list:
    """The concrete names of a macro'd PV name: $(P) -> prefix, $(N) -> every channel."""
    name = pv.replace("$(P)", prefix)
    if "$(N)" in name:
        return [name.replace("$(N)", str(n)) for n in range(1, CHANNELS + 1)]
    assert "$(" not in name, f"unknown macro in {pv}"
    return [name]


def written_pvs(root: ET.Element) -> list:
    out = []
    for widget in root.iter("widget"):
        if widget.get("type") in WRITING_WIDGETS:
            out.append(widget.findtext("pv_name"))
    for action in root.iter("action"):
        if action.get("type") == "write_pv":
            out.append(action.findtext("pv_name"))
    return out


def test_screens_are_there_and_well_formed():
    names = {p.name for p in SCREEN_FILES}
    assert {screens.MAIN, screens.SPECTRUM, screens.CHANNELS, screens.SIMULATOR} <= names
    for path in SCREEN_FILES:
        root = ET.parse(path).getroot()
        assert root.tag == "display" and root.get("version") == "2.0.0", path.name
        kinds = {w.get("type") for w in root.iter("widget")}
        assert kinds <= KNOWN_WIDGETS, (path.name, kinds - KNOWN_WIDGETS)
        for file, macros in screens.linked_displays(path.read_text()):
            assert (SCREEN_DIR / file).is_file(), f"{path.name} opens missing {file}"
            assert macros.get("P") == "$(P)", f"{path.name} does not pass $(P) to {file}"


def test_main_screen_shows_what_an_operator_needs():
    names = set(screens.pv_names((SCREEN_DIR / screens.MAIN).read_text()))
    for suffix in ("det1:Acquire", "det1:TriggerMode", "det1:AcquireTime", "det1:NumImages",
                   "det1:DetectorState_RBV", "det1:StatusMessage_RBV", "det1:ArrayCounter_RBV",
                   "HDF1:Capture", "HDF1:FilePath", "HDF1:NumCaptured_RBV"):
        assert "$(P)" + suffix in names, suffix
    spectrum = set(screens.pv_names((SCREEN_DIR / screens.SPECTRUM).read_text()))
    assert "$(P)MCA$(N):ArrayData" in spectrum
    assert "$(P)MCA$(N)ROI:48:MinX" in spectrum and "$(P)MCA$(N)ROI:1:SizeX" in spectrum
    table = set(screens.pv_names((SCREEN_DIR / screens.CHANNELS).read_text()))
    for n in range(1, CHANNELS + 1):
        assert f"$(P)C{n}:DTFactor_RBV" in table and f"$(P)MCA{n}ROI:1:Total_RBV" in table


def test_every_screen_pv_exists_in_the_running_ioc(live_ioc):
    wanted, writable = set(), set()
    for path in SCREEN_FILES:
        text = path.read_text()
        for pv in screens.pv_names(text):
            wanted.update(resolve(pv, live_ioc.prefix))
        for pv in written_pvs(ET.fromstring(text)):
            writable.update(resolve(pv, live_ioc.prefix))
    assert len(wanted) > 500  # all four screens, every channel and ROI
    ctx = live_ioc.context()
    try:
        pvs = ctx.get_pvs(*sorted(wanted), timeout=5)
        missing, read_only = [], []
        for pv in pvs:
            try:
                pv.wait_for_connection(timeout=20)
            except TimeoutError:
                missing.append(pv.name)
                continue
            if pv.name in writable and not pv.channel.access_rights & AccessRights.WRITE:
                read_only.append(pv.name)
    finally:
        close_context(ctx)
    assert not missing, f"{len(missing)} screen PVs not served: {missing[:20]}"
    assert not read_only, f"widgets write to read-only PVs: {read_only[:20]}"


@pytest.mark.parametrize("channels", [1, 8])
def test_screens_for_other_channel_counts_name_only_real_pvs(channels):
    from xspress3.ioc import docs
    root = docs.build_group(channels)
    built = screens.build_screens(root.pvdb, channels)
    table = screens.pv_names(built[screens.CHANNELS])
    assert f"$(P)C{channels}:DTFactor_RBV" in table
    assert f"$(P)C{channels + 1}:DTFactor_RBV" not in table


def test_a_screen_naming_an_unknown_pv_is_refused():
    from xspress3.ioc import docs
    root = docs.build_group(1)
    known = set(root.pvdb) - {"$(P)det1:AcquireTime"}
    with pytest.raises(ValueError, match="det1:AcquireTime"):
        screens.build_screens(known, 1)
