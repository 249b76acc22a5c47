"""The one time series of the IOC: ROI totals and SCA values per frame, fixed-length
and circular, as the readout records it and as the PVs serve it."""
from __future__ import annotations

import numpy as np
import pytest

from iochelp import PutFailed
from test_rois_scas import receive_run
from xspress3.ioc.readout import TimeSeries


def _frames(first: int, n: int, channels: int = 2) -> tuple:
    """n frames whose values are their frame numbers (every statistic of ROI 0 of
    channel 0, every SCA and the time stamp): the arguments of TimeSeries.append."""
    numbers = np.arange(first, first + n, dtype=float)
    sca = np.repeat(numbers[:, None, None], channels * 11, axis=1).reshape(n, channels, 11)
    stats = np.repeat(numbers[:, None, None], 5, axis=2)
    return ((0, 0),), stats, sca, numbers


@pytest.mark.parametrize("blocks", [[3, 3, 3], [1] * 9, [9], [4, 5]])
def test_fixed_length_stops_when_full(blocks):
    ts = TimeSeries(points=5, acquiring=True)
    first = 0
    for n in blocks:
        ts.append(*_frames(first, n))
        first += n
    assert ts.current == 5 and not ts.acquiring
    np.testing.assert_array_equal(ts.ordered(ts.roi((0, 0)))[:, 0], [0, 1, 2, 3, 4])
    np.testing.assert_array_equal(ts.ordered(ts.sca)[:, 1, 7], [0, 1, 2, 3, 4])


@pytest.mark.parametrize("blocks", [[3, 3, 3], [1] * 9, [9], [4, 5], [2, 7]])
def test_circular_keeps_the_newest_frames_in_order(blocks):
    ts = TimeSeries(points=5, acquiring=True, circular=True)
    first = 0
    for n in blocks:
        ts.append(*_frames(first, n))
        first += n
    assert ts.current == 5 and ts.acquiring and ts.written == 9
    np.testing.assert_array_equal(ts.ordered(ts.roi((0, 0)))[:, 0], [4, 5, 6, 7, 8])
    np.testing.assert_array_equal(ts.ordered(ts.sca)[:, 0, 10], [4, 5, 6, 7, 8])


def test_circular_before_it_wraps_and_after_erase():
    ts = TimeSeries(points=5, acquiring=True, circular=True)
    ts.append(*_frames(0, 3))
    np.testing.assert_array_equal(ts.ordered(ts.roi((0, 0)))[:, 0], [0, 1, 2])
    ts.erase()
    assert ts.current == 0 and ts.sca is None and ts.times is None and not ts.columns


def test_runs_record_from_empty_unless_a_user_started_the_series():
    ts = TimeSeries(points=10)
    ts.run_started()
    ts.append(*_frames(0, 3))
    ts.run_ended()
    assert not ts.acquiring and ts.current == 3
    ts.run_started()                      # the next run starts from an empty series
    assert ts.acquiring and ts.current == 0
    ts.append(*_frames(3, 2))
    ts.run_ended()
    ts.control("Start")                   # a user start keeps what is held and outlives runs
    assert ts.acquiring and ts.current == 2
    ts.run_started()
    ts.append(*_frames(5, 1))
    ts.run_ended()
    assert ts.acquiring and ts.current == 3
    np.testing.assert_array_equal(ts.ordered(ts.roi((0, 0)))[:, 0], [3, 4, 5])
    ts.control("Stop")
    assert not ts.acquiring
    ts.control("Erase/Start")
    assert ts.acquiring and ts.current == 0


def test_sca_time_series_matches_the_stream(ioc):
    ioc.put("MCA1ROI:TSControl", "Stop")
    ioc.put("C1SCA:TS:TSAcquire", 1)
    assert ioc.get("C3SCA:TS:TSAcquiring") == "Acquiring"
    assert ioc.get("MCA2ROI:TSAcquiring") == "Acquiring"     # one series for ROIs and SCAs
    blocks, end = receive_run(ioc, 20)
    assert end.frames_sent == 20
    scalers = np.concatenate([b.scalers for b in blocks])
    factor = np.concatenate([b.dtfactor for b in blocks])
    percent = np.concatenate([b.dtpercent for b in blocks])
    for k in (0, 3, 4, 7):
        np.testing.assert_array_equal(ioc.get(f"C2SCA:{k}:TSArrayValue"), scalers[:, 1, k])
        np.testing.assert_array_equal(ioc.get(f"C2SCA:TS:{k}:TimeSeries"), scalers[:, 1, k])
    np.testing.assert_allclose(ioc.get("C4SCA:9:TSArrayValue"), factor[:, 3])
    np.testing.assert_allclose(ioc.get("C1SCA:TS:10:TimeSeries"), percent[:, 0])
    np.testing.assert_array_equal(ioc.get("C1SCA:8:TSArrayValue"), [ioc.get("C1:EventWidth")] * 20)
    assert ioc.get("C1SCA:TS:TSCurrentPoint") == 20
    assert ioc.get("C1SCA:TS:TSAcquire") == "Acquire"       # started by hand: still recording
    ioc.put("C1SCA:TS:TSAcquire", 0)
    assert ioc.get("C1SCA:TS:TSAcquiring") == "Done"
    assert ioc.get("C1SCA:TS:TSAcquire") == "Done"
    assert ioc.get("MCA1ROI:TSAcquiring") == "Done"


