"""Stream format: round trips, zero copy, errors, and the stored sample messages."""
from __future__ import annotations

import base64
import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest

from xspress3.writers import wire

from writers_helpers import block_values, make_start

SAMPLE = Path(__file__).parent / "data" / "sample_v1.json"


def sample_messages() -> list[list[bytes]]:
    """The messages stored in data/sample_v1.json; changing them is changing the format."""
    start = make_start("sample_0001", channels=2, bins=8, first_bin=100, frames_expected=3,
                       trigger_mode="Internal", ev_per_bin=10.0)
    block = block_values(0, 3, channels=2, bins=8)
    end = wire.SeriesEnd("sample_0001", frames_sent=3, frames_lost=0, lost_reason="", final_state="done",
                         end_time="2024-01-01T12:00:01.000000+00:00")
    msgs = [wire.encode_start(start), wire.encode_block(block, "sample_0001"), wire.encode_end(end)]
    return [[bytes(p) for p in m] for m in msgs]


def test_start_round_trip(series):
    start = series(first_bin=10, bins=100, full_bins=4096, frames_expected=500, dtc_applied=True,
                   trigger_mode="TTL Veto Only")
    parts = wire.encode_start(start)
    assert len(parts) == 1
    assert next(iter(json.loads(parts[0]))) == "type"
    assert wire.decode(parts) == start


def test_end_round_trip():
    end = wire.SeriesEnd("s1", frames_sent=10, frames_lost=3, lost_reason="no receiver: 3", final_state="stopped")
    assert wire.decode(wire.encode_end(end)) == end


@pytest.mark.parametrize("dtype", ["<u4", "<f8"])
def test_frames_round_trip_and_zero_copy(blocks, dtype):
    block = blocks(5, 7, channels=3, bins=32, dtype=dtype)
    parts = wire.encode_block(block, "s1")
    hdr = json.loads(parts[0])
    assert list(hdr)[:3] == ["type", "version", "series_id"]
    assert hdr["spectra"] == {"dtype": dtype, "shape": [7, 3, 32]}
    # encoding does not copy: the parts are views of the block's arrays
    for name, part in zip(wire.ARRAY_PARTS, parts[1:]):
        assert np.shares_memory(np.frombuffer(part, np.uint8), getattr(block, name))
    received = [bytearray(p) for p in parts]  # what a socket hands over
    decoded = wire.decode(received)
    assert isinstance(decoded, wire.FrameBlock)
    assert (decoded.first_frame, decoded.count, decoded.series_id) == (5, 7, "s1")
    for name, part in zip(wire.ARRAY_PARTS, received[1:]):
        got = getattr(decoded, name)
        np.testing.assert_array_equal(got, getattr(block, name))
        assert got.dtype == getattr(block, name).dtype
        # decoding does not copy either
        assert np.shares_memory(got, np.frombuffer(part, np.uint8))


def test_non_contiguous_block_is_encoded_correctly(blocks):
    big = blocks(0, 10, channels=2, bins=16)
    every_other = wire.FrameBlock(0, big.spectra[::2], big.scalers[::2], big.dtfactor[::2], big.dtpercent[::2])
    decoded = wire.decode([bytes(p) for p in wire.encode_block(every_other, "s")])
    np.testing.assert_array_equal(decoded.spectra, big.spectra[::2])
    np.testing.assert_array_equal(decoded.dtpercent, big.dtpercent[::2])


def test_slice_is_a_view(blocks):
    block = blocks(100, 10)
    part = block.slice(3, 5)
    assert (part.first_frame, part.count) == (103, 2)
    assert np.shares_memory(part.spectra, block.spectra)


def _frames_parts(blocks) -> list[bytes]:
    return [bytes(p) for p in wire.encode_block(blocks(0, 2, channels=2, bins=4), "s")]


def _with_header(parts: list[bytes], **changes) -> list[bytes]:
    hdr = json.loads(parts[0])
    hdr.update(changes)
    return [json.dumps(hdr).encode()] + parts[1:]


def test_wrong_version_is_refused(blocks):
    with pytest.raises(wire.WireFormatError, match="version 2 not supported"):
        wire.decode(_with_header(_frames_parts(blocks), version=2))


def test_wrong_part_size_is_refused(blocks):
    parts = _frames_parts(blocks)
    parts[1] = parts[1][:-4]
    with pytest.raises(wire.WireFormatError, match="spectra part has 60 bytes, header implies 64"):
        wire.decode(parts)


def test_wrong_part_count_is_refused(blocks):
    with pytest.raises(wire.WireFormatError, match="needs 5 parts, got 4"):
        wire.decode(_frames_parts(blocks)[:4])


def test_shape_not_matching_header_is_refused(blocks):
    parts = _frames_parts(blocks)
    with pytest.raises(wire.WireFormatError, match="scalers shape"):
        wire.decode(_with_header(parts, scalers={"dtype": "<u4", "shape": [2, 2, 8]}))


