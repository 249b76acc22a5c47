"""The areaDetector compatibility PVs: complete for ophyd, never shadowing, honest readbacks."""
from __future__ import annotations

import pytest
from caproto.server import pvproperty
from ophyd.areadetector import plugins as ad_plugins

from clienthelp import ophyd_pv_suffixes
from xspress3.ioc import adbase_pvs, file_pvs


def test_the_hdf1_namespace_holds_every_name_of_ophyds_plugins():
    ns = file_pvs._ns()  # extended by adbase_pvs.extend_file
    served = {"HDF1:" + p.pvspec.name for p in ns.values() if isinstance(p, pvproperty)}
    for plugin in (ad_plugins.HDF5Plugin, ad_plugins.HDF5Plugin_V34):
        assert not sorted(ophyd_pv_suffixes(plugin, "HDF1:") - served)


def test_a_compatibility_pv_never_shadows_a_real_one():
    with pytest.raises(ValueError, match="ad_zlevel"):
        adbase_pvs.extend_file({"ad_zlevel": pvproperty(name="Other", value=0, doc="taken")})
    with pytest.raises(ValueError, match="declared twice"):
        adbase_pvs.extend_file({"zlevel": pvproperty(name="ZLevel", value=0, doc="a real one")})
    with pytest.raises(ValueError, match="declared twice"):
        adbase_pvs.extend({"frame_type": pvproperty(name="FrameType", value=0, doc="a real one")})


def test_plain_no_ops_read_back_and_fixed_values_stay(client_ioc):
    client_ioc.put("det1:ShutterMode", "EPICS PV")
    assert client_ioc.get("det1:ShutterMode_RBV") == "EPICS PV"
    client_ioc.put("det1:Temperature", -30.0)
    assert client_ioc.get("det1:Temperature_RBV") == -30.0
    # an Xspress3 frame is always a normal frame: the write is accepted, the readback stays
    client_ioc.put("det1:FrameType", "Background")
    assert client_ioc.get("det1:FrameType_RBV") == "Normal"
    assert client_ioc.get("det1:FrameType") == "Normal"
    assert client_ioc.get("det1:MaxSizeX_RBV") == 4096
    assert client_ioc.get("det1:PoolUsedMem") == 0.0
