"""Data path of the Xspress3 IOC: stream format, zmq sender/receiver, HDF5 layout and writer.

Independent of the IOC: the same modules serve the IOC process and stand-alone
receivers (``xspress3-receive``, ``xspress3-monitor``).
"""
from .consumer import SeriesConsumer
from .wire import (
    FORMAT_VERSION,
    SCALER_NAMES,
    FrameBlock,
    SeriesEnd,
    SeriesStart,
    WireFormatError,
    new_series_id,
)

__all__ = [
    "FORMAT_VERSION",
    "SCALER_NAMES",
    "FrameBlock",
    "SeriesConsumer",
    "SeriesEnd",
    "SeriesStart",
    "WireFormatError",
    "new_series_id",
]
