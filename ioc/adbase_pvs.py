"""areaDetector ADBase / CamBase PVs that clients connect to but that mean nothing
for an Xspress3: declared here so those clients connect; accepted and documented
as no-ops. `extend(ns)` adds them to the det1: group's namespace."""
from __future__ import annotations


def extend(ns: dict) -> None:
    """Add compatibility-only PVs to the det1: namespace (none yet beyond detector_pvs)."""
