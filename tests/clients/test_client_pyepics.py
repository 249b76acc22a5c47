"""A pyepics step-scan script runs against the IOC and reads consistent values."""
from __future__ import annotations

from clienthelp import last_json_line, run_client
from iochelp import run_tool

POINTS = 3


def test_pyepics_step_scan_reads_each_points_frames(client_ioc):
    out = last_json_line(run_client(client_ioc, "pyepics_scan.py", client_ioc.prefix,
                                    str(POINTS)).stdout)
    points = out["points"]
    assert len(points) == POINTS
    for point in points:
        # the Acquire put-callback returned only after the run ended
        assert point["state"] == "Idle" and point["frames"] == 4, point
        # and its monitors had delivered the end state before the put completed
        assert point["monitored_state"] == "Idle" and point["monitored_frames"] == 4, point
        # ROI 1 is the sum of its bins of the latest spectrum
        assert point["roi_total"] > 0
        assert point["roi_total"] == point["roi_from_spectrum"]
        assert point["dt_factor"] == point["sca_dt_factor"] >= 1.0
        assert 0.0 <= point["dead_time"] < 100.0
    # a pyepics monitor saw each run count from 0 up to its frames
    updates = out["counter_updates"]
    assert updates[-1] == 4 and updates.count(0) >= POINTS, updates

    # and the EPICS command-line tools read the same last values
    result = run_tool(client_ioc, "caget", "-t", client_ioc.pv("MCA1ROI:1:Total_RBV"),
                      client_ioc.pv("C1:DTFactor_RBV"))
    assert result.returncode == 0, result.stderr
    roi, factor = (float(v) for v in result.stdout.split())
    assert roi == points[-1]["roi_total"]
    assert abs(factor - points[-1]["dt_factor"]) < 1e-5  # caget prints PREC digits
