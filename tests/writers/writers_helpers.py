"""Deterministic blocks and series for the data-path tests (imported by name: unique module)."""
from __future__ import annotations

import time

import numpy as np

from xspress3.writers import wire


def block_values(first: int, n: int, channels: int = 4, bins: int = 64, dtype: str = "<u4") -> wire.FrameBlock:
    """A block whose every value depends on (frame, channel, index), so mix-ups show."""
    frames = np.arange(first, first + n, dtype=np.int64)[:, None, None]
    chans = np.arange(channels, dtype=np.int64)[None, :, None]
    spectra = ((frames * 7919 + chans * 104729 + np.arange(bins)[None, None, :]) % 65521).astype(dtype)
    scalers = (frames * 131 + chans * 17 + np.arange(wire.NUM_SCALERS)[None, None, :] * 3 + 1).astype(np.uint32)
    f2 = frames[:, :, 0] + chans[:, :, 0] / 8.0
    return wire.FrameBlock(
        first_frame=first,
        spectra=spectra,
        scalers=scalers,
        dtfactor=1.0 + f2 / 1000.0,
        dtpercent=f2 / 10.0,
    )


def make_start(series_id: str = "test_series", channels: int = 4, bins: int = 64, **kw) -> wire.SeriesStart:
    kw.setdefault("event_width", [6.0 + c for c in range(channels)])
    kw.setdefault("detector", {"model": "Xspress3 (simulated)", "driver_version": "test",
                               "library": "libxspress3-sim.so", "simulated": True})
    kw.setdefault("exposure_s", 0.01)
    kw.setdefault("start_time", "2024-01-01T12:00:00.000000+00:00")
    return wire.SeriesStart(series_id=series_id, channels=channels, bins=bins, **kw)


def wait_for(predicate, timeout: float = 30.0) -> bool:
    """Poll `predicate` until it holds (True) or `timeout` seconds have passed (False)."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True
