"""The data stream's counters for the det1:Stream* PVs (the sender is writers.stream.StreamSender,
a consumer.SeriesConsumer the controller uses directly)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from xspress3.writers.stream import StreamSender
from xspress3.writers.stream_keys import ServerKeys

from .options import IocOptions


@dataclass(frozen=True)
class StreamStats:
    """The stream's counters of the open (or last) series. ``frames_sent`` counts frames
    the receiver acknowledged stored; ``paced_s`` > 0 says the receiver set the pace
    (seconds the stream waited for its credit)."""
    receivers: int
    frames_sent: int
    frames_lost: int
    lost_reason: str
    paced_s: float = 0.0
    shared: bool = False   # the holder maps the IOC's frame memory


def make_sender(options: IocOptions, keys: Optional[ServerKeys] = None) -> StreamSender:
    """``keys``: CURVE keys of --stream-keys, or None."""
    return StreamSender(options.stream, max_queued_frames=options.stream_queue_frames,
                        stall_timeout=options.stream_stall_timeout,
                        end_timeout=options.stream_stall_timeout, keys=keys,
                        shared_dir=options.stream_shm)


def stream_stats(sender: StreamSender) -> StreamStats:
    reasons = sender.lost_reasons
    return StreamStats(sender.receivers, sender.frames_sent, sender.frames_lost,
                       "; ".join(f"{k}: {v}" for k, v in reasons.items()), sender.paced_s,
                       sender.receiver_shared)
