"""The loader and prototype mapping in driver/_lib.py, through the real simulator."""
from __future__ import annotations

import ctypes
import ctypes.util
import logging
import os
from pathlib import Path

import numpy as np
import pytest

from xspress3.driver import Xspress3, _lib, errors


@pytest.fixture
def lib(sim_library: str) -> _lib.Library:
    return _lib.load(sim_library)


def _libc() -> str:
    name = ctypes.util.find_library("c")
    assert name, "no C library found"
    return name


def test_load_is_cached_and_simulated(lib: _lib.Library, sim_library: str) -> None:
    assert _lib.load(sim_library) is lib
    assert _lib.load(Path(sim_library)) is lib
    assert lib.path == os.path.realpath(sim_library)
    assert lib.simulated
    assert lib.has("xsp3_hist_dtc_read4d") and lib.has("xsp3_scaler_check_progress_details")


def test_default_is_bundled_simulator(monkeypatch: pytest.MonkeyPatch, sim_library: str) -> None:
    monkeypatch.delenv(_lib.ENV_LIBRARY, raising=False)
    assert _lib.default_library_path() == sim_library
    assert _lib.load().path == os.path.realpath(sim_library)


def test_environment_variable_selects_library(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    missing = str(tmp_path / "libxspress3.so")
    monkeypatch.setenv(_lib.ENV_LIBRARY, missing)
    assert _lib.default_library_path() == missing
    with pytest.raises(errors.LibraryNotFoundError) as info:
        Xspress3()
    assert missing in str(info.value) and isinstance(info.value, OSError)


def test_missing_required_symbol_names_it() -> None:
    with pytest.raises(errors.MissingSymbolError) as info:
        _lib.load(_libc())
    assert info.value.symbol == "xsp3_config"
    assert "xsp3_config" in str(info.value) and _libc() in str(info.value)
    with pytest.raises(AttributeError):
        Xspress3(library=_libc())


def test_map_symbol_probes_optional_symbols() -> None:
    libc = ctypes.CDLL(_libc())
    assert _lib.map_symbol(libc, "xsp3_no_such_thing", ctypes.c_int, [], optional=True) is None
    with pytest.raises(errors.MissingSymbolError, match="xsp3_no_such_thing"):
        _lib.map_symbol(libc, "xsp3_no_such_thing", ctypes.c_int, [])
    strlen = _lib.map_symbol(libc, "strlen", ctypes.c_size_t, [ctypes.c_char_p])
    assert strlen is not None and strlen(b"xspress") == 7
    assert strlen.argtypes == [ctypes.c_char_p]


def test_every_declared_function_has_its_prototype(lib: _lib.Library) -> None:
    for sig in _lib.SIGNATURES:
        assert lib.has(sig.name), sig.name
        assert lib.argtypes(sig.name) == sig.argtypes, sig.name


def test_errcheck_raises_and_passes(lib: _lib.Library) -> None:
    with pytest.raises(errors.InvalidPathError) as info:
        lib.xsp3_get_num_chan(15)
    assert info.value.function == "xsp3_get_num_chan"
    assert "path 15 is not open" in info.value.sdk_message
    assert lib.last_error_message() == info.value.sdk_message
    path = lib.xsp3_config(1, 8, b"192.168.0.1", -1, None, 3, 1, None, 0, 0)
    try:
        assert path >= 0
        assert lib.xsp3_get_num_chan(path) == 3
    finally:
        lib.xsp3_close(path)


def test_array_arguments_are_type_checked(xsp3: Xspress3) -> None:
    read4d = xsp3._lib.xsp3_histogram_read4d
    path = xsp3._handle.path
    for bad in (np.zeros(16, np.float64), np.zeros(32, np.uint32)[::2], [0] * 16):
        with pytest.raises(ctypes.ArgumentError):
            read4d(path, bad, 0, 0, 0, 0, 16, 1, 1, 1)
    good = np.ones(16, np.uint32)
    read4d(path, good, 0, 0, 0, 0, 16, 1, 1, 1)
    assert not good.any()  # nothing acquired yet


def test_calls_are_debug_logged(xsp3: Xspress3, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.DEBUG, logger="xspress3.driver._lib"):
        xsp3.read_spectra(np.zeros((2, 1, 8), np.uint32), 0)
        xsp3.get_good_threshold(1)
    messages = [r.getMessage() for r in caplog.records]
    path = xsp3._handle.path
    assert f"xsp3_histogram_read4d({path}, <uint32[2, 1, 8]>, 0, 0, 0, 0, 8, 1, 1, 2) -> 0" in messages
    assert any(m.startswith(f"xsp3_get_good_thres({path}, 1, <CArgObject>") and m.endswith("-> 0") for m in messages)


def test_no_debug_records_when_disabled(xsp3: Xspress3, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger="xspress3.driver._lib"):
        xsp3.get_good_threshold(0)
    assert [r for r in caplog.records if r.name == "xspress3.driver._lib"] == []


def test_failed_calls_are_logged_too(xsp3: Xspress3, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.DEBUG, logger="xspress3.driver._lib"):
        with pytest.raises(errors.RangeCheckError):
            xsp3.set_good_threshold(0, 10**6)
    assert any(r.getMessage().endswith("-> -6") for r in caplog.records)


def test_close_with_flag_prototype(lib: _lib.Library) -> None:
    assert lib.argtypes("xsp3_close") == (ctypes.c_int,)
    two = lib.close_function(True)
    one = lib.close_function(False)
    assert two is not one
    assert _lib.CLOSE_WITH_FLAG.argtypes == (ctypes.c_int, ctypes.c_int)


def test_one_lock_per_library(xsp3: Xspress3, lib: _lib.Library) -> None:
    assert xsp3._lock is lib.lock
    # re-entrant: a caller holding it can still call into the SDK
    with lib.lock:
        assert xsp3.num_channels == lib.xsp3_get_num_chan(xsp3._handle.path)
