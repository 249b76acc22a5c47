"""db_docs/pvs.md and the screens are what `xspress3-docs` generates from the code."""
from __future__ import annotations

import difflib
import re
import shutil
from pathlib import Path

import pytest

from xspress3.ioc import docs
from xspress3.ioc.channel_pvs import NUM_ROIS

DB_DOCS = Path(__file__).resolve().parents[2] / "db_docs"
ROW_NAME = re.compile(r"^\| `([^`]+)` \|")


def reference_names(text: str) -> list:
    return [m.group(1) for line in text.splitlines() if (m := ROW_NAME.match(line))]


def expand(names, channels: int) -> set:
    out = set()
    for name in names:
        for n in range(1, channels + 1) if "{n}" in name else [None]:
            for r in range(1, NUM_ROIS + 1) if "{r}" in name else [None]:
                out.add(name.replace("{n}", str(n)).replace("{r}", str(r)))
    return out


def test_checked_in_files_are_what_the_code_generates():
    files = docs.generate()
    for rel, text in files.items():
        path = DB_DOCS / rel
        assert path.is_file(), f"{rel} missing: run `xspress3-docs`"
        checked_in = path.read_text(encoding="utf-8")
        if checked_in != text:
            diff = "".join(list(difflib.unified_diff(
                checked_in.splitlines(True), text.splitlines(True), "checked in", "generated"))[:60])
            pytest.fail(f"{rel} is out of date; run `xspress3-docs`:\n{diff}")
    assert docs.main(["--check", "--out", str(DB_DOCS)]) == 0


def test_check_mode_fails_on_edits_and_stale_screens_then_write_repairs(tmp_path):
    out = tmp_path / "db_docs"
    shutil.copytree(DB_DOCS, out)
    assert docs.main(["--check", "--out", str(out)]) == 0
    reference = out / docs.PV_REFERENCE
    reference.write_text(reference.read_text().replace("det1:AcquireTime", "det1:ExposureTime"))
    (out / docs.SCREEN_DIR / "old_screen.bob").write_text("<display/>")
    assert docs.main(["--check", "--out", str(out)]) == 1
    assert docs.main(["--out", str(out)]) == 0
    assert not (out / docs.SCREEN_DIR / "old_screen.bob").exists()
    assert docs.main(["--check", "--out", str(out)]) == 0


def test_reference_lists_exactly_the_pvs_the_ioc_serves():
    """Expanding {n} and {r} in the reference gives the PV set of a real IOC class, for
    two channel counts, so no PV is missing, stale or left channel-specific."""
    names = reference_names((DB_DOCS / docs.PV_REFERENCE).read_text())
    assert len(names) == len(set(names)), "a PV is listed twice"
    for channels in (1, 3):
        root = docs.build_group(channels, prefix="")
        assert expand(names, channels) == set(root.pvdb)


def test_reference_states_the_pv_count_formula_of_the_code():
    fixed, sim, per_channel, per_roi = docs.pv_counts()
    text = (DB_DOCS / docs.PV_REFERENCE).read_text()
    assert f"{fixed} + N × ({per_channel} + {NUM_ROIS} × {per_roi}) PVs" in text
    for channels in (1, 2, 4):
        assert len(docs.build_group(channels).pvdb) == fixed + channels * (per_channel + NUM_ROIS * per_roi)


def test_rows_carry_type_access_units_limits_and_choices():
    rows = {row.name: row for section in docs.sections(docs.build_group(1)) for row in section.rows}
    exposure = rows["det1:AcquireTime"]
    assert (exposure.type, exposure.access, exposure.units) == ("double", "RW", "s")
    assert exposure.limits == "1e-05 .. 53.6"
    assert rows["det1:TriggerMode"].choices.startswith("0 Software, 1 Internal, 2 IDC")
    assert rows["det1:DetectorState_RBV"].access == "RO"
    assert rows["MCA{n}:ArrayData"].type == "double[4096]"
    assert rows["HDF1:FilePath"].type == "char[256] (text)"
    assert rows["MCA{n}ROI:{r}:Total_RBV"].doc
    assert all(row.doc for row in rows.values()), [n for n, r in rows.items() if not r.doc]


def test_generic_names_cover_every_channel_pattern():
    assert docs.generic_name("MCA1ROI:1:MinX") == "MCA{n}ROI:{r}:MinX"
    assert docs.generic_name("MCA1ROI:TSControl") == "MCA{n}ROI:TSControl"
    assert docs.generic_name("det1:C1_SCA5_LLM") == "det1:C{n}_SCA5_LLM"
    assert docs.generic_name("C1SCA:10:Value_RBV") == "C{n}SCA:10:Value_RBV"
    assert docs.generic_name("det1:Acquire") == "det1:Acquire"
