"""EnableCallbacks of the ROI-statistics, SCA and SCA time-series plugins stops their
work as in areaDetector: with Disable their statistics, values and time series are no
longer updated and their counters stop (as do those of the plugins they feed); Enable
resumes. Over Channel Access with a real IOC."""
from __future__ import annotations

import numpy as np

from test_rois_scas import acquire

COUNTERS = ("MCA1ROI:", "C1SCA:", "C1SCA:TS:", "MCA2ROI:", "C2SCA:", "C2SCA:TS:")


def _counts(ioc) -> dict:
    return {p: ioc.get(f"{p}ArrayCounter_RBV") for p in COUNTERS}


def _snapshot(ioc) -> dict:
    names = ["MCA1ROI:1:Total_RBV", "MCA1ROI:1:TSTotal", "MCA1ROI:1:TSMaxValue",
             "MCA1ROI:TSCurrentPoint", "C1SCA:TS:0:TimeSeries", "C1SCA:3:TSArrayValue",
             "C1SCA:TS:TSCurrentPoint", "C1SCA:3:ValueSum_RBV"]
    names += [f"C1SCA:{k}:Value_RBV" for k in (3, 4, 5, 6)]   # the ones that vary per frame
    return {name: np.atleast_1d(ioc.get(name)).copy() for name in names}


def _same(a: dict, b: dict) -> list:
    return [k for k in a if a[k].shape == b[k].shape and np.array_equal(a[k], b[k])]


def test_disabled_roi_statistics_and_sca_plugins_stop_updating(ioc):
    for n in (1, 2):
        ioc.put(f"MCA{n}ROI:1:Use", "Yes")
    try:
        acquire(ioc, 4)
        before, counts = _snapshot(ioc), _counts(ioc)
        assert before["MCA1ROI:1:Total_RBV"][0] > 0 and before["MCA1ROI:TSCurrentPoint"][0] == 4
        ioc.put("MCA1ROI:EnableCallbacks", "Disable")
        ioc.put("C1SCA:EnableCallbacks", "Disable")      # also stops C1SCA:TS:, which it feeds
        assert ioc.get("MCA1ROI:EnableCallbacks_RBV") == "Disable"
        acquire(ioc, 7)
        during = _snapshot(ioc)
        assert _same(before, during) == list(before)      # channel 1: nothing moved
        now = _counts(ioc)
        for prefix in ("MCA1ROI:", "C1SCA:", "C1SCA:TS:"):
            assert now[prefix] == counts[prefix], prefix
        for prefix in ("MCA2ROI:", "C2SCA:", "C2SCA:TS:"):
            assert now[prefix] == counts[prefix] + 7, prefix
        assert len(ioc.get("MCA2ROI:1:TSTotal")) == 7 and ioc.get("MCA2ROI:TSCurrentPoint") == 7
        assert len(ioc.get("C2SCA:TS:3:TimeSeries")) == 7

        # Enable: the time series show what is held at once, the next run updates everything
        ioc.put("MCA1ROI:EnableCallbacks", "Enable")
        ioc.put("C1SCA:EnableCallbacks", "Enable")
        assert len(ioc.get("MCA1ROI:1:TSTotal")) == 7
        assert len(ioc.get("C1SCA:TS:0:TimeSeries")) == 7
        acquire(ioc, 5)
        after = _snapshot(ioc)
        assert after["MCA1ROI:TSCurrentPoint"][0] == 5
        assert after["MCA1ROI:1:Total_RBV"][0] == ioc.get("MCA1ROI:1:TSTotal")[-1]
        assert _same(during, after) == []
        final = _counts(ioc)
        for prefix in COUNTERS:
            assert final[prefix] == now[prefix] + 5, prefix
    finally:
        for prefix in ("MCA1ROI:", "C1SCA:"):
            ioc.put(f"{prefix}EnableCallbacks", "Enable")


def test_disabled_sca_time_series_and_roisum_plugins(ioc):
    acquire(ioc, 3)
    held = ioc.get("C3SCA:TS:4:TimeSeries").copy()
    total = ioc.get("MCASUM3:ArrayData").copy()
    ioc.put("C3SCA:TS:EnableCallbacks", "Disable")
    ioc.put("ROISUM3:EnableCallbacks", "Disable")          # feeds MCASUM3:
    try:
        mcasum = ioc.get("MCASUM3:ArrayCounter_RBV")
        acquire(ioc, 6)
        np.testing.assert_array_equal(ioc.get("C3SCA:TS:4:TimeSeries"), held)
        assert len(ioc.get("C3SCA:4:TSArrayValue")) == 6   # the attribute plugin still works
        np.testing.assert_array_equal(ioc.get("MCASUM3:ArrayData"), total)
        assert ioc.get("MCASUM3:ArrayCounter_RBV") == mcasum
        assert not np.array_equal(ioc.get("MCASUM2:ArrayData"), ioc.get("MCASUM3:ArrayData"))
    finally:
        ioc.put("C3SCA:TS:EnableCallbacks", "Enable")
        ioc.put("ROISUM3:EnableCallbacks", "Enable")
    assert len(ioc.get("C3SCA:TS:4:TimeSeries")) == 6
