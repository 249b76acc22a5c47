"""Building blocks for the IOC's PVGroups.

Every client put, whatever DBR type it comes as, passes through
`_ReportingMixin.write_from_dbr`, which checks it against the PV (`check_value`:
type, enum range, element count, 40-character strings, int32 range, finite
floats, drive limits DRVL..DRVH) before anything is stored. A put that does not
fit, or that caproto or one of our putters refuses, reaches the group's
`put_rejected` hook: the IOC puts the reason in `det1:StatusMessage_RBV` and the
log, and the client gets the put failure. Nothing is stored and nothing is saved
to the settings file.

A refused put, or a refused internal write, leaves the PV's value, timestamp and
alarm (STAT/SEVR) unchanged, the rule README.md states for users: caproto would
raise a WRITE/MAJOR alarm on the PV's alarm group (shared by every PV of the
group), which nothing would ever clear.

Internal writes (`pv.write(...)` from our own code) do not pass through
`write_from_dbr`; the settings store checks restored values with `check_value`.

Every PV is also an EPICS record: `.RTYP` (the default rule in
record_fields.default_record_type, or `record_type(prop, "calc")`), `.DESC`,
`.SCAN`, `.PROC`, ... built on first access (see record_fields).
"""
from __future__ import annotations

import logging
import math
from typing import Any

import numpy as np
from caproto import ChannelType, native_type
from caproto._data import SkipWrite
from caproto.server import PVGroup, pvproperty
from caproto.server import server as _server

from xspress3.vocabulary import INT32_MAX, INT32_MIN

from . import enums, record_fields
from .handlers import RootCommand, RootPut, root_of

log = logging.getLogger(__name__)

STRING_LENGTH = 256
PATH_LENGTH = 512
#: Characters a DBR_STRING value holds (40 and its terminator).
DBR_STRING_LENGTH = 40
INT16 = (-2**15, 2**15 - 1)
FLOAT32_MAX = float(np.finfo(np.float32).max)


class PutRejected(ValueError):
    """A put that the IOC refuses; its text is what the user sees."""


# ---- put checks ----------------------------------------------------------------------

def wire_items(data, data_type) -> list:
    """A put's elements as Python values: str for DBR_STRING, numbers otherwise."""
    if native_type(data_type) == ChannelType.STRING:
        out = []
        for item in data:
            if isinstance(item, bytes):
                item = item.split(b"\0", 1)[0].decode("latin-1")
            out.append(str(item))
        return out
    if isinstance(data, (bytes, bytearray)):
        return list(data)
    return [v.item() if hasattr(v, "item") else v for v in data]


def _number(pv, item, what: str):
    """A number from a put element (numbers pass, text is parsed), finite."""
    if isinstance(item, str):
        text = item.strip()
        try:
            item = int(text, 0)
        except ValueError:
            try:
                item = float(text)
            except ValueError:
                raise PutRejected(f"{item!r} is not {what}") from None
    if isinstance(item, (bool, np.bool_)):
        item = int(item)
    if not isinstance(item, (int, float)):
        raise PutRejected(f"{item!r} is not {what}")
    if isinstance(item, float) and not math.isfinite(item):
        raise PutRejected(f"{item!r} is not a finite number")
    return item


def _until_nul(text):
    """Text up to its terminating NUL (and NUL padding); text after a NUL is refused,
    not cut off silently."""
    nul = b"\0" if isinstance(text, bytes) else "\0"
    head, _, rest = text.partition(nul)
    if rest.strip(nul):
        raise PutRejected("text holds a NUL character followed by more text")
    return head.decode("latin-1") if isinstance(head, bytes) else head


