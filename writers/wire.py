"""The stream format: the one place that says what goes over the wire.

A message is a zmq multipart message. Part 0 is a small UTF-8 JSON object whose
first key is ``type``; a ``frames`` message adds four raw little-endian, C-order
buffers (spectra, scalers, dtfactor, dtpercent). Nothing is pickled, so a
receiver can be written in any language from ``db_docs/stream.md``.

Encoding never copies the arrays (parts are memoryviews of the block's arrays)
and decoding never copies them either (``np.frombuffer`` views of the received
buffers), so the per-frame cost of the format is zero.
"""
from __future__ import annotations

import dataclasses
import datetime
import json
import re
from dataclasses import dataclass, field
from typing import Any, Callable, Optional, Sequence, Union

import numpy as np

from xspress3 import vocabulary

FORMAT_VERSION = 1
DEFAULT_PORT = 9999
MONITOR_PORT = 9998
# The scaler clock (TIME, RESET_TICKS and TOTAL_TICKS count its ticks) and the scalers
# of a frame, in wire order: facts of the detector, written down in xspress3.vocabulary.
TICKS_PER_SECOND = vocabulary.TICKS_PER_SECOND
SCALER_NAMES: tuple[str, ...] = vocabulary.SCALER_NAMES
NUM_SCALERS = vocabulary.NUM_SCALERS

TYPE_START = "start"
TYPE_FRAMES = "frames"
TYPE_END = "end"
#: Reply of the monitor server when it has no frame yet (never sent on the stream).
TYPE_NONE = "none"
# Session messages (db_docs/stream.md, "Session, credit and acknowledgements"):
# receiver -> IOC
TYPE_HELLO = "hello"
TYPE_ACK = "ack"
TYPE_SHARED = "shared"
# IOC -> receiver
TYPE_WELCOME = "welcome"
TYPE_REFUSED = "refused"
TYPE_SYNC = "sync"

#: Bytes of frames a receiver lets the IOC have in flight unless it asks otherwise.
DEFAULT_WINDOW_BYTES = 64 << 20

#: Array parts of a frames message, in wire order, with the dtypes allowed for each.
ARRAY_PARTS: tuple[str, ...] = ("spectra", "scalers", "dtfactor", "dtpercent")
ALLOWED_DTYPES: dict[str, tuple[str, ...]] = {
    "spectra": ("<u4", "<f8"),
    "scalers": ("<u4",),
    "dtfactor": ("<f8",),
    "dtpercent": ("<f8",),
}

_SERIES_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")


class WireFormatError(ValueError):
    """A message (or a block about to be encoded) does not follow the stream format."""


class SharedSpectraError(WireFormatError):
    """A well-formed frames message whose spectra this receiver cannot map from the
    IOC's shared memory (its frames are lost here; the receiver reports them failed)."""


def utc_now_iso() -> str:
    """Current time as an ISO 8601 string with UTC offset (used for start/end times)."""
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="microseconds")


def new_series_id(prefix: str = "xsp3") -> str:
    """A series id that is unique enough and safe to use as a file name."""
    now = datetime.datetime.now(datetime.timezone.utc)
    return f"{prefix}_{now:%Y%m%dT%H%M%S}_{now.microsecond:06d}"


