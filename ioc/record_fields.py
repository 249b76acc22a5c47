"""EPICS record fields (``PV.DESC``, ``PV.SCAN``, ``PV.EGU``, ...) built on first access.

caproto's server resolves ``REC.FIELD`` by calling ``get_field(FIELD)`` on the
record's ChannelData and caches what it returns in its PV database. caproto's own
record fields (``pvproperty(record=...)``) build every field of every record at
start: for ~4000 PVs that took 11.8 s and 605 MB. Here a field is a small
`FieldChannel` (a record and a shared `FieldSpec`) made when a client first asks
for it; its value is read from the record when it is read, so it needs no copy.
Field objects are not kept by the record: caproto's Context keeps the one it
resolved (in its PV database), and two objects for one field read and write the
same values. The few values a field holds of its own (DESC once written, SCAN,
DISA) and the field objects that have subscribers live in one `RecordState` per
record, made on first use; a field's change is posted to every subscribed object
of that field.

Which fields a record has follows its record type (``.RTYP``), as in EPICS base:
every record has the dbCommon fields of `COMMON`; analog, long, binary,
multi-bit and array records add theirs (`FIELDS_BY_RECORD`). SCAN, PROC and DESC
are writable over Channel Access; the other fields refuse puts.

SCAN: a periodic value makes the record process (`process`) at that period in an
asyncio task on the IOC loop; Passive, Event and I/O Intr stop it. Read-only
records, which the IOC posts on change, start as "I/O Intr"; writable ones as
"Passive". Processing a record (a put to PROC, a periodic SCAN) hands its
current value to its putter, as a put of that value would: ``TSRead.PROC``
reads the time series.
"""
from __future__ import annotations

import asyncio
import datetime
import logging
import math
from collections import defaultdict
from typing import Any, Callable, Optional

import numpy as np
from caproto import AccessRights, AlarmStatus, ChannelType, native_type
from caproto import _constants as ca_constants
from caproto._data import ChannelData
from caproto.server.server import PvpropertyReadOnlyData

log = logging.getLogger(__name__)

DESC_LENGTH = 40       # EPICS DESC is char[41]: 40 characters and the terminator
STRING_LENGTH = 40     # a DBR_STRING holds 40 characters and the terminator

#: menuScan, in EPICS base order (index = SCAN value).
MENU_SCAN = ("Passive", "Event", "I/O Intr", "10 second", "5 second", "2 second",
             "1 second", ".5 second", ".2 second", ".1 second")
SCAN_PERIOD_S = {"10 second": 10.0, "5 second": 5.0, "2 second": 2.0, "1 second": 1.0,
                 ".5 second": 0.5, ".2 second": 0.2, ".1 second": 0.1}
#: menuAlarmStat as far as a CA enum goes (16 strings); higher codes read as numbers.
MENU_ALARM_STAT = tuple(s.name for s in AlarmStatus)[:ca_constants.MAX_ENUM_STATES]
MENU_ALARM_SEVR = ("NO_ALARM", "MINOR", "MAJOR", "INVALID")
#: menuFtype (a waveform's FTVL).
MENU_FTYPE = ("STRING", "CHAR", "UCHAR", "SHORT", "USHORT", "LONG", "ULONG", "INT64",
              "UINT64", "FLOAT", "DOUBLE", "ENUM")
FTVL_BY_TYPE = {ChannelType.STRING: "STRING", ChannelType.CHAR: "CHAR",
                ChannelType.INT: "SHORT", ChannelType.LONG: "LONG",
                ChannelType.FLOAT: "FLOAT", ChannelType.DOUBLE: "DOUBLE",
                ChannelType.ENUM: "ENUM"}
#: The mbbi/mbbo state-string fields, state 0 to 15.
MBB_STRING_FIELDS = ("ZRST", "ONST", "TWST", "THST", "FRST", "FVST", "SXST", "SVST",
                     "EIST", "NIST", "TEST", "ELST", "TVST", "TTST", "FTST", "FFST")

FLOAT_TYPES = (ChannelType.DOUBLE, ChannelType.FLOAT)
INTEGER_TYPES = (ChannelType.LONG, ChannelType.INT, ChannelType.CHAR)


# ---- record type ---------------------------------------------------------------------

def is_writable(pv) -> bool:
    return not isinstance(pv, PvpropertyReadOnlyData)


