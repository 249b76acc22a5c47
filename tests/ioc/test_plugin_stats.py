"""plugin_stats.PluginStats: what one plugin prefix reports as handled, dropped and its rate."""
from __future__ import annotations

import pytest

from xspress3.ioc.plugin_stats import PluginStats


class Clock:
    def __init__(self):
        self.t = 100.0

    def __call__(self):
        return self.t


def test_frames_are_counted_from_the_running_frame_number():
    stats = PluginStats(clock=Clock())
    assert stats.handled(3) == 3
    assert stats.handled(3) == 0
    assert stats.handled(10) == 7
    assert stats.counter == 10


def test_a_new_run_counts_on_from_its_first_frame():
    stats = PluginStats(clock=Clock())
    stats.handled(10)
    stats.run_started()
    assert stats.handled(4) == 4
    assert stats.counter == 14


def test_rate_is_frames_over_elapsed_clock_time():
    clock = Clock()
    stats = PluginStats(clock=clock, window=1.0)
    stats.handled(0)
    clock.t += 0.1
    stats.handled(5)
    assert stats.rate == 0.0          # under a quarter window: no rate yet
    clock.t += 0.4
    stats.handled(20)
    assert stats.rate == pytest.approx(40.0)   # 20 frames over 0.5 s
    clock.t += 1.5
    stats.handled(50)
    assert stats.rate == pytest.approx(25.0)   # 50 frames over 2 s; the window restarts
    clock.t += 1.0
    stats.idle()
    assert stats.rate == 0.0


def test_disabled_plugin_counts_nothing():
    stats = PluginStats(clock=Clock())
    stats.handled(5)
    stats.enabled = False
    assert stats.handled(9) == 0
    stats.drop(3)
    assert (stats.counter, stats.dropped) == (5, 0)
    stats.enabled = True
    assert stats.handled(12) == 3     # frames while disabled are not counted later
    assert stats.counter == 8


def test_drops_are_counted_and_reset_clears():
    stats = PluginStats(clock=Clock())
    stats.handled(4)
    stats.drop(2)
    assert stats.dropped == 2
    stats.reset()
    assert (stats.counter, stats.dropped, stats.rate) == (0, 0, 0.0)
