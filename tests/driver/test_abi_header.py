"""The ctypes prototypes in driver/_lib.py agree with driver/sim/xsp3_abi.h.

The header is parsed here, at test time only; the package never reads it.
"""
from __future__ import annotations

import ctypes
import re
from pathlib import Path
from typing import Any, cast

import pytest

from xspress3.driver import _lib, constants

HEADER = Path(__file__).resolve().parents[2] / "driver" / "sim" / "xsp3_abi.h"

# C type (normalised: const dropped, single spaces, '*' attached) -> ctypes type.
SCALARS = {
    "int": ctypes.c_int,
    "unsigned": ctypes.c_uint,
    "uint32_t": ctypes.c_uint32,
    "uint64_t": ctypes.c_uint64,
    "int64_t": ctypes.c_int64,
    "double": ctypes.c_double,
    "Xsp3ErrFlag": ctypes.c_int32,
    "char*": ctypes.c_char_p,
}


def _strip(text: str) -> str:
    text = re.sub(r"/\*.*?\*/", " ", text, flags=re.S)
    text = re.sub(r"//[^\n]*", " ", text)
    return "\n".join(line for line in text.splitlines() if not line.lstrip().startswith("#"))


def _normalise(ctype: str) -> str:
    ctype = re.sub(r"\bconst\b", " ", ctype)
    ctype = re.sub(r"\s*\*\s*", "*", ctype)
    return " ".join(ctype.split())


def parse_header(text: str) -> dict[str, tuple[str, list[str]]]:
    """name -> (return type, [argument types]) for every function prototype."""
    protos: dict[str, tuple[str, list[str]]] = {}
    for stmt in _strip(text).split(";"):
        m = re.search(r"([A-Za-z_][\w\s\*]*?)\b(xsp3\w*)\s*\(([^()]*)\)\s*$", stmt.strip(), flags=re.S)
        if not m:
            continue
        ret, name, args = m.groups()
        arglist: list[str] = []
        if args.strip() not in ("", "void"):
            for arg in args.split(","):
                arg = _normalise(arg)
                # drop the parameter name: the last identifier after the type
                typ = re.sub(r"\s*\b\w+$", "", arg) if not arg.endswith("*") else arg
                arglist.append(_normalise(typ))
        protos[name] = (_normalise(ret.replace("typedef", "")), arglist)
    return protos


def _same_ctype(a: Any, b: Any) -> bool:
    """Same size and format code (c_int32 and c_int are one class on our platforms)."""
    return a is b or (ctypes.sizeof(a) == ctypes.sizeof(b) and a._type_ == b._type_)


def _matches(c_type: str, py_type: Any) -> bool:
    if c_type in SCALARS:
        return _same_ctype(SCALARS[c_type], py_type)
    if not c_type.endswith("*") or c_type[:-1] not in SCALARS:
        return False
    target = SCALARS[c_type[:-1]]
    if isinstance(py_type, type) and issubclass(py_type, _lib.ArrayParam):
        return _same_ctype(cast(Any, py_type).ctype, target)
    pointee = getattr(py_type, "_type_", None)  # POINTER(x) classes
    return pointee is not None and not isinstance(pointee, str) and _same_ctype(pointee, target)


def test_type_matcher_rejects_mismatches() -> None:
    assert _matches("uint32_t", ctypes.c_uint32) and not _matches("uint32_t", ctypes.c_int)
    assert _matches("int64_t*", ctypes.POINTER(ctypes.c_int64)) and not _matches("int64_t*", ctypes.c_int64)
    assert _matches("double*", _lib.F64_ARRAY) and not _matches("uint32_t*", _lib.F64_ARRAY)
    assert not _matches("unsigned", ctypes.c_int)


@pytest.fixture(scope="module")
def header() -> dict[str, tuple[str, list[str]]]:
    return parse_header(HEADER.read_text())


@pytest.fixture(scope="module")
def declared() -> dict[str, _lib.Signature]:
    return {s.name: s for s in _lib.SIGNATURES}