def default_record_type(pv) -> str:
    """The record an areaDetector database would use for this PV: ENUM -> bo/mbbo
    (writable, by number of states) or bi/mbbi; STRING -> stringout/stringin; CHAR
    or a numeric array -> waveform; integer -> longout/longin; float -> ao/ai."""
    out = is_writable(pv)
    dtype = pv.data_type
    if dtype == ChannelType.ENUM:
        binary = len(pv.enum_strings) <= 2
        return ("bo" if binary else "mbbo") if out else ("bi" if binary else "mbbi")
    if dtype == ChannelType.STRING:
        return "stringout" if out else "stringin"
    if dtype == ChannelType.CHAR or pv.max_length > 1:
        return "waveform"
    if dtype in FLOAT_TYPES:
        return "ao" if out else "ai"
    return "longout" if out else "longin"


# ---- per-record state ----------------------------------------------------------------

class RecordState:
    """What a record holds beyond its caproto value: field values set by clients or
    the IOC, the field objects that have subscribers, the SCAN task. Made on first
    use; most records never need one."""

    __slots__ = ("subscribed", "desc", "scan", "disa", "scan_task")

    def __init__(self):
        self.subscribed: list = []
        self.desc: Optional[str] = None
        self.scan: Optional[str] = None
        self.disa = 0
        self.scan_task: Optional[asyncio.Task] = None


def state_of(pv) -> RecordState:
    state = pv._record_state
    if state is None:
        state = pv._record_state = RecordState()
    return state


_TRAILING_WORDS = {"a", "an", "and", "as", "at", "by", "for", "from", "in", "into", "of",
                   "on", "or", "the", "to", "with", "when", "while", "is", "are"}


def short_description(doc: Optional[str]) -> str:
    """A DESC from a docstring: its first sentence, cut at a word to 40 characters."""
    text = " ".join((doc or "").split())
    for end in (". ", "; ", ": "):
        if end in text:
            text = text.split(end, 1)[0]
    text = text.rstrip(".")
    if len(text) <= DESC_LENGTH:
        return text
    cut = text[:DESC_LENGTH + 1].rsplit(" ", 1)[0]
    if cut.count("(") > cut.count(")"):          # no half of a parenthesis
        cut = cut[:cut.rindex("(")]
    words = cut.split()
    while len(words) > 2 and words[-1].lower() in _TRAILING_WORDS:
        words.pop()
    cut = " ".join(words)
    if not DESC_LENGTH // 2 <= len(cut) <= DESC_LENGTH:     # one long word: cut inside it
        cut = text[:DESC_LENGTH]
    return cut.rstrip(" ,;:(-")


def description(pv) -> str:
    state = pv._record_state
    if state is not None and state.desc is not None:
        return state.desc
    return short_description(getattr(getattr(pv, "pvspec", None), "doc", None))


def scan_value(pv) -> str:
    state = pv._record_state
    if state is not None and state.scan is not None:
        return state.scan
    return "Passive" if is_writable(pv) else "I/O Intr"


async def process(pv) -> None:
    """Process a record: its putter gets its current value, as a put of it would."""
    value = pv.value
    if hasattr(value, "copy"):
        value = value.copy()
    await pv.write(value)


async def _scan_loop(pv, period: float) -> None:
    """Process `pv` every `period` seconds; a failure is logged once per change of
    reason (a failing 10 Hz scan must not flood the log) and the scan goes on."""
    loop = asyncio.get_running_loop()
    next_at = loop.time()
    last_error = None
    while True:
        next_at = max(next_at + period, loop.time())    # late: skip, do not catch up
        await asyncio.sleep(next_at - loop.time())
        try:
            await process(pv)
            last_error = None
        except Exception as ex:
            if str(ex) != last_error:
                log.warning("periodic processing of %s failed: %s", pv.pvname, ex)
            last_error = str(ex)


def set_scan(pv, scan: str) -> None:
    state = state_of(pv)
    state.scan = scan
    if state.scan_task is not None:
        state.scan_task.cancel()
        state.scan_task = None
    period = SCAN_PERIOD_S.get(scan)
    if period is not None:
        state.scan_task = asyncio.get_running_loop().create_task(_scan_loop(pv, period))


# ---- field specifications ------------------------------------------------------------

class FieldSpec:
    """One field of a record type, shared by every record that has it.

    `get(record)` gives its value (native to `dtype`); `put(record, value)`, if
    any, makes it writable over Channel Access; `follows` marks fields whose value
    changes with the record's own value or alarm (they are posted with it)."""

    __slots__ = ("name", "dtype", "get", "put", "enum_strings", "max_length", "follows")

    def __init__(self, name: str, dtype: ChannelType, get: Callable, put=None, *,
                 enum_strings=None, max_length: int = 1, follows: bool = False):
        self.name, self.dtype, self.get, self.put = name, dtype, get, put
        self.enum_strings = tuple(enum_strings) if enum_strings else None
        self.max_length = max_length
        self.follows = follows


