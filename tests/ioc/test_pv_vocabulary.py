"""The PV modules take their facts from the vocabulary (xspress3/vocabulary.py,
ioc/enums.py) rather than spelling them out again (issue 15, item 3)."""
from __future__ import annotations

import re
from pathlib import Path

import pytest

from xspress3 import vocabulary as v
from xspress3.ioc import channel_pvs, detector_pvs, enums, file_pvs, pvtypes

IOC = Path(enums.__file__).parent
PV_MODULES = sorted(IOC.glob("*_pvs.py")) + [IOC / "pvtypes.py"]

#: literals that have a name in the vocabulary: the int32 limit, the default bins,
#: inline ("Done", ...) enum tuples, display strings compared in logic
FORBIDDEN = {
    "int32 limit": re.compile(r"2\s*\*\*\s*31"),
    "bin count": re.compile(r"\b409[56]\b"),
    "inline Done tuple": re.compile(r"\(\s*\"Done\"\s*,\s*\"\w+\"\s*\)"),
    "display-string comparison": re.compile(
        r"(==|!=)\s*\"(Open|Closed|Enable|Disable|Enabled|Yes|No|Erase|Erase/Start)\"|"
        r"in \(\"(Enable|Open|Yes)\""),
}


@pytest.mark.parametrize("path", PV_MODULES, ids=lambda p: p.name)
def test_pv_module_spells_no_vocabulary_fact(path):
    # HDF1:QueueSize's 4096 is ADCore's default queue length, not a bin count
    text = "\n".join(line for line in path.read_text().splitlines() if "QueueSize" not in line)
    found = {what: pattern.findall(text) for what, pattern in FORBIDDEN.items()}
    assert {what: hits for what, hits in found.items() if hits} == {}


def test_pv_modules_found():
    names = {p.name for p in PV_MODULES}
    assert {"detector_pvs.py", "channel_pvs.py", "file_pvs.py", "sim_pvs.py",
            "adbase_pvs.py", "plugin_pvs.py", "pvtypes.py"} <= names


def test_limits_and_bins_come_from_the_vocabulary():
    assert pvtypes.INT32 == (v.INT32_MIN, v.INT32_MAX) == (-2**31, 2**31 - 1)
    det = detector_pvs.DetectorPVs
    assert det.record_size_x.pvspec.value == v.DEFAULT_BINS
    assert _limit(det.record_min_x) == v.DEFAULT_BINS - 1
    assert _limit(det.num_images) == v.INT32_MAX
    assert _limit(file_pvs.FilePVs.file_number) == v.INT32_MAX
    roi = channel_pvs.RoiPVs
    assert _limit(roi.size_x) == v.DEFAULT_BINS
    assert _limit(roi.min_x) == v.DEFAULT_BINS - 1


def _limit(prop) -> int:
    return prop.pvspec.cls_kwargs["upper_ctrl_limit"]


def test_enum_members_match_their_pv_strings():
    assert enums.GATE == tuple(g.value for g in enums.Gate) == ("Closed", "Open")
    assert enums.TRIGGER_MODES[1] == v.TriggerMode.INTERNAL
    assert detector_pvs.DetectorPVs.trigger_mode.pvspec.value == "Internal"
    assert file_pvs.FilePVs.compression.pvspec.value == "None"