def _check_text(pv, value) -> str:
    """A CHAR-waveform PV's new text: at most NELM characters, no text after a NUL."""
    if isinstance(value, (bytes, bytearray)):
        text = _until_nul(bytes(value))
    elif isinstance(value, str):
        text = _until_nul(value)
    else:
        items = list(value) if isinstance(value, (list, tuple, np.ndarray)) else [value]
        if items and all(isinstance(i, str) for i in items):
            if len(items) > 1:
                raise PutRejected(f"{len(items)} strings for one text value")
            return _check_text(pv, items[0])
        raw = bytearray()
        for item in items:
            number = _number(pv, item, "a character code")
            if number != int(number) or not -128 <= number <= 255:
                raise PutRejected(f"{number!r} is not a character code (0..255)")
            raw.append(int(number) & 0xFF)
        text = _until_nul(bytes(raw))
    try:
        text.encode("latin-1")
    except UnicodeEncodeError:
        raise PutRejected(f"{text[:40]!r} has characters outside latin-1") from None
    if len(text) > pv.max_length:
        raise PutRejected(f"{len(text)} characters is more than this PV holds "
                          f"(NELM {pv.max_length})")
    return text


def _check_item(pv, item):
    """One element of a put to a non-CHAR PV, as the PV stores it."""
    dtype = pv.data_type
    if dtype == ChannelType.ENUM:
        strings = pv.enum_strings
        if isinstance(item, str) and item in strings:
            return item
        choices = f"0..{len(strings) - 1}: {', '.join(strings)}"
        if isinstance(item, str) and not item.strip().lstrip("-").isdigit():
            raise PutRejected(f"{item!r} is not one of {', '.join(strings)} (or {choices})")
        index = _number(pv, item, "a state of this PV")
        if index != int(index) or not 0 <= index < len(strings):
            raise PutRejected(f"{index!r} is not a state of this PV ({choices})")
        return strings[int(index)]
    if dtype == ChannelType.STRING:
        text = item if isinstance(item, str) else str(item)
        if len(text) > DBR_STRING_LENGTH:
            raise PutRejected(f"{len(text)} characters is more than a string PV holds "
                              f"({DBR_STRING_LENGTH})")
        return text
    value = _number(pv, item, "a number")
    if dtype in (ChannelType.LONG, ChannelType.INT):
        lo, hi = INT32 if dtype == ChannelType.LONG else INT16
        if not lo <= value <= hi:
            raise PutRejected(f"{value!r} is outside the {'int32' if hi > 2**15 else 'int16'} "
                              f"range of this PV ({lo}..{hi})")
        value = int(value)
    elif dtype == ChannelType.FLOAT and abs(value) > FLOAT32_MAX:
        raise PutRejected(f"{value!r} is outside the float32 range of this PV")
    elif dtype == ChannelType.DOUBLE:
        value = float(value)
    return value


def check_value(pv, value):
    """The value a put of `value` would store in `pv`, or PutRejected saying why
    it does not fit: wrong type, enum index out of range, more elements than
    NELM (CHAR text: characters), strings over 40 characters, numbers beyond
    int32 or not finite, scalars outside the drive limits DRVL..DRVH.
    `value` is a Python value (a str, a number, a list or array of them)."""
    if pv.data_type == ChannelType.CHAR:
        return _check_text(pv, value)
    if isinstance(value, (list, tuple, np.ndarray)):
        items = list(value)
    else:
        items = [value]
    if not items:
        raise PutRejected("an empty put carries no value")
    if len(items) > pv.max_length:
        raise PutRejected(f"{len(items)} elements is more than this PV holds "
                          f"(NELM {pv.max_length})")
    items = [_check_item(pv, v.item() if hasattr(v, "item") else v) for v in items]
    if pv.max_length > 1:
        if pv.data_type in (ChannelType.LONG, ChannelType.INT, ChannelType.DOUBLE,
                            ChannelType.FLOAT):
            return np.asarray(items, dtype=np.asarray(pv.value).dtype)
        return items
    item = items[0]
    lo, hi = getattr(pv, "lower_ctrl_limit", 0), getattr(pv, "upper_ctrl_limit", 0)
    if lo != hi and isinstance(item, (int, float)) and not lo <= item <= hi:
        raise PutRejected(f"Cannot write data {item}. Limits are set to {lo} and {hi}.")
    return item


