"""db_docs/stream.md and db_docs/hdf5-layout.md must name everything the code defines."""
from __future__ import annotations

import dataclasses
import json
import re
from pathlib import Path

import pytest

from xspress3.writers import layout, wire

DOCS = Path(__file__).resolve().parents[2] / "db_docs"


def section(text: str, heading: str) -> str:
    """The markdown section that starts with ``heading`` up to the next heading of that level."""
    start = text.index(heading)
    nxt = text.find("\n## ", start + len(heading))
    return text[start:nxt if nxt != -1 else len(text)]


def table_fields(text: str) -> set[str]:
    return set(re.findall(r"^\| `([^`]+)` \|", text, flags=re.M))


@pytest.fixture(scope="module")
def stream_md() -> str:
    return (DOCS / "stream.md").read_text()


@pytest.mark.parametrize("cls, heading", [
    (wire.SeriesStart, "## `start` message"),
    (wire.SeriesEnd, "## `end` message"),
    (wire.Hello, "## `hello` message"),
    (wire.Welcome, "## `welcome` message"),
    (wire.Refused, "## `refused` message"),
    (wire.Ack, "## `ack` message"),
    (wire.Sync, "## `sync` message"),
    (wire.Shared, "## `shared` message"),
])
def test_every_field_of_a_message_is_documented(stream_md, cls, heading):
    documented = table_fields(section(stream_md, heading))
    fields = {f.name for f in dataclasses.fields(cls)} | {"type", "version"}
    assert fields == documented, f"undocumented: {fields - documented}, stale: {documented - fields}"


def test_every_frames_header_key_and_part_is_documented(stream_md, blocks):
    header = json.loads(wire.encode_block(blocks(0, 1), "s")[0])
    frames = section(stream_md, "## `frames` message")
    assert set(header) == table_fields(frames)
    block_fields = {f.name for f in dataclasses.fields(wire.FrameBlock)}
    for name in block_fields:
        assert f"`{name}`" in frames
    for index, name in enumerate(wire.SCALER_NAMES):
        assert f"| {index} | `{name}` |" in frames


def test_version_and_port_in_the_table(stream_md):
    assert f"| format version | `{wire.FORMAT_VERSION}`" in stream_md
    assert f"`{wire.DEFAULT_PORT}` (stream), `{wire.MONITOR_PORT}` (monitor" in stream_md


def test_every_layout_path_and_compression_is_documented():
    doc = (DOCS / "hdf5-layout.md").read_text()
    paths = {v for k, v in vars(layout).items() if k.isupper() and isinstance(v, str) and v.startswith("/entry")}
    assert paths, "no path constants found"
    for path in paths:
        assert f"`{path}`" in doc, path
    for suffix in layout.NDATTR_SUFFIXES:
        generic = re.sub(r"SCA\d", "SCA{k}", suffix)
        assert f"CHAN{{n}}{generic}`" in doc, suffix
    for name in layout.COMPRESSIONS + layout.UNSUPPORTED_COMPRESSIONS:
        assert f"`{name}`" in doc, name


def test_every_loss_reason_of_the_sender_is_documented(stream_md):
    from xspress3.writers import stream
    rules = section(stream_md, "## Session, credit and acknowledgements")
    for reason in stream.OWN_REASONS:
        assert f"`{reason}`" in rules, reason
