"""Every SDK error code becomes its own exception, raised by a real failing call."""
from __future__ import annotations

import pickle

import pytest

from xspress3.driver import Xspress3, errors, sim_controls
from xspress3.driver.constants import ErrorCode

FAILURES = [c for c in ErrorCode if c < 0]

# code -> builtin the exception must also be
BUILTINS = {
    ErrorCode.RANGE_CHECK: ValueError,
    ErrorCode.OUT_OF_MEMORY: MemoryError,
    ErrorCode.ERR_DEV_NOT_FOUND: ConnectionError,
    ErrorCode.CANNOT_OPEN_FILE: OSError,
    ErrorCode.FILE_READ_FAILED: OSError,
    ErrorCode.FILE_WRITE_FAILED: OSError,
    ErrorCode.FILE_RENAME_FAILED: OSError,
    ErrorCode.LOG_FILE_MISSING: FileNotFoundError,
    ErrorCode.WOULD_BLOCK: BlockingIOError,
}


def test_one_class_per_code() -> None:
    assert sorted(errors.ERROR_CLASSES) == sorted(FAILURES)
    classes = list(errors.ERROR_CLASSES.values())
    assert len(set(classes)) == len(classes)
    for code, cls in errors.ERROR_CLASSES.items():
        assert issubclass(cls, errors.Xspress3Error) and issubclass(cls, errors.DriverError)
        assert cls.error_code == code


@pytest.mark.parametrize("code", FAILURES, ids=[c.name for c in FAILURES])
def test_injected_fault_raises_its_class(xsp3: Xspress3, code: ErrorCode) -> None:
    assert xsp3.sim is not None
    xsp3.sim.inject_fault("xsp3_set_window", code)
    with pytest.raises(errors.Xspress3Error) as info:
        xsp3.set_window(0, 0, 10, 20)
    exc = info.value
    assert type(exc) is errors.ERROR_CLASSES[code]
    assert exc.code is code
    assert exc.function == "xsp3_set_window"
    assert exc.sdk_message == "simulated fault in xsp3_set_window"
    text = str(exc)
    assert text == f"xsp3_set_window failed: {code.name} ({int(code)}): simulated fault in xsp3_set_window"
    if code in BUILTINS:
        assert isinstance(exc, BUILTINS[code])
    # the fault fires once: the same call now succeeds
    xsp3.set_window(0, 0, 10, 20)
    assert xsp3.get_window(0, 0) == (10, 20)

    clone = pickle.loads(pickle.dumps(exc))
    assert type(clone) is type(exc)
    assert (clone.code, clone.function, clone.sdk_message, str(clone)) == (
        exc.code,
        exc.function,
        exc.sdk_message,
        text,
    )


def test_fault_after_calls(xsp3: Xspress3) -> None:
    assert xsp3.sim is not None
    xsp3.sim.inject_fault("xsp3_get_good_thres", ErrorCode.ILLEGAL_SUBPATH, after_calls=2)
    xsp3.get_good_threshold(0)
    xsp3.get_good_threshold(1)
    with pytest.raises(errors.IllegalSubpathError, match="xsp3_get_good_thres failed: ILLEGAL_SUBPATH"):
        xsp3.get_good_threshold(2)
    xsp3.get_good_threshold(3)


def test_int64_returning_function_is_checked(xsp3: Xspress3) -> None:
    assert xsp3.sim is not None
    xsp3.sim.inject_fault("xsp3_scaler_check_progress_details", ErrorCode.WOULD_BLOCK)
    with pytest.raises(errors.WouldBlockError) as info:
        xsp3.progress()
    assert info.value.function == "xsp3_scaler_check_progress_details"
    assert xsp3.progress().frames == 0


def test_genuine_range_check_carries_sdk_text(xsp3: Xspress3) -> None:
    with pytest.raises(errors.RangeCheckError) as info:
        xsp3.get_window(99, 0)
    assert "channel 99" in info.value.sdk_message
    assert "xsp3_get_window failed: RANGE_CHECK (-6): " in str(info.value)


def test_refused_address_is_connection_error(sim_library: str) -> None:
    controls = sim_controls(sim_library)
    controls.refuse_address("10.1.2.3")
    try:
        with pytest.raises(errors.DeviceNotFoundError) as info:
            Xspress3(library=sim_library, address="10.1.2.3")
        assert isinstance(info.value, ConnectionError)
        assert "10.1.2.3" in str(info.value)
        with Xspress3(library=sim_library, address="10.1.2.4") as dev:
            assert dev.num_channels == 4
    finally:
        controls.refuse_address(None)
    with Xspress3(library=sim_library, address="10.1.2.3") as dev:
        assert not dev.closed


def test_unknown_code_uses_base_class() -> None:
    exc = errors.error_for(-99, "xsp3_mystery", "odd")
    assert type(exc) is errors.Xspress3Error
    assert exc.code == -99 and not isinstance(exc.code, ErrorCode)
    assert str(exc) == "xsp3_mystery failed: UNKNOWN (-99): odd"
    clone = pickle.loads(pickle.dumps(exc))
    assert (type(clone), clone.code, str(clone)) == (errors.Xspress3Error, -99, str(exc))


def test_message_without_sdk_text() -> None:
    assert str(errors.error_for(-1, "xsp3_x", "")) == "xsp3_x failed: ERROR (-1)"


@pytest.mark.parametrize(
    "exc",
    [
        errors.MissingSymbolError("xsp3_config", "/lib/libc.so.6"),
        errors.LibraryNotFoundError("/no/such.so", "cannot open shared object file"),
        errors.DeviceClosedError("read spectra"),
    ],
    ids=lambda e: type(e).__name__,
)
def test_non_sdk_errors_pickle(exc: errors.DriverError) -> None:
    clone = pickle.loads(pickle.dumps(exc))
    assert type(clone) is type(exc)
    assert str(clone) == str(exc)
    assert clone.__dict__ == exc.__dict__


def test_non_sdk_error_bases() -> None:
    assert issubclass(errors.MissingSymbolError, AttributeError)
    assert issubclass(errors.LibraryNotFoundError, OSError)
    assert issubclass(errors.DeviceClosedError, RuntimeError)
    text = str(errors.MissingSymbolError("xsp3_foo", "libc.so.6"))
    assert text == "function xsp3_foo not found in library 'libc.so.6'"