class _RecordMixin:
    """Every PV is an EPICS record: `.RTYP` and the fields of its record type,
    built when first asked for (record_fields), never caproto's eager ones."""

    _record_state = None     # record_fields.RecordState, made on first use

    def __init__(self, *args, record=None, **kwargs):
        # the record type is read from pvspec.record (reported_record_type);
        # caproto would build every field of that record type here
        super().__init__(*args, record=None, **kwargs)

    @property
    def reported_record_type(self) -> str:
        record = getattr(getattr(self, "pvspec", None), "record", None)
        return record if isinstance(record, str) else record_fields.default_record_type(self)

    @reported_record_type.setter
    def reported_record_type(self, value) -> None:
        """Set by caproto's __init__ ('caproto'); the record type is derived instead."""

    @property
    def fields(self) -> record_fields.FieldMap:
        return record_fields.FieldMap(self)

    @fields.setter
    def fields(self, value) -> None:
        """caproto's __init__ sets an empty dict; the fields are built on access."""

    def get_field(self, field: str):
        if not field or field == "VAL":
            return self
        return self.fields[field]

    async def publish(self, flags):
        await super().publish(flags)
        state = self._record_state
        if state is not None and state.subscribed:
            await record_fields.post_following_fields(self, flags)


class _ReportingMixin:
    async def write_from_dbr(self, data, data_type, metadata, *, flags=0):
        try:
            if data_type in (ChannelType.PUT_ACKS, ChannelType.PUT_ACKT):
                return await super().write_from_dbr(data, data_type, metadata, flags=flags)
            if data_type in (ChannelType.STSACK_STRING, ChannelType.CLASS_NAME):
                raise PutRejected(f"{ChannelType(data_type).name} is not a value to put")
            if native_type(data_type) == ChannelType.CHAR and self.data_type == ChannelType.CHAR:
                value = check_value(self, bytes(np.asarray(data, dtype=np.uint8)))
            else:
                value = check_value(self, wire_items(data, data_type))
            if metadata is None:
                return await self.write(value, flags=flags)
            return await super().write_from_dbr(data, data_type, metadata, flags=flags)
        except Exception as ex:
            if not str(ex):
                ex = PutRejected(self._describe_bad_value(data, ex))
            group = getattr(self, "group", None)
            if group is not None:
                await group.put_rejected(self, ex)
            raise ex

    async def write(self, value, *, flags=0, verify_value=True, **kwargs):
        """caproto's write, except that a refused value leaves the alarm as it was
        (see the module docstring): the check and the putter run here first."""
        if verify_value:
            value = self.preprocess_value(value)
            try:
                modified = await self.verify_value(value)
            except SkipWrite:
                return None
            except BaseException:
                self._clear_cached_alarms()
                raise
            if modified is SkipWrite:
                return None
            if modified is not None:
                value = modified
        return await super().write(value, flags=flags, verify_value=False, **kwargs)

    def _describe_bad_value(self, data, ex: Exception) -> str:
        """Text for caproto errors that carry none (e.g. a bad enum string or index)."""
        try:
            value = data[0] if len(data) == 1 else data
        except TypeError:
            value = data
        if isinstance(value, bytes):
            value = value.decode("latin-1", "replace")
        strings = getattr(self, "enum_strings", None)
        if strings:
            return f"{value!r} is not one of {', '.join(strings)} (or 0..{len(strings) - 1})"
        return f"invalid value {value!r} ({type(ex).__name__})"


# Units of numeric PVs declared without any, by a word in their name (first match wins).
UNITS_BY_NAME = (
    ("Lost", "frames"), ("Sent", "frames"), ("Counter", "frames"), ("FRAME", "frames"),
    ("Frames", "frames"), ("Captured", "frames"), ("Capture", "frames"), ("NumImages", "frames"),
    ("NumExposures", "frames"), ("UniqueId", "frames"), ("QueueSize", "frames"),
    ("Receivers", "clients"), ("CHANNELS", "channels"), ("CARDS", "cards"),
    ("SizeY", "channels"), ("Size1", "channels"), ("SizeZ", "n/a"), ("Size2", "n/a"),
    ("SPECTRA", "bins"), ("Size", "bins"), ("Bin", "bins"), ("MinX", "bins"), ("MinY", "bins"),
    ("Temperature", "C"), ("Rate", "Hz"), ("Time", "s"), ("Buffers", "buffers"),
    ("Threads", "threads"), ("Level", "level"), ("Dim", "elements"),
)
INT32 = (INT32_MIN, INT32_MAX)
FLOAT_RANGE = (-1e12, 1e12)


