"""Every kind of refused put leaves the PV as it was over Channel Access: value,
timestamp and alarm (STAT/SEVR), the rule README.md states ("A put that does not
fit a PV ..."); the client gets a put error and StatusMessage_RBV the reason."""
from __future__ import annotations

import numpy as np
import pytest
from caproto import ChannelType, ErrorResponse, field_types


def text(raw: bytes):
    return ChannelType.CHAR, np.frombuffer(raw, dtype=np.uint8)


# (kind, PV, a PV of the same group, DBR type and data of the refused put, words of the reason)
REFUSALS = [
    ("limit", "det1:AcquireTime", "det1:NumImages", (ChannelType.DOUBLE, [1e9]), "Limits are set"),
    ("conversion", "det1:NumImages", "det1:AcquireTime", (ChannelType.STRING, [b"many"]), "not a number"),
    ("enum name", "det1:TriggerMode", "det1:NumImages", (ChannelType.STRING, [b"NotAState"]),
     "is not one of"),
    ("enum index", "det1:TriggerMode", "det1:NumImages", (ChannelType.LONG, [99]), "not a state"),
    ("string over 40", "HDF1:NDArrayPort", "HDF1:FileName", text(b"p" * 60), "more than this PV holds"),
    ("text over NELM", "HDF1:FileName", "HDF1:NDArrayPort", text(b"n" * 300), "more than this PV holds"),
    ("FileName", "HDF1:FileName", "HDF1:FilePath", text(b"../../name\0"), "holds '/'"),
    ("FilePath", "HDF1:FilePath", "HDF1:FileName", text(b"relative/dir\0"), "not an absolute path"),
    ("putter", "det1:RUN_FLAGS", "det1:NumImages", (ChannelType.LONG, [1]), "RUN_FLAGS"),
    # refused by its access rights before any check: the standard no-write-access error only
    ("read-only", "det1:DetectorState_RBV", "det1:NumImages", (ChannelType.LONG, [1]), None),
]


def time_read(ioc, suffix):
    pv = ioc._pv(suffix, 5)
    native = pv.channel.native_data_type
    return pv.read(data_type=field_types["time"][native], timeout=5)


def snapshot(response):
    md = response.metadata
    data = response.data
    value = bytes(np.asarray(data, dtype=np.uint8)) if response.data_type == ChannelType.TIME_CHAR \
        else [v.item() if hasattr(v, "item") else v for v in data]
    return value, md.timestamp, (md.status, md.severity)


@pytest.mark.parametrize("kind, suffix, sibling, put, words", REFUSALS, ids=[r[0] for r in REFUSALS])
def test_a_refused_put_leaves_value_timestamp_and_alarm(ioc, kind, suffix, sibling, put, words):
    before, sibling_before = snapshot(time_read(ioc, suffix)), snapshot(time_read(ioc, sibling))
    assert before[2] == (0, 0), before
    dtype, data = put
    response = ioc._pv(suffix, 5).write(data, data_type=dtype, wait=True, timeout=10)
    assert isinstance(response, ErrorResponse), (kind, response)
    if words is not None:
        message = ioc.get("det1:StatusMessage_RBV")
        assert suffix.split(":")[1] in message and words in message, message
    assert snapshot(time_read(ioc, suffix)) == before
    assert snapshot(time_read(ioc, sibling)) == sibling_before