def _limit(key: str):
    return lambda pv: pv._data.get(key, 0)


def _is_float(pv) -> bool:
    return pv.data_type in FLOAT_TYPES


def _timestamp_text(pv) -> str:
    stamp = datetime.datetime.fromtimestamp(pv.timestamp)
    return stamp.strftime("%Y-%m-%d %H:%M:%S.%f")


def _alarm_stat(pv):
    status = int(pv.alarm.status)
    return MENU_ALARM_STAT[status] if status < len(MENU_ALARM_STAT) else status


async def _put_desc(pv, value: str) -> None:
    state_of(pv).desc = value


async def _put_scan(pv, value: str) -> None:
    set_scan(pv, value)


async def _put_proc(pv, value) -> None:
    await process(pv)


def _string(name, get, put=None, follows=False) -> FieldSpec:
    return FieldSpec(name, ChannelType.STRING, get, put, follows=follows)


def _menu(name, strings, get, put=None, follows=False) -> FieldSpec:
    return FieldSpec(name, ChannelType.ENUM, get, put, enum_strings=strings, follows=follows)


def _numeric(name, get, *, double: bool) -> FieldSpec:
    return FieldSpec(name, ChannelType.DOUBLE if double else ChannelType.LONG, get)


COMMON = {
    "NAME": _string("NAME", lambda pv: pv.pvname),
    "RTYP": _string("RTYP", lambda pv: pv.reported_record_type),
    "DESC": _string("DESC", description, _put_desc),
    "SCAN": _menu("SCAN", MENU_SCAN, scan_value, _put_scan),
    # PROC and UDF are DBF_UCHAR in EPICS; served as SHORT, as caproto's CHAR is text
    "PROC": FieldSpec("PROC", ChannelType.INT, lambda pv: 0, _put_proc),
    "STAT": _menu("STAT", MENU_ALARM_STAT, _alarm_stat, follows=True),
    "SEVR": _menu("SEVR", MENU_ALARM_SEVR,
                  lambda pv: MENU_ALARM_SEVR[int(pv.alarm.severity)], follows=True),
    "TIME": _string("TIME", _timestamp_text, follows=True),
    "DISA": FieldSpec("DISA", ChannelType.INT,
                      lambda pv: pv._record_state.disa if pv._record_state else 0),
    "UDF": FieldSpec("UDF", ChannelType.INT, lambda pv: 0),
}


def _numeric_fields(double: bool, prec: bool, drive: bool) -> dict:
    out = {"EGU": _string("EGU", lambda pv: pv._data.get("units", ""))}
    if prec:
        out["PREC"] = FieldSpec("PREC", ChannelType.INT, lambda pv: pv._data.get("precision", 0))
    for name, key in (("HOPR", "upper_disp_limit"), ("LOPR", "lower_disp_limit"),
                      ("HIHI", "upper_alarm_limit"), ("HIGH", "upper_warning_limit"),
                      ("LOW", "lower_warning_limit"), ("LOLO", "lower_alarm_limit")):
        out[name] = _numeric(name, _limit(key), double=double)
    if drive:
        out["DRVH"] = _numeric("DRVH", _limit("upper_ctrl_limit"), double=double)
        out["DRVL"] = _numeric("DRVL", _limit("lower_ctrl_limit"), double=double)
    return out


def _enum_string(index: int):
    def get(pv):
        strings = pv.enum_strings if pv.data_type == ChannelType.ENUM else ()
        return strings[index] if index < len(strings) else ""
    return get


BINARY = {"ZNAM": _string("ZNAM", _enum_string(0)), "ONAM": _string("ONAM", _enum_string(1))}
MULTI_BIT = {name: _string(name, _enum_string(i)) for i, name in enumerate(MBB_STRING_FIELDS)}


def _ftvl(pv) -> str:
    return FTVL_BY_TYPE.get(pv.data_type, "DOUBLE")


def _nord(pv) -> int:
    if pv.data_type == ChannelType.CHAR:
        value = pv.value
        return len(value) + 1 if value else 0    # the text and its terminator
    return pv.length


ARRAY = {
    "NELM": FieldSpec("NELM", ChannelType.LONG, lambda pv: pv.max_length),
    "NORD": FieldSpec("NORD", ChannelType.LONG, _nord, follows=True),
    "FTVL": _menu("FTVL", MENU_FTYPE, _ftvl),
    "EGU": _string("EGU", lambda pv: pv._data.get("units", "")),
    "PREC": FieldSpec("PREC", ChannelType.INT, lambda pv: pv._data.get("precision", 0)),
    "HOPR": FieldSpec("HOPR", ChannelType.DOUBLE, _limit("upper_disp_limit")),
    "LOPR": FieldSpec("LOPR", ChannelType.DOUBLE, _limit("lower_disp_limit")),
}

