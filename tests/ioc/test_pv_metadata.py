"""Every numeric PV carries units and display limits; every writable one drive limits."""
from __future__ import annotations

from caproto import ChannelType

from xspress3.ioc.options import IocOptions
from xspress3.ioc.server import build_ioc_class

NUMERIC = (ChannelType.DOUBLE, ChannelType.LONG, ChannelType.INT, ChannelType.FLOAT)


def test_numeric_pvs_have_units_and_limits():
    options = IocOptions(channels=2, settings_file=None, stream=None, monitor=None, ts_points=16)
    group = build_ioc_class(options)(prefix="", options=options)
    checked = unitless = 0
    for name, pv in group.pvdb.items():
        if pv.data_type not in NUMERIC:
            continue
        checked += 1
        assert isinstance(pv.units, str) and pv.units.strip(), name
        if pv.units == "n/a":
            unitless += 1
        if pv.max_length <= 1:
            assert pv.lower_disp_limit < pv.upper_disp_limit, name
            if not type(pv).__name__.endswith("RO"):
                assert pv.lower_ctrl_limit < pv.upper_ctrl_limit, name
    assert checked > 500
    # "n/a" is the fallback for PVs without a unit word in their name: most have a real unit
    assert unitless < checked / 2, (unitless, checked)


def test_channel_access_clients_see_the_metadata(ioc):
    resp = ioc._pv("det1:AcquireTime", 5).read(data_type=ChannelType.CTRL_DOUBLE)
    md = resp.metadata
    assert md.units == b"s"
    assert (md.lower_ctrl_limit, md.upper_ctrl_limit) == (1e-5, 53.6)
    assert md.lower_disp_limit < md.upper_disp_limit
    resp = ioc._pv("det1:ArrayCounter_RBV", 5).read(data_type=ChannelType.CTRL_LONG)
    assert resp.metadata.units == b"frames"