def test_parser_sees_the_whole_header(header: dict[str, tuple[str, list[str]]]) -> None:
    # a parser that silently drops prototypes would make the other tests vacuous
    assert len(header) >= 45
    assert header["xsp3_config"][1] == ["int", "int", "char*", "int", "char*", "int", "int", "char*", "int", "int"]
    assert header["xsp3_scaler_check_progress_details"] == ("int64_t", ["int", "Xsp3ErrFlag*", "int", "int64_t*"])
    assert header["xsp3_get_error_message"] == ("char*", [])


def test_same_functions(header: dict, declared: dict) -> None:
    assert sorted(header) == sorted(declared)


def test_argument_counts_match(header: dict, declared: dict) -> None:
    wrong = {
        name: (len(args), len(declared[name].argtypes))
        for name, (_ret, args) in header.items()
        if name in declared and len(args) != len(declared[name].argtypes)
    }
    assert wrong == {}


def test_argument_and_return_types_match(header: dict, declared: dict) -> None:
    wrong = []
    for name, (ret, args) in header.items():
        sig = declared[name]
        if not _matches(ret, sig.restype):
            wrong.append(f"{name} returns {ret}, declared {sig.restype}")
        for i, (c_type, py_type) in enumerate(zip(args, sig.argtypes)):
            if not _matches(c_type, py_type):
                wrong.append(f"{name} arg {i}: {c_type} declared as {py_type}")
    assert wrong == []


def test_simulator_family_is_optional(declared: dict) -> None:
    sim = {n for n in declared if n.startswith("xsp3sim_")}
    assert sim == set(_lib.SIM_SYMBOLS)
    assert all(declared[n].optional for n in sim)


def _defines(text: str) -> dict[str, int]:
    """Integer #defines, including simple shift expressions such as (1u << 3)."""
    out = {}
    for name, value in re.findall(r"^#define\s+(XSP3_\w+)[ \t]+([^\n]*)$", _comments_only_stripped(text), re.M):
        value = re.sub(r"(\d)u\b", r"\1", value).strip()
        if re.fullmatch(r"[\s0-9a-fA-FxX()<\-]+", value):
            out[name] = int(eval(value, {"__builtins__": {}}))  # digits, parens, '-' and '<<' only
    return out


def _comments_only_stripped(text: str) -> str:
    return re.sub(r"/\*.*?\*/", " ", text, flags=re.S)


def test_constants_match_header_defines() -> None:
    d = _defines(HEADER.read_text())
    assert d["XSP3_GTIMA_VETO_INV"] == 16 and d["XSP3_WOULD_BLOCK"] == -20  # the parser works
    pairs = [(f"XSP3_{c.name}", c) for c in constants.ErrorCode]
    pairs += [(f"XSP3_RUN_FLAGS_{f.name}", f) for f in constants.RunFlag]
    pairs += [(f"XSP3_GTIMA_SRC_{s.name}", s) for s in constants.FrameSource]
    pairs += [(f"XSP3_ITFG_TRIG_MODE_{m.name}", m) for m in constants.ItfgTrigMode]
    pairs += [(f"XSP3_ITFG_GAP_MODE_{g.name[4:]}", g) for g in constants.ItfgGap]
    pairs += [(f"XSP3_CLK_SRC_{c.name}", c) for c in constants.ClockSource]
    pairs += [(f"XSP3_CLK_FLAGS_{c.name}", c) for c in constants.ClockFlag]
    pairs += [(f"XSP3_SCALER_{s.name}", s) for s in constants.Scaler]
    pairs += [(f"XSP3_ERR_FLAG_{p.name}", p) for p in constants.ProgressFlag]
    pairs += [("XSP3_NUM_SCALERS", constants.NUM_SCALERS), ("XSP3_GTIMA_SRC_MASK", constants.SOURCE_MASK)]
    pairs += [(f"XSP3_GTIMA_{f.name}", f) for f in constants.TimingFlag]
    missing = [name for name, _ in pairs if name not in d]
    mismatched = [(name, d[name], int(v)) for name, v in pairs if name in d and d[name] != int(v)]
    assert missing == [] and mismatched == []
