"""NSLS-II's Xspress3 detector (nslsii.areadetector.xspress3.build_xspress3_class) against
the IOC, as beamline profiles declare and use it: every component connects, and a bluesky
`count` takes its points with the HDF5 file written by the IOC's HDF1: plugin.

pyepics (under ophyd) reads the CA environment when it is imported, so the client runs
as its own process: this file run as a script with the IOC's environment.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

CHANNELS = (1, 2, 3, 4)
ALL_ROIS = tuple(range(1, 49))  # the 48 MCAROIs per channel a full profile declares
ROIS = {1: (500, 300), 2: (800, 500), 3: (1300, 200), 4: (0, 4096)}  # count: ROI -> MinX, SizeX
POINTS = 3
EXPOSURE_S = 0.2  # Xspress3Trigger.trigger returns None if the frame ends before it returns
PATH_TEMPLATE = "xspress3/%Y/%m/%d"  # under the root, as profiles date their data directories
CONNECT_TIMEOUT_S = 15.0  # served PVs connect at once; a broken one waits this long


# ---------------------------------------------------------------- the client (a script)

def make_detector(prefix: str, mcarois, root: str = "/tmp"):
    """The detector as a profile builds it: 4 channels, the MCAROIs, the file plugin on HDF1:."""
    from nslsii.areadetector.xspress3 import (Xspress3HDF5Plugin, Xspress3Trigger,
                                              build_xspress3_class)
    from ophyd import Component as Cpt
    from ophyd.areadetector import Xspress3Detector

    cls = build_xspress3_class(
        channel_numbers=CHANNELS, mcaroi_numbers=mcarois, image_data_key="fluor",
        xspress3_parent_classes=(Xspress3Detector, Xspress3Trigger),
        extra_class_members={"hdf5plugin": Cpt(Xspress3HDF5Plugin, "HDF1:", name="h5p",
                                                root_path=root, path_template=PATH_TEMPLATE,
                                                resource_kwargs={})})
    return cls(prefix, name="xs")


def unconnected(det) -> list:
    """PV names of every signal of the device (lazy ones included) that is not connected."""
    out = set()
    for walk in det.walk_signals(include_lazy=True):
        sig = walk.item
        if hasattr(sig, "pvname") and not sig.connected:  # unreachable, or no valid first value
            out.add(sig.pvname)
            out.add(getattr(sig, "setpoint_pvname", sig.pvname))
    return sorted(out)


def connect(prefix: str) -> dict:
    import ophyd
    ophyd.Device.lazy_wait_for_connection = False  # build first; connect below, all at once
    det = make_detector(prefix, ALL_ROIS)
    try:
        det.wait_for_connection(all_signals=True, timeout=CONNECT_TIMEOUT_S)
    except TimeoutError as exc:
        return {"error": str(exc)[:500], "unconnected": unconnected(det)}
    return {"error": None, "signals": sum(1 for _ in det.walk_signals(include_lazy=True))}


def plain(value):
    import numpy as np
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    return value


def count(prefix: str, root: str) -> list:
    import bluesky.plans as bp
    from bluesky import RunEngine

    det = make_detector(prefix, tuple(ROIS), root=root)
    det.wait_for_connection(timeout=CONNECT_TIMEOUT_S)
    for channel in det.iterate_channels():  # what a profile's ROI setup does
        channel.kind = "normal"  # (build_xspress3_class's kind=normal "does not stick")
        for number, (lo, size) in ROIS.items():
            mcaroi = channel.get_mcaroi(mcaroi_number=number)
            mcaroi.configure_mcaroi(min_x=lo, size_x=size, roi_name=f"roi{number}")
            mcaroi.total_rbv.kind = "hinted"
    det.stage_sigs.update([("cam.trigger_mode", "Internal"), ("cam.acquire_time", EXPOSURE_S),
                           ("cam.num_images", 1)])
    documents = []
    RE = RunEngine({})
    RE.subscribe(lambda name, doc: documents.append([name, plain(doc)]))
    RE(bp.count([det], num=POINTS))
    return documents


def main(argv: list) -> int:
    if argv[0] == "connect":
        print(json.dumps(connect(argv[1])))
    else:
        Path(argv[3]).write_text(json.dumps(count(argv[1], argv[2])))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))


# ---------------------------------------------------------------- the tests

import h5py  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

from clienthelp import last_json_line, run_client  # noqa: E402

DATA_KEY = "entry/instrument/detector/data"


def test_every_component_connects(client_ioc):
    result = last_json_line(run_client(client_ioc, Path(__file__).name, "connect",
                                       client_ioc.prefix).stdout)
    if result["error"]:
        missing = [pv[len(client_ioc.prefix):] for pv in result["unconnected"]]
        pytest.fail(f"{len(missing)} PVs did not connect: {missing[:60]}\n{result['error']}",
                    pytrace=False)
    assert result["signals"] > len(CHANNELS) * len(ALL_ROIS) * 6


@pytest.fixture(scope="module")
def counted(client_ioc, tmp_path_factory):
    """One `count` of the detector: its documents and the data root."""
    root = tmp_path_factory.mktemp("nslsii-data")
    client_ioc.put("HDF1:FileWriteMode", "Single")  # staging must set what it needs itself
    out = root / "documents.json"
    run_client(client_ioc, Path(__file__).name, "count", client_ioc.prefix, str(root), str(out))
    return json.loads(out.read_text()), root


def by_name(documents, name) -> list:
    return [doc for n, doc in documents if n == name]


def test_count_runs_and_names_its_file(counted):
    documents, root = counted
    stop = by_name(documents, "stop")[0]
    assert stop["exit_status"] == "success" and stop["num_events"]["primary"] == POINTS
    resources = {r["spec"]: r for r in by_name(documents, "resource")}
    assert set(resources) == {"XSP3", "XSP3_FLY"}
    # both name the one file the IOC wrote, under the root, in the dated directory
    paths = {Path(r["root"]) / r["resource_path"] for r in resources.values()}
    assert len(paths) == 1
    path = paths.pop()
    assert path.is_file() and Path(resources["XSP3"]["root"]) == root
    assert path.parent.relative_to(root).parts[0] == "xspress3"


def test_the_file_holds_every_point_and_the_data_read_matches_it(counted, client_ioc):
    from databroker.assets.handlers import Xspress3HDF5Handler

    documents, _ = counted
    resource = {r["spec"]: r for r in by_name(documents, "resource")}["XSP3"]
    path = Path(resource["root"]) / resource["resource_path"]
    with h5py.File(path, "r") as f:
        data = f[DATA_KEY][()]
    assert data.shape[:2] == (POINTS, len(CHANNELS)) and data.any()

    datums = {d["datum_id"]: d for d in by_name(documents, "datum")}
    handler = Xspress3HDF5Handler(str(path), **resource["resource_kwargs"])
    events = by_name(documents, "event")
    assert [e["seq_num"] for e in events] == list(range(1, POINTS + 1))
    try:
        for point, event in enumerate(events):
            for n in CHANNELS:
                datum = datums[event["data"][f"xs_channel{n:02d}_fluor"]]
                assert datum["datum_kwargs"] == {"frame": point, "channel": n}
                spectrum = handler(**datum["datum_kwargs"])  # as databroker fills the event
                assert np.array_equal(spectrum, data[point, n - 1])
                for number, (lo, size) in ROIS.items():
                    total = event["data"][f"xs_channel{n:02d}_mcaroi{number:02d}_total_rbv"]
                    assert total == spectrum[lo:lo + size].sum(), (point, n, number)
    finally:
        handler.close()
    # the last frame is what the MCA plugins still serve
    for n in CHANNELS:
        assert np.array_equal(data[-1, n - 1], client_ioc.get(f"MCA{n}:ArrayData")[:data.shape[-1]])
    assert len({e["data"]["xs_channel01_mcaroi04_total_rbv"] for e in events}) == POINTS


def test_unstage_closes_the_file_and_restores_settings(counted, client_ioc):
    assert client_ioc.get("HDF1:Capture_RBV") == "Done"
    assert client_ioc.get("HDF1:FileWriteMode") == "Single"
    assert client_ioc.get("det1:DetectorState_RBV") == "Idle"
    for n in CHANNELS:
        assert client_ioc.get(f"MCA{n}ROI:1:Name") == "roi1"
        assert client_ioc.get(f"MCA{n}ROI:2:MinX") == ROIS[2][0]
