"""Every series consumer of the writers package implements consumer.SeriesConsumer."""
from __future__ import annotations

from xspress3.writers import SeriesConsumer
from xspress3.writers.monitor import MonitorServer
from xspress3.writers.stream import StreamSender

from writers_helpers import block_values, make_start


def test_the_stream_sender_and_the_monitor_are_series_consumers():
    with StreamSender("tcp://127.0.0.1:0", stall_timeout=2.5) as sender:
        assert isinstance(sender, SeriesConsumer)
        assert (sender.name, sender.stall_timeout) == ("stream", 2.5)
    monitor = MonitorServer("tcp://127.0.0.1:0")
    assert isinstance(monitor, SeriesConsumer) and monitor.name == "monitor"


def test_the_stream_reports_only_the_losses_its_producer_gave_up_on():
    with StreamSender("tcp://127.0.0.1:0") as sender:
        sender.begin_series(make_start("losses", channels=1, bins=8))
        assert sender.offer(block_values(0, 3, channels=1, bins=8))   # no receiver: counted by it
        sender.count_lost(5, "stream stalled for 5 s")
        assert sender.losses() == {"stream stalled for 5 s": 5}
        assert sender.frames_lost == 8
        end = sender.end_series("done", timeout=5)
        assert end.frames_lost == 8 and sender.losses() == {}


def test_the_monitor_takes_every_block_and_is_idle_after_the_series():
    monitor = MonitorServer("tcp://127.0.0.1:0")
    start = make_start("mon", channels=1, bins=8)
    monitor.begin_series(start)
    block = block_values(0, 2, channels=1, bins=8)
    assert monitor.offer(block, 0.0) is True
    assert monitor._start is start
    monitor.end_series("done")
    assert monitor.losses() == {}
    assert monitor._latest[0] is block and monitor._start is None   # "start" answers none


def test_hdf5_offers_only_if_open_are_ignored_once_the_close_began(tmp_path):
    import pytest

    from xspress3.writers.hdf5 import HDF5Writer

    writer = HDF5Writer(max_queued_frames=64)
    try:
        assert writer.offer(block_values(0, 2, channels=1, bins=8), only_if_open=True)   # none open
        writer.open_series(tmp_path / "a.h5", make_start("a", channels=1, bins=8))
        assert writer.is_open
        assert writer.offer(block_values(0, 2, channels=1, bins=8), 5.0, only_if_open=True)
        writer.count_dropped(3, "file writer stalled for 30 s")
        assert writer.dropped_reasons == {"file writer stalled for 30 s": 3}
        result = writer.close_series(10)
        assert not writer.is_open and result.frames_written == 2 and result.frames_dropped == 3
        assert writer.offer(block_values(2, 2, channels=1, bins=8), only_if_open=True)
        with pytest.raises(RuntimeError, match="without an open series"):
            writer.offer(block_values(2, 2, channels=1, bins=8))
        assert writer.frames_written == 2 and writer.frames_dropped == 3
    finally:
        writer.close()
