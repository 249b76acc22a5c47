"""The data stream as a readout consumer: xspress3.writers.stream.StreamSender plus
the name and stall timeout the readout's back-pressure uses, and PV-ready stats."""
from __future__ import annotations

from xspress3.writers.stream import StreamSender
from xspress3.writers.wire import FrameBlock, SeriesStart

from .options import IocOptions


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

    def stats(self) -> dict:
        reasons = self.sender.lost_reasons
        return {"receivers": self.sender.receivers, "frames_sent": self.sender.frames_sent,
                "frames_lost": self.sender.frames_lost,
                "lost_reason": "; ".join(f"{k}: {v}" for k, v in reasons.items())}