def _default_units(pvname: str) -> str:
    for word, units in UNITS_BY_NAME:
        if word in pvname:
            return units
    return "n/a"


class _MetadataMixin:
    """Every numeric PV gets units, display limits and (if writable) drive limits.

    Declarations give them where they mean something; this fills the rest in one
    place: units from the name (UNITS_BY_NAME, else "n/a"), drive limits from the
    value's type, display limits from the drive limits.
    """

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if not hasattr(self, "upper_ctrl_limit"):
            return
        if not self.units:
            self._data["units"] = _default_units(self.pvname)
        if getattr(self, "max_length", 1) > 1:
            return
        writable = not type(self).__name__.endswith("RO")
        if writable and self.lower_ctrl_limit == self.upper_ctrl_limit:
            lo, hi = INT32 if isinstance(self.value, int) else FLOAT_RANGE
            self._data["lower_ctrl_limit"], self._data["upper_ctrl_limit"] = lo, hi
        if self.lower_disp_limit == self.upper_disp_limit:
            if self.lower_ctrl_limit != self.upper_ctrl_limit:
                lo, hi = self.lower_ctrl_limit, self.upper_ctrl_limit
            elif isinstance(self.value, int):
                lo, hi = min(0, self.value), INT32[1]
            else:
                lo, hi = min(0.0, self.value), FLOAT_RANGE[1]
            self._data["lower_disp_limit"], self._data["upper_disp_limit"] = lo, hi


class _ReadOnlyMixin:
    """A read-only PV refuses client value puts itself, not only through its access
    rights (an access-security policy may replace those per client)."""

    async def write_from_dbr(self, data, data_type, metadata, *, flags=0):
        if data_type in (ChannelType.PUT_ACKS, ChannelType.PUT_ACKT):
            return await super().write_from_dbr(data, data_type, metadata, flags=flags)
        ex = PutRejected("read-only PV")
        group = getattr(self, "group", None)
        if group is not None:
            await group.put_rejected(self, ex)
        raise ex


def _reporting(cls):
    return type(cls.__name__, (_ReportingMixin, _RecordMixin, _MetadataMixin, cls), {})


def _described(cls):
    return type(cls.__name__, (_ReadOnlyMixin, _RecordMixin, _MetadataMixin, cls), {})


class Xsp3Group(PVGroup):
    """Base group: reports rejected puts to the root group (see module docstring)."""

    type_map = {dtype: _reporting(cls) for dtype, cls in _server.pvspec_type_map.items()}
    type_map_read_only = {dtype: _described(cls)
                          for dtype, cls in _server.pvspec_type_map_read_only.items()}

    @property
    def root(self):
        group = self
        while getattr(group, "parent", None) is not None:
            group = group.parent
        return group

    async def put_rejected(self, pv, exc: Exception) -> None:
        root = self.root
        if root is not self and hasattr(root, "put_rejected"):
            await root.put_rejected(pv, exc)
        else:
            log.warning("put to %s rejected: %s", pv.pvname, exc)


def reason(exc: Exception) -> str:
    """Short user-facing text for a rejected put."""
    text = str(exc) or type(exc).__name__
    return text.replace("\n", " ")


# ---- declaration helpers -------------------------------------------------------------

def text_pv(name: str, value: str = "", *, doc: str, read_only: bool = False,
            length: int = STRING_LENGTH, **kw) -> pvproperty:
    """A CHAR waveform holding a string, as areaDetector uses for paths and messages."""
    return pvproperty(name=name, value=value, dtype=ChannelType.CHAR, max_length=length,
                      string_encoding="latin-1",
                      read_only=read_only, doc=doc, **kw)


