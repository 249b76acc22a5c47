"""The NDPluginBase counters over Channel Access: HDF1:ArrayCounter_RBV and
ArrayRate_RBV count the frames the file writer wrote while capturing; det1:ERASE
resets every plugin's counters; every plugin's ArrayRate_RBV falls to 0 once a run
has ended."""
from __future__ import annotations

import time

from test_file_capture import arm_capture
from test_rois_scas import acquire

#: one plugin of every kind, and the file writer
PLUGINS = ("MCA1:", "MCASUM2:", "ROI3:", "ROISUM4:", "MCA2ROI:", "C3SCA:", "C4SCA:TS:",
           "Proc1:")


def _wait_rates_zero(ioc, prefixes, timeout: float = 6.0) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        rates = {p: ioc.get(f"{p}ArrayRate_RBV") for p in prefixes}
        if not any(rates.values()) or time.monotonic() > deadline:
            return rates
        time.sleep(0.2)


def test_file_writer_counts_what_it_wrote_and_erase_resets_all_counters(ioc, tmp_path):
    ioc.put("det1:ERASE", 1)
    assert ioc.get("HDF1:ArrayCounter_RBV") == 0
    acquire(ioc, 6, exposure=0.01)                      # not capturing: the writer handles nothing
    assert ioc.get("HDF1:ArrayCounter_RBV") == 0
    assert ioc.get("MCA1:ArrayCounter_RBV") == 6

    arm_capture(ioc, tmp_path, "counters", frames=40)
    acquire(ioc, 40, exposure=0.02)                     # ~0.8 s: a rate over several posts
    ioc.wait_for("HDF1:Capture_RBV", lambda v: v == "Done", timeout=20)
    assert ioc.get("HDF1:NumCaptured_RBV") == 40
    assert ioc.get("HDF1:ArrayCounter_RBV") == 40
    assert ioc.get("MCA1:ArrayCounter_RBV") == 46

    ioc.put("HDF1:ArrayCounter", 100)                   # a write sets the count
    arm_capture(ioc, tmp_path, "counters_again", frames=5)
    acquire(ioc, 5, exposure=0.01)
    ioc.wait_for("HDF1:Capture_RBV", lambda v: v == "Done", timeout=20)
    assert ioc.get("HDF1:ArrayCounter_RBV") == 105

    ioc.put("det1:ERASE", 1)
    for prefix in PLUGINS + ("HDF1:",):
        assert ioc.get(f"{prefix}ArrayCounter_RBV") == 0, prefix
        assert ioc.get(f"{prefix}ArrayCounter") == 0, prefix
    assert ioc.get("det1:ArrayCounter_RBV") == 0


def test_every_rate_falls_to_zero_after_a_run(ioc, tmp_path):
    seen = {p: 0.0 for p in PLUGINS + ("HDF1:",)}
    arm_capture(ioc, tmp_path, "rates", frames=120)
    ioc.put("det1:TriggerMode", "Internal")
    ioc.put("det1:AcquireTime", 0.02)
    ioc.put("det1:NumImages", 120)
    thread = ioc.acquire_in_background()
    while thread.is_alive():              # sample the rates while the run goes (~2.4 s)
        for prefix in seen:
            seen[prefix] = max(seen[prefix], ioc.get(f"{prefix}ArrayRate_RBV"))
        time.sleep(0.1)
    ioc.wait_for("HDF1:Capture_RBV", lambda v: v == "Done", timeout=20)
    for prefix, rate in seen.items():
        assert 10.0 < rate < 100.0, (prefix, rate)     # ~50 frames/s
    assert _wait_rates_zero(ioc, seen) == {p: 0.0 for p in seen}
