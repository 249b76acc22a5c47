"""Start-up options of the IOC, shared by the command line and the tests."""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Optional

from xspress3.driver import Xspress3
from xspress3.vocabulary import DEFAULT_BINS

DEFAULT_STREAM = "tcp://*:9999"
DEFAULT_MONITOR = "tcp://*:9998"


@dataclass
class IocOptions:
    prefix: str = "XSP3:"
    library: Optional[str] = None          # None: the bundled simulator
    cards: int = 1
    channels: int = 4
    bins: int = DEFAULT_BINS
    frames_memory: int = 16384
    address: str = "192.168.0.1"
    port: int = -1
    config_dir: Optional[str] = None
    settings_file: Optional[str] = None
    stream: Optional[str] = DEFAULT_STREAM
    monitor: Optional[str] = DEFAULT_MONITOR
    stream_queue_frames: int = 1024
    stream_stall_timeout: float = 5.0
    file_queue_frames: int = 2048
    file_stall_timeout: float = 30.0
    ts_points: int = 16384
    data_root: Optional[str] = None        # HDF1:FilePath must resolve to this directory or below
    stream_keys: Optional[str] = None      # directory of CURVE keys (writers/stream_keys.py)
    stream_shm: Optional[str] = None       # frame memory offered to a receiver on this host:
                                           # None /dev/shm where writable, "" never

    @property
    def simulated(self) -> bool:
        return self.library is None

    def open_driver(self) -> Xspress3:
        """Opens the detector (blocking: call it off the event loop)."""
        return Xspress3(library=self.library, cards=self.cards, channels=self.channels,
                        frames_memory=self.frames_memory, address=self.address, port=self.port,
                        config_dir=self.config_dir)


def default_settings_file(prefix: str) -> str:
    base = os.environ.get("XDG_CONFIG_HOME") or os.path.join(os.path.expanduser("~"), ".config")
    name = "".join(c if c.isalnum() else "_" for c in prefix).strip("_") or "xspress3"
    return os.path.join(base, "xspress3-ioc", f"{name}.json")