def enum_pv(name: str, strings, value=0, *, doc: str, read_only: bool = False, **kw) -> pvproperty:
    strings = tuple(strings)
    if isinstance(value, int):
        value = strings[value]
    return pvproperty(name=name, value=value, dtype=ChannelType.ENUM, enum_strings=strings,
                      read_only=read_only, doc=doc, **kw)


def _rbv_kwargs(kw: dict) -> dict:
    """Metadata copied onto a readback: units, precision, display limits (no drive limits)."""
    keep = ("units", "precision", "upper_disp_limit", "lower_disp_limit", "enum_strings",
            "string_encoding", "report_as_string", "max_length")
    out = {k: v for k, v in kw.items() if k in keep}
    if "upper_ctrl_limit" in kw and "upper_disp_limit" not in kw:
        out["upper_disp_limit"] = kw["upper_ctrl_limit"]
        out["lower_disp_limit"] = kw.get("lower_ctrl_limit", 0)
    return out


def setting(attr: str, name: str, value: Any, *, doc: str, dtype=None,
            rbv_strings=None, rbv_record=None, persist: bool = True, **kw) -> dict:
    """A setpoint PV and its `_RBV` twin.

    The setpoint's putter hands the value to ``group.apply_setting(attr, value)``;
    what that returns (what the hardware accepted) is stored in both PVs. It may
    raise to reject the put. Returns a dict of class attributes for `type()`.
    """
    async def _put(group, instance, new_value):
        accepted = await group.apply_setting(attr, new_value)
        if accepted is None:
            accepted = new_value
        rbv = getattr(group, attr + "_rbv")
        await rbv.write(accepted)
        if persist:
            root_of(group).setting_changed()
        return accepted

    if dtype == ChannelType.ENUM or "enum_strings" in kw:
        strings = tuple(kw.pop("enum_strings"))
        sp = enum_pv(name, strings, value, doc=doc, put=_put, **kw)
        extra = {"record": rbv_record} if rbv_record else {}
        rbv = enum_pv(name + "_RBV", rbv_strings or strings, value, read_only=True,
                      doc=f"Readback of {name}: the value in force.", **extra)
    elif dtype == ChannelType.CHAR:
        sp = text_pv(name, value, doc=doc, put=_put, **kw)
        rbv = text_pv(name + "_RBV", value, read_only=True, doc=f"Readback of {name}.",
                      length=kw.get("max_length", STRING_LENGTH))
    else:
        sp = pvproperty(name=name, value=value, dtype=dtype, doc=doc, put=_put, **kw)
        rbv = pvproperty(name=name + "_RBV", value=value, dtype=dtype, read_only=True,
                         doc=f"Readback of {name}: the value in force.", **_rbv_kwargs(kw))
    sp.persist = persist  # read by the settings store
    return {attr: sp, attr + "_rbv": rbv}


def record_type(prop: pvproperty, rtyp: str) -> pvproperty:
    """Declare the EPICS record type a PV reports (its .RTYP), where the default
    rule (pvtypes: from dtype, length and access) differs from the areaDetector
    IOC's record, e.g. ``record_type(pvproperty(...), "calc")``."""
    prop.record_type_name = rtyp
    prop.pvspec = prop.pvspec._replace(record=rtyp)
    return prop


def root_putter(handler: RootPut):
    """A putter that hands (instance, value) to the root group through `handler`,
    one of the typed functions in ioc/handlers.py (e.g. ``handlers.acquire_put``)."""
    async def _put(group, instance, value):
        return await handler(root_of(group), instance, value)
    return _put


def command(attr: str, name: str, handler: RootCommand, *, doc: str,
            strings=enums.DONE_DO) -> dict:
    """A bo-style command PV: any write runs ``handler(root)`` (one of the typed
    commands in ioc/handlers.py); the put completes after it."""
    async def _put(group, instance, new_value):
        await handler(root_of(group))
        return 0

    return {attr: enum_pv(name, strings, 0, doc=doc, put=_put)}