@dataclass(frozen=True, eq=False)
class FrameBlock:
    """Consecutive frames read in one go; immutable once made (shared by all consumers)."""

    first_frame: int
    spectra: np.ndarray  # (n, channels, bins) uint32, or float64 when deadtime-corrected
    scalers: np.ndarray  # (n, channels, 9) uint32
    dtfactor: np.ndarray  # (n, channels) float64
    dtpercent: np.ndarray  # (n, channels) float64
    #: Set by ``decode``; producers may leave it empty (the sender stamps the open series).
    series_id: str = ""

    @property
    def count(self) -> int:
        return int(self.spectra.shape[0])

    @property
    def channels(self) -> int:
        return int(self.spectra.shape[1])

    @property
    def bins(self) -> int:
        return int(self.spectra.shape[2])

    def validate(self) -> None:
        """Raise WireFormatError unless shapes and dtypes agree with the format."""
        if self.first_frame < 0:
            raise WireFormatError(f"first_frame must be >= 0, got {self.first_frame}")
        if self.spectra.ndim != 3:
            raise WireFormatError(f"spectra must be (frames, channels, bins), got shape {self.spectra.shape}")
        n, ch, _ = self.spectra.shape
        expected = {
            "scalers": (n, ch, NUM_SCALERS),
            "dtfactor": (n, ch),
            "dtpercent": (n, ch),
        }
        for name, shape in expected.items():
            got = getattr(self, name).shape
            if got != shape:
                raise WireFormatError(f"{name} shape {got} does not match spectra; expected {shape}")
        for name in ARRAY_PARTS:
            dt = np.dtype(getattr(self, name).dtype)
            if dt.newbyteorder("<").str not in ALLOWED_DTYPES[name]:
                raise WireFormatError(f"{name} dtype {dt} not allowed; use one of {ALLOWED_DTYPES[name]}")

    def slice(self, start: int, stop: int) -> "FrameBlock":
        """Frames [start, stop) of this block as a new block of views (no copy)."""
        start, stop, _ = slice(start, stop).indices(self.count)
        return FrameBlock(
            first_frame=self.first_frame + start,
            spectra=self.spectra[start:stop],
            scalers=self.scalers[start:stop],
            dtfactor=self.dtfactor[start:stop],
            dtpercent=self.dtpercent[start:stop],
            series_id=self.series_id,
        )


@dataclass(frozen=True)
class SeriesStart:
    """Everything a consumer needs to interpret the frames of one acquisition."""

    series_id: str
    channels: int
    bins: int
    first_bin: int = 0
    full_bins: int = vocabulary.DEFAULT_BINS
    ev_per_bin: float = 10.0
    exposure_s: float = 0.0
    trigger_mode: str = "Internal"
    frames_expected: int = 0
    dtc_applied: bool = False
    detector: dict[str, Any] = field(default_factory=dict)
    scaler_names: list[str] = field(default_factory=lambda: list(SCALER_NAMES))
    event_width: list[float] = field(default_factory=list)
    start_time: str = field(default_factory=utc_now_iso)

    def validate(self) -> None:
        """Raise WireFormatError if a field is out of range."""
        if not _SERIES_ID_RE.match(self.series_id):
            raise WireFormatError(
                f"series_id {self.series_id!r} must be 1-128 characters of A-Z a-z 0-9 . _ - "
                "(it becomes a file name)"
            )
        if self.channels < 1 or self.bins < 1:
            raise WireFormatError(f"channels and bins must be >= 1, got {self.channels}, {self.bins}")
        if self.first_bin < 0 or self.first_bin + self.bins > self.full_bins:
            raise WireFormatError(
                f"bins {self.first_bin}..{self.first_bin + self.bins - 1} outside the full spectrum of "
                f"{self.full_bins} bins"
            )
        if self.frames_expected < 0:
            raise WireFormatError(f"frames_expected must be >= 0, got {self.frames_expected}")
        if len(self.scaler_names) != NUM_SCALERS:
            raise WireFormatError(f"scaler_names needs {NUM_SCALERS} names, got {len(self.scaler_names)}")
        if self.event_width and len(self.event_width) != self.channels:
            raise WireFormatError(
                f"event_width has {len(self.event_width)} entries for {self.channels} channels"
            )

    @property
    def spectrum_dtype(self) -> np.dtype:
        """dtype of the spectra of this series: float64 when deadtime correction is applied."""
        return np.dtype("<f8") if self.dtc_applied else np.dtype("<u4")

    def energy_axis(self) -> np.ndarray:
        """Energy of each transmitted bin in eV (bin index times ev_per_bin)."""
        return (np.arange(self.first_bin, self.first_bin + self.bins, dtype=np.float64)) * float(
            self.ev_per_bin
        )


@dataclass(frozen=True)
class SeriesEnd:
    """Closing message of a series, with what the sender knows about losses."""

    series_id: str
    frames_sent: int
    frames_lost: int = 0
    lost_reason: str = ""
    final_state: str = "done"
    end_time: str = field(default_factory=utc_now_iso)


Message = Union[SeriesStart, FrameBlock, SeriesEnd]


@dataclass(frozen=True)
class Hello:
    """Receiver -> IOC, first message of a connection: asks to hold the stream.

    ``window_bytes``: frame bytes the IOC may have sent and not yet seen released
    (the receiver's memory bound)."""

    window_bytes: int = DEFAULT_WINDOW_BYTES
    receiver: str = ""


