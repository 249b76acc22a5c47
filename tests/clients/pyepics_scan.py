"""A pyepics step scan of the Xspress3, written the way beamline scripts are.

Run as a script (`python pyepics_scan.py PREFIX POINTS`) with the IOC's CA
environment (pyepics reads it at import). Prints one JSON object: per point the
ROI total, deadtime factor and percent, and the spectrum sum over the ROI; plus
every ArrayCounter_RBV value a monitor saw, and the monitored counter and
state as they stood when each Acquire put completed.
"""
from __future__ import annotations

import json
import sys
import time

import epics
import numpy as np

ROI = (500, 300)  # MinX, SizeX of ROI 1 on channel 1
FRAMES = 4
EXPOSURE_S = 0.01


def wait_until(predicate, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        epics.poll(0.02, 0.1)
    return False


def main(prefix: str, points: int) -> dict:
    def pv(suffix: str) -> str:
        return prefix + suffix

    for suffix, value in (("det1:TriggerMode", "Internal"), ("det1:AcquireTime", EXPOSURE_S),
                          ("det1:NumImages", FRAMES), ("MCA1ROI:1:MinX", ROI[0]),
                          ("MCA1ROI:1:SizeX", ROI[1]), ("MCA1ROI:1:Use", "Yes")):
        if epics.caput(pv(suffix), value, wait=True, timeout=10) != 1:
            raise RuntimeError(f"caput {suffix} failed")

    counts = []
    counter = epics.PV(pv("det1:ArrayCounter_RBV"), auto_monitor=True,
                       callback=lambda value=None, **kw: counts.append(int(value)))
    if not wait_until(lambda: counts, 10):
        raise RuntimeError("no monitor update from ArrayCounter_RBV")

    state = epics.PV(pv("det1:DetectorState_RBV"), auto_monitor=True)
    if not state.wait_for_connection(10):
        raise RuntimeError("DetectorState_RBV did not connect")

    result = {"points": [], "counter_updates": counts}
    for _ in range(points):
        # a put with callback on Acquire returns when the frames are in, and only
        # after the monitors have delivered the run's end state: the monitored
        # values are read at once, from pyepics' cache, as ophyd reads them
        if epics.caput(pv("det1:Acquire"), 1, wait=True, timeout=60) != 1:
            raise RuntimeError("Acquire put did not complete")
        monitored = {"monitored_frames": int(counter.value), "monitored_state": state.char_value}
        def get(suffix: str, **kw):
            return epics.caget(pv(suffix), use_monitor=False, timeout=10, **kw)

        spectrum = get("MCA1:ArrayData")
        result["points"].append({
            "state": get("det1:DetectorState_RBV", as_string=True),
            "frames": get("det1:ArrayCounter_RBV"),
            "roi_total": get("MCA1ROI:1:Total_RBV"),
            "roi_from_spectrum": float(np.sum(spectrum[ROI[0]:ROI[0] + ROI[1]])),
            "dt_factor": get("C1:DTFactor_RBV"),
            "dead_time": get("C1:DeadTime_RBV"),
            "sca_dt_factor": get("C1SCA:9:Value_RBV"),
            **monitored,
        })
    wait_until(lambda: counts and counts[-1] == FRAMES, 10)
    counter.clear_callbacks()
    return result


if __name__ == "__main__":
    print(json.dumps(main(sys.argv[1], int(sys.argv[2]))), flush=True)
