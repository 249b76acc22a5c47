"""Deadtime correction from the nine Xspress3 scalers, vectorised with numpy.

The model is the one the areaDetector driver uses: each recorded event blinds
the channel for ``event_width + 1`` ticks and each reset for its reset ticks::

    dead    = ALL_EVENT * (event_width + 1) + RESET_TICKS
    percent = 100 * dead / TIME
    factor  = TIME / (TIME - dead)

It is done here rather than per frame through xsp3_get_dtcfactor so that a
whole block of frames costs a handful of array operations.

Edge cases (chosen so values stay finite and meaningful for EPICS PVs and
HDF5, never NaN):

* ``TIME == 0`` (no live time, e.g. an empty frame): factor 1.0, percent 0.0.
* ``dead >= TIME - 1`` (saturated: the model leaves under one live tick): the
  live time is clamped to one tick, so factor == TIME, and percent is capped
  at 100.0. The factor is then a large, finite flag value rather than inf,
  which would turn zero counts into NaN downstream.
"""
from __future__ import annotations

from typing import Union

import numpy as np
import numpy.typing as npt

from .constants import DEFAULT_EVENT_WIDTH, NUM_SCALERS, Scaler

__all__ = ["compute"]

EventWidth = Union[float, npt.ArrayLike]


def compute(
    scalers: npt.ArrayLike, event_width: EventWidth = DEFAULT_EVENT_WIDTH
) -> tuple[np.ndarray, np.ndarray]:
    """Return ``(factor, percent)`` float64 arrays of shape ``scalers.shape[:-1]``.

    ``scalers`` has the nine scalers on its last axis, e.g. ``(frames, channels, 9)``.
    ``event_width`` (ticks) is a scalar or an array that broadcasts against
    ``scalers.shape[:-1]``; a 1-D array of length ``channels`` gives each
    channel its own calibrated width.
    """
    s = np.asarray(scalers)
    if s.ndim < 1 or s.shape[-1] != NUM_SCALERS:
        raise ValueError(f"scalers must have {NUM_SCALERS} values on the last axis, got shape {s.shape}")
    if not (np.issubdtype(s.dtype, np.integer) or np.issubdtype(s.dtype, np.floating)):
        raise ValueError(f"scalers must be numeric, got dtype {s.dtype}")
    width = np.asarray(event_width, dtype=np.float64)
    frame_shape = s.shape[:-1]
    try:
        shape = np.broadcast_shapes(frame_shape, width.shape)
    except ValueError as exc:
        raise ValueError(
            f"event_width of shape {width.shape} does not broadcast over scalers of shape {s.shape}"
        ) from exc
    if shape != frame_shape:
        raise ValueError(f"event_width of shape {width.shape} would enlarge the result beyond {frame_shape}")
    if np.any(width < 0) or not np.all(np.isfinite(width)):
        raise ValueError("event_width must be finite and >= 0")

    time = s[..., Scaler.TIME].astype(np.float64)
    dead = s[..., Scaler.ALL_EVENT].astype(np.float64) * (width + 1.0) + s[..., Scaler.RESET_TICKS].astype(
        np.float64
    )
    live = time > 0
    safe_time = np.where(live, time, 1.0)
    factor = np.where(live, time / np.maximum(time - dead, 1.0), 1.0)
    percent = np.where(live, np.minimum(100.0 * dead / safe_time, 100.0), 0.0)
    return factor, percent