@dataclass(frozen=True)
class Ack:
    """Receiver -> IOC: how far the receiver got with a series; every count is cumulative
    over the series, so a lost or repeated ack does no harm.

    ``released``: frames no longer held in the receiver's memory (credit back);
    ``stored``: frames safe where the receiver keeps them (flushed to its file);
    ``failed``: frames it received but will never store, ``failed_reason`` says why;
    ``shared_released``: every lease below this number (one per block sent by shared
    memory, shared_frames.py, numbered over the connection, not the series) is
    released: the receiver holds no view of those blocks any more."""

    series_id: str
    released: int
    stored: int
    failed: int = 0
    failed_reason: str = ""
    shared_released: int = 0


@dataclass(frozen=True)
class Welcome:
    """IOC -> receiver: this receiver holds the stream and gets every frame from now on.

    ``shared_dir``, ``shared_probe``, ``shared_token``: the IOC offers its frame memory
    (shared_frames.py); a receiver that finds the token in that probe file may answer
    ``shared``. Empty: no offer."""

    window_bytes: int
    shared_dir: str = ""
    shared_probe: str = ""
    shared_token: str = ""


@dataclass(frozen=True)
class Shared:
    """Receiver -> IOC: it read the probe file of the welcome (so it sees the IOC's
    shared memory); from now on frames messages may name their spectra's place there.
    An empty ``token``: stop that, send copies from now on (it could not map a segment).
    ``pid`` and ``pid_namespace`` (inode of /proc/self/ns/pid) name the receiver's
    process: if it disconnects, the IOC keeps the blocks it may still read until
    that process is gone."""

    token: str
    pid: int = 0
    pid_namespace: int = 0


@dataclass(frozen=True)
class Refused:
    """IOC -> receiver: another receiver holds the stream; this one gets no frames."""

    reason: str


@dataclass(frozen=True)
class Sync:
    """IOC -> receiver: every frame of the series is sent; store what you have and
    acknowledge now (the end message waits for that acknowledgement)."""

    series_id: str


Control = Union[Hello, Ack, Welcome, Refused, Sync, Shared]
_CONTROL_TYPES: dict[str, type] = {TYPE_HELLO: Hello, TYPE_ACK: Ack, TYPE_WELCOME: Welcome,
                                   TYPE_REFUSED: Refused, TYPE_SYNC: Sync, TYPE_SHARED: Shared}
_CONTROL_TEXT_FIELDS = ("series_id", "reason", "receiver", "failed_reason", "shared_dir",
                        "shared_probe", "shared_token", "token")
_CONTROL_NAMES: dict[type, str] = {cls: name for name, cls in _CONTROL_TYPES.items()}


def _json_part(header: dict[str, Any]) -> bytes:
    return json.dumps(header, separators=(",", ":")).encode("utf-8")


def _as_wire_array(arr: np.ndarray) -> np.ndarray:
    """The array as little-endian C-order; copies only if it was not already."""
    dt = arr.dtype.newbyteorder("<") if arr.dtype.byteorder == ">" else arr.dtype
    return np.ascontiguousarray(arr, dtype=dt)


def encode_start(start: SeriesStart) -> list[bytes]:
    """One-part message announcing a series."""
    start.validate()
    header: dict[str, Any] = {"type": TYPE_START, "version": FORMAT_VERSION}
    header.update(dataclasses.asdict(start))
    return [_json_part(header)]


def encode_block(block: FrameBlock, series_id: str | None = None,
                 shared: Optional[tuple[str, int, int]] = None) -> list[Union[bytes, memoryview]]:
    """Five-part message: JSON header, then the four arrays as zero-copy memoryviews.
    ``shared`` (segment, offset, lease): the spectra lie there in shared memory
    (shared_frames.py); their part is then empty and the header says where, and
    which lease (numbered from 0 over the connection) the receiver releases."""
    block.validate()
    arrays = [_as_wire_array(getattr(block, name)) for name in ARRAY_PARTS]
    header: dict[str, Any] = {
        "type": TYPE_FRAMES,
        "version": FORMAT_VERSION,
        "series_id": block.series_id if series_id is None else series_id,
        "first_frame": int(block.first_frame),
        "count": block.count,
        "channels": block.channels,
        "bins": block.bins,
    }
    for name, arr in zip(ARRAY_PARTS, arrays):
        header[name] = {"dtype": arr.dtype.str, "shape": list(arr.shape)}
    if shared is not None:
        header["spectra"]["shared"] = {"segment": shared[0], "offset": int(shared[1]),
                                       "lease": int(shared[2])}
    parts: list[Union[bytes, memoryview]] = [_json_part(header)]
    parts.extend(memoryview(arr).cast("B") for arr in arrays)
    if shared is not None:
        parts[1] = b""
    return parts


