"""The vocabulary (xspress3/vocabulary.py and the enums of ioc/enums.py) agrees with
every place that still spells a fact out: the PV enum strings and the driver."""
from __future__ import annotations

from xspress3 import vocabulary as v
from xspress3.driver import Scaler, constants
from xspress3.ioc import channel_pvs, enums
from xspress3.writers import layout, wire


def test_pv_enum_strings_are_the_vocabulary_members():
    assert enums.TRIGGER_MODES == tuple(m.value for m in v.TriggerMode)
    assert enums.COMPRESSION == tuple(c.value for c in v.Compression)
    assert enums.SCA_NAMES == v.SCA_LABELS
    assert enums.TS_ACQUIRE_MODES == tuple(m.value for m in enums.TsMode)
    assert set(enums.TS_CONTROL) <= {a.value for a in enums.TsAction}
    assert set(enums.NO_YES) == {m.value for m in enums.NoYes}
    assert set(enums.DISABLE_ENABLE) == {m.value for m in enums.DisableEnable}
    assert set(enums.DISABLED_ENABLED) == {m.value for m in enums.DisabledEnabled}
    assert {m.value for m in enums.DataType} <= set(enums.DATA_TYPES)


def test_counts_and_layouts_agree():
    assert channel_pvs.NUM_ROIS == v.NUM_ROIS
    assert channel_pvs.NUM_SCAS == v.NUM_SCAS == len(v.Sca) == 11
    assert tuple(s.name for s in Scaler) == v.SCALER_NAMES == wire.SCALER_NAMES
    assert constants.TICKS_PER_SECOND == wire.TICKS_PER_SECOND == v.TICKS_PER_SECOND == 80_000_000
    assert layout.NDATTR_SUFFIXES[v.SCA_SCALERS:] == ("EventWidth", "DTFactor", "DTPercent")
    assert set(layout.COMPRESSIONS) | set(layout.UNSUPPORTED_COMPRESSIONS) == set(enums.COMPRESSION)


def test_trigger_mode_properties():
    software = {m for m in v.TriggerMode if m.software}
    at_once = {m for m in v.TriggerMode if m.starts_at_once}
    assert software == {v.TriggerMode.SOFTWARE, v.TriggerMode.SOFTWARE_INTERNAL}
    assert at_once == software | {v.TriggerMode.INTERNAL}
