"""ophyd's areaDetector Xspress3 classes in a bluesky `count`, as beamline profiles use them."""
from __future__ import annotations

import json
import re
from pathlib import Path

import h5py
import numpy as np
import pytest
from ophyd.areadetector import cam as ad_cam
from ophyd.areadetector import plugins as ad_plugins

import ophyd_count  # the client script (its constants)
from clienthelp import ophyd_pv_suffixes, run_client
from xspress3.ioc import docs

ROIS = {1: (500, 300), 2: (800, 500)}  # ROI -> (MinX, SizeX), on channels 1 and 2
ORIGINAL_FRAMES = 7


def configure(ioc) -> None:
    """What a beamline sets once, outside the plan: the ROIs and a frame count."""
    ioc.put("det1:NumImages", ORIGINAL_FRAMES)
    for n in (1, 2):
        for r, (lo, size) in ROIS.items():
            ioc.put(f"MCA{n}ROI:{r}:MinX", lo)
            ioc.put(f"MCA{n}ROI:{r}:SizeX", size)
            ioc.put(f"MCA{n}ROI:{r}:Use", "Yes")


def run_count(ioc, out: Path, *extra: str) -> list:
    run_client(ioc, "ophyd_count.py", ioc.prefix, str(out), *extra)
    return json.loads(out.read_text())


def test_count_documents_carry_roi_and_deadtime_values(client_ioc, tmp_path):
    configure(client_ioc)
    exposure_before = client_ioc.get("det1:AcquireTime_RBV")
    assert exposure_before != ophyd_count.EXPOSURE_S
    documents = run_count(client_ioc, tmp_path / "documents.json")
    names = [name for name, _ in documents]
    assert names == ["start", "descriptor"] + ["event"] * ophyd_count.POINTS + ["stop"]
    stop = documents[-1][1]
    assert stop["exit_status"] == "success" and stop["num_events"]["primary"] == ophyd_count.POINTS

    keys = documents[1][1]["data_keys"]
    for n in (1, 2):
        assert keys[f"xsp3_channel{n}_roi1"]["source"] == f"PV:{client_ioc.pv(f'MCA{n}ROI:1:Total_RBV')}"
        assert keys[f"xsp3_channel{n}_dt_factor"]["source"] == f"PV:{client_ioc.pv(f'C{n}:DTFactor_RBV')}"
    assert documents[1][1]["hints"]["xsp3"]["fields"] == ["xsp3_channel1_roi1", "xsp3_channel2_roi1"]

    events = [doc for name, doc in documents if name == "event"]
    for event in events:
        data = event["data"]
        for n in (1, 2):
            assert data[f"xsp3_channel{n}_roi1"] > 0 and data[f"xsp3_channel{n}_roi2"] > 0
            assert data[f"xsp3_channel{n}_dt_factor"] >= 1.0
            assert 0.0 < data[f"xsp3_channel{n}_dead_time"] < 100.0
            assert data[f"xsp3_channel{n}_all_good"] <= data[f"xsp3_channel{n}_all_event"]
    # frames differ (random events), so the points are separate acquisitions
    assert len({e["data"]["xsp3_channel1_all_event"] for e in events}) > 1

    # the last event holds what the IOC still shows: compare with fresh reads
    last = events[-1]["data"]
    for n in (1, 2):
        spectrum = client_ioc.get(f"MCA{n}:ArrayData")
        for r, (lo, size) in ROIS.items():
            assert last[f"xsp3_channel{n}_roi{r}"] == client_ioc.get(f"MCA{n}ROI:{r}:Total_RBV")
            assert last[f"xsp3_channel{n}_roi{r}"] == spectrum[lo:lo + size].sum()
        assert last[f"xsp3_channel{n}_dt_factor"] == client_ioc.get(f"C{n}:DTFactor_RBV")
        assert last[f"xsp3_channel{n}_dead_time"] == client_ioc.get(f"C{n}:DeadTime_RBV")
    # staging set the frames per point; unstaging put frames and exposure back
    assert client_ioc.get("det1:ArrayCounter_RBV") == ophyd_count.FRAMES_PER_POINT
    assert client_ioc.get("det1:NumImages_RBV") == ORIGINAL_FRAMES
    assert client_ioc.get("det1:AcquireTime_RBV") == exposure_before
    assert client_ioc.get("det1:DetectorState_RBV") == "Idle"


def test_the_ioc_serves_every_pv_of_ophyds_xspress3_camera():
    served = set(docs.build_group(1, prefix="").pvdb)
    names = ophyd_pv_suffixes(ad_cam.Xspress3DetectorCam, "det1:")
    fields = {n for n in names if "." in n}  # record fields (DataType_RBV.DISA): see the HDF5 test
    assert not sorted(names - fields - served)


@pytest.mark.parametrize("plugin", ["HDF5Plugin", "HDF5Plugin_V34"])
def test_the_ioc_serves_every_pv_of_ophyds_hdf5_plugin(plugin):
    served = set(docs.build_group(1, prefix="").pvdb)
    names = ophyd_pv_suffixes(getattr(ad_plugins, plugin), "HDF1:")
    assert not sorted(names - served)


def test_hdf5_plugin_resource_names_the_file_written(client_ioc, tmp_path):
    configure(client_ioc)
    out_dir = tmp_path / "data"
    out_dir.mkdir()
    documents = run_count(client_ioc, tmp_path / "documents.json", "--hdf5", f"{out_dir}/")
    resources = [doc for name, doc in documents if name == "resource"]
    assert len(resources) == 1 and resources[0]["spec"] == "AD_HDF5"
    path = Path(resources[0]["root"]) / resources[0]["resource_path"]
    assert path.is_file(), (path, sorted(p.name for p in out_dir.iterdir()))
    events = [doc for name, doc in documents if name == "event"]
    frames = ophyd_count.POINTS * ophyd_count.FRAMES_PER_POINT
    with h5py.File(path, "r") as f:
        data = f["/entry/instrument/detector/data"][()]
    assert data.shape[0] == frames
    for point, event in enumerate(events):
        last_frame = data[(point + 1) * ophyd_count.FRAMES_PER_POINT - 1]
        lo, size = ROIS[1]
        assert event["data"]["xsp3_channel1_roi1"] == np.sum(last_frame[0, lo:lo + size])
        assert re.fullmatch(r"[0-9a-f-]+/\d+", event["data"]["xsp3_image"])