def encode_end(end: SeriesEnd) -> list[bytes]:
    """One-part message closing a series."""
    header: dict[str, Any] = {"type": TYPE_END, "version": FORMAT_VERSION}
    header.update(dataclasses.asdict(end))
    return [_json_part(header)]


def encode_control(msg: Control) -> list[bytes]:
    """One-part session message (hello, ack, welcome, refused, sync)."""
    header: dict[str, Any] = {"type": _CONTROL_NAMES[type(msg)], "version": FORMAT_VERSION}
    header.update(dataclasses.asdict(msg))
    return [_json_part(header)]


def decode_control(parts: Sequence[Any], hdr: Optional[dict[str, Any]] = None) -> Control:
    """Decode a one-part session message; WireFormatError for anything else.
    ``hdr``: part 0 already parsed by `header` (it is not parsed again)."""
    hdr = header(parts) if hdr is None else hdr
    cls = _CONTROL_TYPES.get(hdr["type"])
    if cls is None:
        raise WireFormatError(f"{hdr['type']!r} is not a session message")
    if len(parts) != 1:
        raise WireFormatError(f"{hdr['type']} message must have 1 part, got {len(parts)}")
    try:
        msg = cls(**_fields_from(cls, hdr))
    except TypeError as exc:
        raise WireFormatError(f"malformed {hdr['type']} message: {exc}") from exc
    for name, value in dataclasses.asdict(msg).items():
        if name in _CONTROL_TEXT_FIELDS:
            if not isinstance(value, str):
                raise WireFormatError(f"{hdr['type']} field {name} must be a string, got {value!r}")
        elif not isinstance(value, int) or isinstance(value, bool) or value < 0:
            raise WireFormatError(f"{hdr['type']} field {name} must be an integer >= 0, got {value!r}")
    return msg


def is_control(hdr: dict[str, Any]) -> bool:
    """True if a parsed header (`header`) names a session message."""
    return hdr["type"] in _CONTROL_TYPES


def encode_none() -> list[bytes]:
    """Monitor reply meaning "no frame yet"."""
    return [_json_part({"type": TYPE_NONE, "version": FORMAT_VERSION})]


def _buffer(part: Any) -> memoryview:
    """A memoryview of a received part (zmq.Frame, bytes or any buffer)."""
    buf = getattr(part, "buffer", None)  # zmq.Frame received with copy=False
    return memoryview(buf if buf is not None else part)


def header(parts: Sequence[Any]) -> dict[str, Any]:
    """Parse and check part 0 (JSON object with type and a supported version)."""
    if not parts:
        raise WireFormatError("empty message")
    try:
        hdr = json.loads(bytes(_buffer(parts[0])))
    except (UnicodeDecodeError, ValueError) as exc:
        raise WireFormatError(f"part 0 is not a JSON header: {exc}") from exc
    if not isinstance(hdr, dict) or "type" not in hdr:
        raise WireFormatError("part 0 must be a JSON object with a 'type' key")
    version = hdr.get("version")
    if version != FORMAT_VERSION:
        raise WireFormatError(f"stream format version {version!r} not supported (this reader: {FORMAT_VERSION})")
    return hdr


def _fields_from(cls: type, hdr: dict[str, Any]) -> dict[str, Any]:
    """Keyword arguments for a dataclass; unknown keys are ignored (additive changes)."""
    names = {f.name for f in dataclasses.fields(cls)}
    required = {
        f.name
        for f in dataclasses.fields(cls)
        if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
    }
    missing = required - hdr.keys()
    if missing:
        raise WireFormatError(f"{hdr['type']} message lacks {sorted(missing)}")
    return {k: v for k, v in hdr.items() if k in names}


#: Resolves a shared-memory spectra reference: (segment, offset, lease, dtype, shape) -> array.
SharedResolver = Callable[[str, int, int, str, list], np.ndarray]


def _shared_reference(where: Any) -> tuple[str, int, int]:
    """(segment, offset, lease) of a ``"shared"`` spectra description."""
    try:
        segment, offset, lease = str(where["segment"]), int(where["offset"]), int(where["lease"])
    except (KeyError, TypeError, ValueError) as exc:
        raise WireFormatError(f"malformed shared-memory reference {where!r}") from exc
    return segment, offset, lease