FIELDS_BY_RECORD = {
    "ai": _numeric_fields(double=True, prec=True, drive=False),
    "ao": _numeric_fields(double=True, prec=True, drive=True),
    "calc": _numeric_fields(double=True, prec=True, drive=False),
    "calcout": _numeric_fields(double=True, prec=True, drive=False),
    "longin": _numeric_fields(double=False, prec=False, drive=False),
    "longout": _numeric_fields(double=False, prec=False, drive=True),
    "bi": BINARY, "bo": BINARY, "busy": BINARY,
    "mbbi": MULTI_BIT, "mbbo": MULTI_BIT,
    "waveform": ARRAY, "subArray": ARRAY, "aai": ARRAY, "aao": ARRAY,
}
#: Every field a record of each type answers (dbCommon first).
RECORD_FIELDS = {rtyp: {**COMMON, **extra} for rtyp, extra in FIELDS_BY_RECORD.items()}


def field_specs(rtyp: str) -> dict:
    return RECORD_FIELDS.get(rtyp, COMMON)


# ---- the field channel ---------------------------------------------------------------

class FieldChannel(ChannelData):
    """A record field as caproto's server serves it: its value comes from the
    record when read (`FieldSpec.get`), so it holds two references and no copy.

    It does not run ChannelData.__init__: the subscription tables it would make
    (most fields never get a subscriber) are made on the first subscription."""

    __slots__ = ("record", "spec")
    string_encoding = "latin-1"
    max_subscription_backlog = ca_constants.MAX_SUBSCRIPTION_BACKLOG
    long_string_max_length = 256
    _status = None
    _severity = None
    _fill_at_next_write = ()

    def __init__(self, record, spec: FieldSpec):   # noqa: D107 (no ChannelData.__init__)
        self.record = record
        self.spec = spec

    # -- what caproto's server and ChannelData read --
    @property
    def pvname(self) -> str:
        return f"{self.record.pvname}.{self.spec.name}"

    @property
    def data_type(self):
        return self.spec.dtype

    @property
    def _max_length(self):
        return self.spec.max_length

    @property
    def enum_strings(self):
        return self.spec.enum_strings

    @property
    def alarm(self):
        return self.record.alarm

    @property
    def reported_record_type(self) -> str:
        return self.record.reported_record_type

    @property
    def group(self):
        return getattr(self.record, "group", None)

    @property
    def _snapshots(self):
        return defaultdict(dict)   # no channel-filter snapshots for fields

    @property
    def _data(self) -> dict:
        data = {"value": self.spec.get(self.record),
                "timestamp": self.record._data["timestamp"]}
        if self.spec.enum_strings is not None:
            data["enum_strings"] = self.spec.enum_strings
        return data

    @property
    def value(self):
        return self.spec.get(self.record)

    def _read_metadata(self, dbr_metadata):
        if self.spec.enum_strings is not None and hasattr(dbr_metadata, "enum_strings"):
            dbr_metadata.enum_strings = [s.encode(self.string_encoding)
                                         for s in self.spec.enum_strings]
        return super()._read_metadata(dbr_metadata)

    def check_access(self, hostname, username):
        if self.spec.put is None:
            return AccessRights.READ
        return AccessRights.READ | AccessRights.WRITE

    # -- subscriptions: tables made on the first one --
    async def subscribe(self, queue, sub_spec, sub):
        if "_queues" not in self.__dict__:
            self._queues = defaultdict(lambda: defaultdict(lambda: defaultdict(set)))
            self._content = {}
            state_of(self.record).subscribed.append(self)
        await super().subscribe(queue, sub_spec, sub)

    async def unsubscribe(self, queue, sub_spec):
        if "_queues" in self.__dict__:
            await super().unsubscribe(queue, sub_spec)

    @property
    def subscribed(self) -> bool:
        return "_queues" in self.__dict__

    async def publish(self, flags):
        if "_queues" in self.__dict__:
            await super().publish(flags)

    # -- writes --
    def _coerce(self, value) -> Any:
        """The value a put of `value` stores, or PutRejected saying why not."""
        from .pvtypes import PutRejected
        if isinstance(value, (list, tuple)) or hasattr(value, "__array_interface__"):
            if len(value) != 1:
                raise PutRejected(f"{self.spec.name} takes one value, not {len(value)}")
            value = value[0]
        if isinstance(value, bytes):
            value = value.decode(self.string_encoding, "replace")
        if hasattr(value, "item"):
            value = value.item()
        spec = self.spec
        if spec.dtype == ChannelType.STRING:
            value = str(value)
            if len(value) > DESC_LENGTH:
                raise PutRejected(f"{spec.name} holds at most {DESC_LENGTH} characters, "
                                  f"not {len(value)}")
            return value
        if spec.dtype == ChannelType.ENUM:
            strings = spec.enum_strings
            if isinstance(value, str):
                if value in strings:
                    return value
                if value.strip().isdigit():
                    value = int(value)
                else:
                    raise PutRejected(f"{value!r} is not one of {', '.join(strings)}")
            if isinstance(value, float) and (not math.isfinite(value) or value != int(value)):
                raise PutRejected(f"{value!r} is not a state of {spec.name} "
                                  f"(0..{len(strings) - 1})")
            if not 0 <= int(value) < len(strings):
                raise PutRejected(f"{int(value)} is not a state of {spec.name} "
                                  f"(0..{len(strings) - 1}: {', '.join(strings)})")
            return strings[int(value)]
        if isinstance(value, str):
            try:
                value = float(value)
            except ValueError:
                raise PutRejected(f"{value!r} is not a number") from None
        if not math.isfinite(value):
            raise PutRejected(f"{value!r} is not a finite number")
        return value

    async def write(self, value, **metadata):
        """Store a field value (the IOC's own writes, and checked client puts)."""
        spec = self.spec
        value = self._coerce(value)
        if spec.put is not None:
            await spec.put(self.record, value)
        elif spec.name == "DISA":
            state_of(self.record).disa = int(value)
        else:
            from .pvtypes import PutRejected
            raise PutRejected(f"{spec.name} is read-only")
        await post_field(self.record, spec.name)

    async def write_from_dbr(self, data, data_type, metadata, *, flags=0):
        """A client's put: checked, stored, and refused puts reported as the
        record's are (pvtypes: put_rejected, status message, the put error)."""
        try:
            if data_type in (ChannelType.PUT_ACKS, ChannelType.PUT_ACKT,
                             ChannelType.STSACK_STRING, ChannelType.CLASS_NAME):
                raise ValueError(f"{ChannelType(data_type).name} puts are not accepted")
            from .pvtypes import PutRejected, wire_items
            if self.spec.put is None:     # read-only even if an access policy grants writes
                raise PutRejected(f"{self.spec.name} is read-only")
            if native_type(data_type) == ChannelType.CHAR and self.spec.dtype == ChannelType.STRING:
                text = bytes(np.asarray(data, dtype=np.uint8)).split(b"\0", 1)[0]
                values = [text.decode(self.string_encoding)]
            else:
                values = wire_items(data, data_type)
            await self.write(values)
        except Exception as ex:
            if not str(ex):
                ex = PutRejected(f"invalid value for {self.spec.name} ({type(ex).__name__})")
            group = self.group
            if group is not None:
                await group.put_rejected(self, ex)
            raise