def test_circular_time_series_holds_the_newest_frames(fresh_ioc):
    ioc = fresh_ioc
    ioc.put("MCA1ROI:1:Use", "Yes")
    ioc.put("MCA1ROI:1:MinX", 100)
    ioc.put("MCA1ROI:1:SizeX", 300)
    ioc.put("C2SCA:TS:TSNumPoints", 8)
    assert ioc.get("MCA4ROI:TSNumPoints") == 8 and ioc.get("C1SCA:TS:TSNumPoints") == 8
    ioc.put("C2SCA:TS:TSAcquireMode", "Circ. buffer")
    assert ioc.get("C4SCA:TS:TSAcquireMode") == "Circ. buffer"
    ioc.put("C1SCA:TS:TSAcquire", 1)
    with pytest.raises(PutFailed, match="while the time series is recording"):
        ioc.put("C1SCA:TS:TSAcquireMode", "Fixed length")
    assert "while the time series is recording" in ioc.get("det1:StatusMessage_RBV")
    blocks, _ = receive_run(ioc, 21)
    spectra = np.concatenate([b.spectra for b in blocks])
    scalers = np.concatenate([b.scalers for b in blocks])
    assert ioc.get("MCA1ROI:TSCurrentPoint") == 8
    assert ioc.get("C1SCA:TS:TSAcquiring") == "Acquiring"   # circular: never full
    np.testing.assert_allclose(ioc.get("MCA1ROI:1:TSTotal"), spectra[-8:, 0, 100:400].sum(axis=1))
    np.testing.assert_array_equal(ioc.get("C3SCA:4:TSArrayValue"), scalers[-8:, 2, 4])
    ioc.put("C1SCA:TS:TSAcquire", 0)
    ioc.put("C1SCA:TS:TSAcquireMode", "Fixed length")
    assert ioc.get("C1SCA:TS:TSCurrentPoint") == 0          # a mode change erases
    assert ioc.get("C1SCA:4:TSArrayValue") == 0.0             # an empty series reads as one 0


def test_resets_and_attribute_names(ioc):
    ioc.put("MCA2ROI:3:Use", "Yes")
    receive_run(ioc, 5)
    assert ioc.get("MCA2ROI:3:Total_RBV") > 0
    assert ioc.get("C1SCA:3:ValueSum_RBV") > 0 and ioc.get("C2SCA:3:ValueSum_RBV") > 0
    ioc.put("MCA2ROI:ResetAll", 1)
    assert ioc.get("MCA2ROI:3:Total_RBV") == 0
    ioc.put("C1SCA:Reset", 1)
    assert ioc.get("C1SCA:3:ValueSum_RBV") == 0
    kept = ioc.get("C2SCA:3:ValueSum_RBV")
    assert kept > 0                                        # only channel 1 was reset
    ioc.put("det1:EraseOnStart", "No")                    # the run adds to the sums
    try:
        blocks, _ = receive_run(ioc, 4)
    finally:
        ioc.put("det1:EraseOnStart", "Yes")
    scalers = np.concatenate([b.scalers for b in blocks])
    assert ioc.get("C1SCA:3:ValueSum_RBV") == float(scalers[:, 0, 3].sum())
    assert ioc.get("C2SCA:3:ValueSum_RBV") == kept + float(scalers[:, 1, 3].sum())
    ioc.put("MCA1ROI:TSRead", 1)
    ioc.put("C1SCA:TS:TSRead", 1)
    names = [ioc.get(f"C3SCA:{k}:AttrName_RBV") for k in range(11)]
    assert names == [f"CHAN3SCA{k}" for k in range(8)] + ["CHAN3EventWidth", "CHAN3DTFactor", "CHAN3DTPercent"]
    ioc.put("C3SCA:9:AttrName", "CHAN3DTFactor")            # the same name is accepted
    with pytest.raises(PutFailed, match="fixed"):
        ioc.put("C3SCA:9:AttrName", "Other")
    assert ioc.get("C3SCA:9:AttrName") == "CHAN3DTFactor"
