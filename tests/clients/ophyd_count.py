"""Run a bluesky `count` of an ophyd Xspress3 declared as beamline profiles declare it.

Run as a script (`python ophyd_count.py PREFIX OUT_JSON [--hdf5 DIR]`) with the CA
environment of the IOC: pyepics, under ophyd, reads it at import. Writes every
document of the run to OUT_JSON for the test to check.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
from bluesky import RunEngine
from bluesky.plans import count
from ophyd import Component as Cpt
from ophyd import Device, EpicsSignalRO
from ophyd import FormattedComponent as FCpt
from ophyd.areadetector import SingleTrigger, Xspress3Detector
from ophyd.areadetector.filestore_mixins import FileStoreHDF5IterativeWrite
from ophyd.areadetector.plugins import HDF5Plugin

EXPOSURE_S = 0.02
FRAMES_PER_POINT = 2
POINTS = 3


class Channel(Device):
    """One Xspress3 channel: ROI totals, scalers and deadtime of the latest frame."""

    def __init__(self, prefix, *, number: int, **kwargs):
        self.number = number
        super().__init__(prefix, **kwargs)

    roi1 = FCpt(EpicsSignalRO, "{self.prefix}MCA{self.number}ROI:1:Total_RBV", kind="hinted")
    roi2 = FCpt(EpicsSignalRO, "{self.prefix}MCA{self.number}ROI:2:Total_RBV")
    all_event = FCpt(EpicsSignalRO, "{self.prefix}C{self.number}SCA:3:Value_RBV")
    all_good = FCpt(EpicsSignalRO, "{self.prefix}C{self.number}SCA:4:Value_RBV")
    dt_factor = FCpt(EpicsSignalRO, "{self.prefix}C{self.number}:DTFactor_RBV")
    dead_time = FCpt(EpicsSignalRO, "{self.prefix}C{self.number}:DeadTime_RBV")


class HDF5(HDF5Plugin, FileStoreHDF5IterativeWrite):
    """The HDF5 plugin with ophyd's file-store mixin, as beamlines declare it."""


class Xspress3(SingleTrigger, Xspress3Detector):
    channel1 = Cpt(Channel, "", number=1)
    channel2 = Cpt(Channel, "", number=2)

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.stage_sigs.update([("cam.trigger_mode", "Internal"),
                                ("cam.acquire_time", EXPOSURE_S),
                                ("cam.num_images", FRAMES_PER_POINT)])


def make_detector(prefix: str, hdf5_dir: str = ""):
    if not hdf5_dir:
        return Xspress3(prefix, name="xsp3", read_attrs=["channel1", "channel2"])

    class Xspress3Files(Xspress3):
        hdf5 = Cpt(HDF5, "HDF1:", write_path_template=hdf5_dir, read_path_template=hdf5_dir,
                   root="/")

    return Xspress3Files(prefix, name="xsp3", read_attrs=["channel1", "channel2", "hdf5"])


def plain(value):
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    return value


def main(argv: list) -> int:
    prefix, out = argv[0], Path(argv[1])
    hdf5_dir = argv[3] if len(argv) > 3 and argv[2] == "--hdf5" else ""
    det = make_detector(prefix, hdf5_dir)
    det.wait_for_connection(timeout=30)
    documents = []
    RE = RunEngine({})
    RE.subscribe(lambda name, doc: documents.append([name, plain(doc)]))
    RE(count([det], num=POINTS))
    out.write_text(json.dumps(documents))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