class FieldMap:
    """A record's ``fields``: ``fields["DESC"]`` builds that field's object.
    Iterating gives the fields that have subscribers only: caproto walks every
    record's fields at start, which must not build them."""

    __slots__ = ("record",)

    def __init__(self, record):
        self.record = record

    def _built(self) -> dict:
        state = self.record._record_state
        return {f.spec.name: f for f in state.subscribed} if state is not None else {}

    def __getitem__(self, name: str) -> FieldChannel:
        spec = field_specs(self.record.reported_record_type)[name]   # KeyError: no such field
        return FieldChannel(self.record, spec)

    def __contains__(self, name) -> bool:
        return name in field_specs(self.record.reported_record_type)

    def get(self, name, default=None):
        try:
            return self[name]
        except KeyError:
            return default

    def items(self):
        return self._built().items()

    def keys(self):
        return self._built().keys()

    def values(self):
        return self._built().values()

    def __iter__(self):
        return iter(self._built())

    def __len__(self) -> int:
        return len(self._built())


async def post_field(record, name: str, flags: int = 0) -> None:
    """Post a field's new value to its subscribers."""
    state = record._record_state
    if state is not None:
        for field in tuple(state.subscribed):
            if field.spec.name == name:
                await field.publish(flags)


async def post_following_fields(record, flags) -> None:
    """Post the subscribed fields that follow the record (STAT, SEVR, TIME, NORD)."""
    for field in tuple(record._record_state.subscribed):
        if field.spec.follows:
            await field.publish(flags)
