"""The data stream as a readout consumer: xspress3.writers.stream.StreamSender plus
the name and stall timeout the readout's back-pressure uses, and PV-ready stats."""
from __future__ import annotations

from dataclasses import dataclass

from xspress3.writers.stream import StreamSender
from xspress3.writers.wire import FrameBlock, SeriesStart

from .options import IocOptions


@dataclass(frozen=True)
class StreamStats:
    """The stream's counters of the open (or last) series, for the det1:Stream* PVs."""
    receivers: int
    frames_sent: int
    frames_lost: int
    lost_reason: str


class StreamConsumer:
    name = "stream"

    def __init__(self, options: IocOptions):
        self.stall_timeout = options.stream_stall_timeout
        self.sender = StreamSender(options.stream, max_queued_frames=options.stream_queue_frames)

    @property
    def endpoint(self) -> str:
        return self.sender.endpoint

    def start(self) -> None:
        self.sender.start()

    def close(self) -> None:
        self.sender.close()

    def begin_series(self, start: SeriesStart) -> None:
        self.sender.begin_series(start)

    def offer(self, block: FrameBlock, timeout: float = 0.0) -> bool:
        return self.sender.offer(block, timeout)

    def count_lost(self, frames: int, reason: str) -> None:
        self.sender.count_lost(frames, reason)

    def end_series(self, final_state: str):
        return self.sender.end_series(final_state, timeout=self.stall_timeout)

    @property
    def series_open(self) -> bool:
        return bool(self.sender.series_id)

    def stats(self) -> StreamStats:
        reasons = self.sender.lost_reasons
        return StreamStats(self.sender.receivers, self.sender.frames_sent, self.sender.frames_lost,
                           "; ".join(f"{k}: {v}" for k, v in reasons.items()))