def shared_lease(hdr: dict[str, Any]) -> Optional[int]:
    """The lease of a frames header whose spectra are in shared memory, else None
    (a receiver that cannot decode the message still releases its lease)."""
    try:
        lease = _shared_reference(hdr["spectra"]["shared"])[2]
    except (KeyError, TypeError, WireFormatError):
        return None
    return lease if lease >= 0 else None


def _decode_frames(hdr: dict[str, Any], parts: Sequence[Any],
                   shared: Optional[SharedResolver] = None) -> FrameBlock:
    if len(parts) != 1 + len(ARRAY_PARTS):
        raise WireFormatError(f"frames message needs {1 + len(ARRAY_PARTS)} parts, got {len(parts)}")
    try:
        count, channels, bins = int(hdr["count"]), int(hdr["channels"]), int(hdr["bins"])
        first_frame = int(hdr["first_frame"])
        series_id = str(hdr["series_id"])
        specs = {name: hdr[name] for name in ARRAY_PARTS}
    except (KeyError, TypeError, ValueError) as exc:
        raise WireFormatError(f"frames header incomplete or malformed: {exc!r}") from exc
    expected_shapes = {
        "spectra": [count, channels, bins],
        "scalers": [count, channels, NUM_SCALERS],
        "dtfactor": [count, channels],
        "dtpercent": [count, channels],
    }
    arrays = {}
    for name, part in zip(ARRAY_PARTS, parts[1:]):
        spec = specs[name]
        if not isinstance(spec, dict):
            raise WireFormatError(f"{name} description must be an object with dtype and shape")
        dtype, shape = spec.get("dtype"), spec.get("shape")
        if dtype not in ALLOWED_DTYPES[name]:
            raise WireFormatError(f"{name} dtype {dtype!r} not allowed; expected one of {ALLOWED_DTYPES[name]}")
        if shape != expected_shapes[name]:
            raise WireFormatError(f"{name} shape {shape} does not match header; expected {expected_shapes[name]}")
        buf = _buffer(part)
        nbytes = int(np.prod(shape)) * np.dtype(dtype).itemsize
        if "shared" in spec and name == "spectra":
            arrays[name] = _shared_spectra(spec["shared"], dtype, shape, buf, shared)
            continue
        if buf.nbytes != nbytes:
            raise WireFormatError(f"{name} part has {buf.nbytes} bytes, header implies {nbytes}")
        arrays[name] = np.frombuffer(buf, dtype=dtype).reshape(shape)
    return FrameBlock(first_frame=first_frame, series_id=series_id, **arrays)


def _shared_spectra(where: Any, dtype: str, shape: list, part: memoryview,
                    shared: Optional[SharedResolver]) -> np.ndarray:
    if shared is None:
        raise WireFormatError("spectra in shared memory, but this receiver did not ask for it")
    if part.nbytes:
        raise WireFormatError("spectra both in shared memory and in the message")
    segment, offset, lease = _shared_reference(where)
    try:
        return shared(segment, offset, lease, dtype, shape)
    except OSError as exc:
        raise SharedSpectraError(str(exc)) from exc


def decode(parts: Sequence[Any], hdr: Optional[dict[str, Any]] = None,
           shared: Optional[SharedResolver] = None) -> Message:
    """Decode one multipart message; arrays are read-only views of the received buffers.
    ``hdr``: part 0 already parsed by `header` (it is not parsed again); ``shared``:
    how this receiver finds spectra sent by shared memory (None: it asked for none)."""
    hdr = header(parts) if hdr is None else hdr
    kind = hdr["type"]
    if kind == TYPE_FRAMES:
        return _decode_frames(hdr, parts, shared)
    if kind not in (TYPE_START, TYPE_END):
        raise WireFormatError(f"unknown message type {kind!r}")
    if len(parts) != 1:
        raise WireFormatError(f"{kind} message must have 1 part, got {len(parts)}")
    try:
        if kind == TYPE_START:
            start = SeriesStart(**_fields_from(SeriesStart, hdr))
            start.validate()
            return start
        return SeriesEnd(**_fields_from(SeriesEnd, hdr))
    except TypeError as exc:
        raise WireFormatError(f"malformed {kind} message: {exc}") from exc
