"""Building blocks for the IOC's PVGroups.

Every client put, whether caproto rejects it (limits, enum, type) or one of our
putters does, passes through `_ReportingMixin.write_from_dbr`, so a rejected put
always reaches the group's `put_rejected` hook: the IOC puts the reason in
`det1:StatusMessage_RBV` and the log, and the client gets the put failure.
Internal writes (`pv.write(...)` from our own code) do not pass through it.
"""
from __future__ import annotations

import logging
from typing import Any

from caproto import ChannelType
from caproto.server import PVGroup, pvproperty
from caproto.server import server as _server

log = logging.getLogger(__name__)

STRING_LENGTH = 256
PATH_LENGTH = 512


class PutRejected(ValueError):
    """A put that the IOC refuses; its text is what the user sees."""


class _ReportingMixin:
    async def write_from_dbr(self, data, *args, **kwargs):
        try:
            return await super().write_from_dbr(data, *args, **kwargs)
        except Exception as ex:
            if not str(ex):
                ex = PutRejected(self._describe_bad_value(data, ex))
            group = getattr(self, "group", None)
            if group is not None:
                await group.put_rejected(self, ex)
            raise ex

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
INT32 = (-2**31, 2**31 - 1)
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


def _reporting(cls):
    return type(cls.__name__, (_ReportingMixin, _MetadataMixin, cls), {})


def _described(cls):
    return type(cls.__name__, (_MetadataMixin, cls), {})


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
            group.root.setting_changed()
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
    return prop


def root_putter(method: str):
    """A putter that hands (instance, value) to the root group's `method`."""
    async def _put(group, instance, value):
        return await getattr(group.root, method)(instance, value)
    return _put


def command(attr: str, name: str, handler: str, *, doc: str, strings=("Done", "Do")) -> dict:
    """A bo-style command PV: any write calls ``root.<handler>()``; the put completes after it."""
    async def _put(group, instance, new_value):
        await getattr(group.root, handler)()
        return 0

    return {attr: enum_pv(name, strings, 0, doc=doc, put=_put)}