def test_bad_dtype_is_refused(blocks):
    parts = _frames_parts(blocks)
    with pytest.raises(wire.WireFormatError, match="scalers dtype '>u4' not allowed"):
        wire.decode(_with_header(parts, scalers={"dtype": ">u4", "shape": [2, 2, 9]}))


@pytest.mark.parametrize("part0, message", [
    (b"\xff\xfe", "not a JSON header"),
    (b"[1, 2]", "JSON object with a 'type'"),
    (b'{"type": "image", "version": 1}', "unknown message type 'image'"),
    (b'{"type": "start", "version": 1, "series_id": "x"}', "lacks"),
    (b'{"type": "start", "version": 1, "series_id": "../../etc", "channels": 1, "bins": 1}', "series_id"),
])
def test_malformed_headers_are_refused(part0, message):
    with pytest.raises(wire.WireFormatError, match=message):
        wire.decode([part0])


def test_empty_message_is_refused():
    with pytest.raises(wire.WireFormatError, match="empty"):
        wire.decode([])


def test_unknown_header_keys_are_ignored(series):
    parts = wire.encode_start(series())
    hdr = json.loads(parts[0])
    hdr["added_in_a_later_minor_change"] = 1
    assert wire.decode([json.dumps(hdr).encode()]) == series()


def test_block_validate_catches_inconsistent_arrays(blocks):
    b = blocks(0, 3, channels=2, bins=8)
    with pytest.raises(wire.WireFormatError, match="dtfactor shape"):
        dataclasses.replace(b, dtfactor=b.dtfactor[:2]).validate()
    with pytest.raises(wire.WireFormatError, match="scalers dtype"):
        dataclasses.replace(b, scalers=b.scalers.astype(np.int64)).validate()
    with pytest.raises(wire.WireFormatError, match="first_frame"):
        dataclasses.replace(b, first_frame=-1).validate()


def test_start_validate_catches_bad_ranges(series):
    with pytest.raises(wire.WireFormatError, match="outside the full spectrum"):
        series(first_bin=4090, bins=10).validate()
    with pytest.raises(wire.WireFormatError, match="event_width"):
        series(channels=2, event_width=[6.0]).validate()
    with pytest.raises(wire.WireFormatError, match="scaler_names"):
        series(scaler_names=["TIME"]).validate()


def test_energy_axis(series):
    e = series(first_bin=100, bins=3, ev_per_bin=10.0).energy_axis()
    np.testing.assert_array_equal(e, [1000.0, 1010.0, 1020.0])


def test_new_series_id_is_valid_start_id():
    make_start(wire.new_series_id()).validate()


def test_stored_sample_matches_this_encoder():
    """The sample file is the format's regression anchor: a diff here is a format change."""
    stored = [[m["header"].encode()] + [base64.b64decode(p) for p in m["binary_parts_base64"]]
              for m in json.loads(SAMPLE.read_text())["messages"]]
    assert stored == sample_messages()
    start, block, end = (wire.decode(m) for m in stored)
    assert isinstance(start, wire.SeriesStart) and start.first_bin == 100 and start.channels == 2
    np.testing.assert_array_equal(block.spectra, block_values(0, 3, channels=2, bins=8).spectra)
    assert isinstance(end, wire.SeriesEnd) and end.frames_sent == 3


def write_sample(path: Path = SAMPLE) -> None:
    """Regenerate the sample file: ``python tests/writers/test_wire_format.py`` (format changes only)."""
    payload = {
        "description": "xspress3 stream format v1 sample: start, one frames message (3 frames, 2 channels, "
                       "8 bins), end. header = zmq part 0 (exact bytes); binary_parts_base64 = parts 1.. .",
        "messages": [{"header": m[0].decode(), "binary_parts_base64": [base64.b64encode(p).decode() for p in m[1:]]}
                     for m in sample_messages()],
    }
    path.write_text(json.dumps(payload, indent=1) + "\n")


if __name__ == "__main__":
    write_sample()


@pytest.mark.parametrize("msg", [
    wire.Hello(1 << 20, "rx host:1"),
    wire.Welcome(1 << 20),
    wire.Refused("another receiver holds the stream"),
    wire.Sync("s1"),
    wire.Ack("s1", released=64, stored=32, failed=1, failed_reason="disk full"),
])
def test_session_messages_round_trip(msg):
    parts = wire.encode_control(msg)
    assert len(parts) == 1 and wire.is_control(wire.header(parts))
    assert wire.decode_control(parts) == msg


@pytest.mark.parametrize("part0, message", [
    (b'{"type":"ack","version":1,"series_id":"s","released":-1,"stored":0}', "integer >= 0"),
    (b'{"type":"ack","version":1,"series_id":"s","released":true,"stored":0}', "integer >= 0"),
    (b'{"type":"ack","version":1,"series_id":"s"}', "lacks"),
    (b'{"type":"refused","version":1,"reason":5}', "string"),
    (b'{"type":"start","version":1}', "not a session message"),
    (b'{"type":"hello","version":2}', "version"),
])
def test_bad_session_messages_are_refused(part0, message):
    with pytest.raises(wire.WireFormatError, match=message):
        wire.decode_control([part0])
