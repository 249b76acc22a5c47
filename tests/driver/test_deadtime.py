"""deadtime.compute against hand-worked values, a scalar reference and the SDK."""
from __future__ import annotations

import time

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from xspress3.driver import FrameSource, Xspress3, deadtime
from xspress3.driver.constants import NUM_SCALERS, Scaler


def scalers(time_: int, reset_ticks: int = 0, all_event: int = 0) -> np.ndarray:
    row = np.zeros(NUM_SCALERS, np.uint32)
    row[Scaler.TIME] = time_
    row[Scaler.RESET_TICKS] = reset_ticks
    row[Scaler.ALL_EVENT] = all_event
    return row


def test_hand_computed() -> None:
    # dead = 10 * (6 + 1) + 50 = 120 of 1000 ticks
    factor, percent = deadtime.compute(scalers(1000, 50, 10))
    assert factor.shape == () and factor.dtype == np.float64
    assert factor == pytest.approx(1000 / 880)
    assert percent == pytest.approx(12.0)


def test_no_dead_time() -> None:
    factor, percent = deadtime.compute(scalers(80_000, 0, 0))
    assert (factor, percent) == (1.0, 0.0)


def test_zero_time_is_neutral() -> None:
    factor, percent = deadtime.compute(scalers(0, 500, 30))
    assert (factor, percent) == (1.0, 0.0)


def test_saturated_is_finite() -> None:
    # dead = 20 * 7 = 140 > 100 ticks: live time clamped to one tick
    factor, percent = deadtime.compute(scalers(100, 0, 20))
    assert factor == 100.0 and percent == 100.0
    # exactly one live tick left: the formula itself gives TIME
    factor, percent = deadtime.compute(scalers(701, 0, 100))
    assert factor == pytest.approx(701.0)
    assert percent == pytest.approx(100 * 700 / 701)


def test_no_uint32_overflow() -> None:
    # 700e6 events * 7 = 4.9e9 overflows uint32; the frame is saturated, not 15 % dead
    factor, percent = deadtime.compute(scalers(4_000_000_000, 0, 700_000_000))
    assert percent == 100.0 and factor == 4_000_000_000


def test_per_channel_event_width() -> None:
    block = np.stack(
        [
            np.stack([scalers(1000, 50, 10), scalers(2000, 0, 20)]),
            np.stack([scalers(1000, 0, 0), scalers(0, 0, 0)]),
        ]
    )  # (frames=2, channels=2, 9)
    factor, percent = deadtime.compute(block, event_width=np.array([6.0, 9.0]))
    assert factor.shape == percent.shape == (2, 2)
    # ch0: dead = 10*7+50 = 120 / 1000; ch1: dead = 20*10 = 200 / 2000
    np.testing.assert_allclose(factor, [[1000 / 880, 2000 / 1800], [1.0, 1.0]])
    np.testing.assert_allclose(percent, [[12.0, 10.0], [0.0, 0.0]])
    # a scalar width applies to every channel
    f6, _ = deadtime.compute(block, 6)
    assert f6[0, 1] == pytest.approx(2000 / (2000 - 140))


@pytest.mark.parametrize(
    "bad, width",
    [
        (np.zeros((3, 8), np.uint32), 6),  # last axis is not 9
        (np.zeros((2, 4, 9), np.uint32), np.ones(3)),  # 3 widths for 4 channels
        (np.zeros((2, 4, 9), np.uint32), np.ones((5, 2, 4))),  # would enlarge the result
        (np.zeros((2, 4, 9), np.uint32), -1),
        (np.zeros((2, 4, 9), np.uint32), float("nan")),
        (np.array(["a"] * 9), 6),
    ],
)
def test_rejects_bad_input(bad: np.ndarray, width: object) -> None:
    with pytest.raises(ValueError):
        deadtime.compute(bad, width)  # type: ignore[arg-type]


def _reference(row: np.ndarray, width: float) -> tuple[float, float]:
    t = float(row[Scaler.TIME])
    dead = float(row[Scaler.ALL_EVENT]) * (width + 1) + float(row[Scaler.RESET_TICKS])
    if t == 0:
        return 1.0, 0.0
    live = max(t - dead, 1.0)
    return t / live, min(100.0 * dead / t, 100.0)


@settings(max_examples=60, deadline=None)
@given(
    data=st.lists(
        st.tuples(
            st.integers(0, 2**32 - 1), st.integers(0, 2**32 - 1), st.integers(0, 2**32 - 1)
        ),
        min_size=3,
        max_size=3,
    ),
    widths=st.lists(st.floats(0, 20), min_size=3, max_size=3),
)
def test_matches_scalar_reference(data: list[tuple[int, int, int]], widths: list[float]) -> None:
    block = np.stack([scalers(*d) for d in data])[None]  # (1, 3, 9)
    factor, percent = deadtime.compute(block, np.array(widths))
    for ch, (row, w) in enumerate(zip(block[0], widths)):
        ref_f, ref_p = _reference(row, w)
        assert factor[0, ch] == pytest.approx(ref_f, rel=1e-12)
        assert percent[0, ch] == pytest.approx(ref_p, rel=1e-12)
        assert np.isfinite(factor[0, ch]) and factor[0, ch] >= 1.0


def test_agrees_with_sdk_dtcfactor(xsp3: Xspress3) -> None:
    """Scalers of a real (simulated) run: ours and xsp3_get_dtcfactor agree."""
    assert xsp3.sim is not None
    xsp3.sim.set_rate(2e6)  # ~20 % dead: a factor clearly above 1
    xsp3.set_timing(FrameSource.INTERNAL)
    xsp3.setup_itfg(4, 0.002)
    xsp3.start()
    deadline = time.monotonic() + 30
    while xsp3.is_busy() and time.monotonic() < deadline:
        time.sleep(0.002)
    assert xsp3.progress().frames == 4
    block = xsp3.read_scalers(np.zeros((4, xsp3.num_channels, 9), np.uint32), 0)
    factor, percent = deadtime.compute(block)
    assert np.all(factor > 1.05) and np.all(percent > 5)
    for f in range(4):
        for ch in range(xsp3.num_channels):
            sdk_factor, sdk_all_event = xsp3.dtc_factor(block[f, ch], ch)
            assert factor[f, ch] == pytest.approx(sdk_factor, rel=1e-12)
            assert sdk_all_event == pytest.approx(block[f, ch, Scaler.ALL_EVENT] * sdk_factor)


def test_agrees_with_sdk_on_hand_rows(xsp3: Xspress3) -> None:
    for row in (scalers(1000, 50, 10), scalers(80_000, 0, 0), scalers(0, 0, 0)):
        sdk_factor, _ = xsp3.dtc_factor(row, 0)
        factor, _ = deadtime.compute(row)
        assert factor == pytest.approx(sdk_factor)
