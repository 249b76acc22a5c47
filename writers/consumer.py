"""The one protocol every consumer of a series implements: the stream sender,
the HDF5 file capture and the latest-frame monitor.

The producer (the IOC's run controller and readout thread) builds one
`SeriesStart` per run and hands the same object to every consumer, offers each
block to each consumer, reports the frames it gave up on to the consumer that
lost them (`count_lost`: the consumer is the one place those frames are
counted), and ends the series on every consumer it began.
"""
from __future__ import annotations

from typing import Protocol, runtime_checkable

from .wire import FrameBlock, SeriesStart


@runtime_checkable
class SeriesConsumer(Protocol):
    #: Shown in loss reasons ("stream: ...", "file writer: ...").
    name: str
    #: Seconds the producer keeps offering a refused block before counting it lost.
    stall_timeout: float

    def begin_series(self, start: SeriesStart) -> None:
        """A series starts (blocking; called off the event loop)."""

    def offer(self, block: FrameBlock, timeout: float = 0.0) -> bool:
        """Take a block (readout thread). True: taken or not wanted; False: no room
        within `timeout` (back-pressure: the producer retries or counts it lost)."""

    def count_lost(self, frames: int, reason: str) -> None:
        """The producer gave up on `frames` frames offered to this consumer; the
        consumer is the one place they are counted."""

    def losses(self) -> dict[str, int]:
        """Frames of the current series the producer gave up on (count_lost), by reason."""

    def end_series(self, final_state: str) -> None:
        """The series ended (blocking; called off the event loop)."""
