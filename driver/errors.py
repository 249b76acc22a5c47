"""Exceptions raised by xspress3.driver.

Every negative return of an xsp3_* function becomes one specific exception
that keeps the code, the C function's name and the SDK's own error text, so
a log line or an EPICS alarm says what failed and why. Where a builtin fits,
the class also derives from it, so generic handlers (``except OSError``,
``except BlockingIOError``) keep working::

    Exception
     └── DriverError                     anything raised by this package
          ├── Xspress3Error              an xsp3_* call returned code < 0
          │    ├── GeneralError           ERROR (-1)
          │    ├── InvalidPathError       INVALID_PATH (-2)
          │    ├── IllegalCardError       ILLEGAL_CARD (-3)
          │    ├── IllegalSubpathError    ILLEGAL_SUBPATH (-4)
          │    ├── InvalidDmaStreamError  INVALID_DMA_STREAM (-5)
          │    ├── RangeCheckError        RANGE_CHECK (-6)          + ValueError
          │    ├── InvalidScopeModError   INVALID_SCOPE_MOD (-7)
          │    ├── OutOfMemoryError       OUT_OF_MEMORY (-8)        + MemoryError
          │    ├── DeviceNotFoundError    ERR_DEV_NOT_FOUND (-9)    + ConnectionError
          │    ├── CannotOpenFileError    CANNOT_OPEN_FILE (-10)    + OSError
          │    ├── FileReadError          FILE_READ_FAILED (-11)    + OSError
          │    ├── FileWriteError         FILE_WRITE_FAILED (-12)   + OSError
          │    ├── FileRenameError        FILE_RENAME_FAILED (-13)  + OSError
          │    ├── LogFileMissingError    LOG_FILE_MISSING (-14)    + FileNotFoundError
          │    └── WouldBlockError        WOULD_BLOCK (-20)         + BlockingIOError
          ├── LibraryError               the shared library cannot be used
          │    ├── LibraryNotFoundError   cannot load it            + OSError
          │    └── MissingSymbolError     a function is absent      + AttributeError
          └── DeviceClosedError          method called after close() + RuntimeError

A code outside the table raises the base Xspress3Error with a plain int code.

All classes pickle by their constructor arguments (``__reduce__``), not by
``args``: OSError and AttributeError rewrite ``args`` in their constructors,
and exceptions must cross process boundaries intact (multiprocessing, logs).
"""
from __future__ import annotations

from typing import Any, Union

from .constants import ErrorCode

__all__ = [
    "DriverError",
    "Xspress3Error",
    "GeneralError",
    "InvalidPathError",
    "IllegalCardError",
    "IllegalSubpathError",
    "InvalidDmaStreamError",
    "RangeCheckError",
    "InvalidScopeModError",
    "OutOfMemoryError",
    "DeviceNotFoundError",
    "CannotOpenFileError",
    "FileReadError",
    "FileWriteError",
    "FileRenameError",
    "LogFileMissingError",
    "WouldBlockError",
    "LibraryError",
    "LibraryNotFoundError",
    "MissingSymbolError",
    "DeviceClosedError",
    "ERROR_CLASSES",
    "error_for",
]


class DriverError(Exception):
    """Root of every exception this package raises on purpose."""

    def __init__(self, *args: Any) -> None:
        self._ctor_args = args
        super().__init__(self._format())

    def _format(self) -> str:
        return " ".join(str(a) for a in self._ctor_args)

    def __str__(self) -> str:
        # Builtins such as OSError format their own way; ours is always the same.
        return self._format()

    def __reduce__(self) -> tuple[Any, ...]:
        state = {k: v for k, v in self.__dict__.items() if k != "_ctor_args"}
        return (type(self), self._ctor_args, state)


class Xspress3Error(DriverError):
    """An xsp3_* call failed: ``code`` (ErrorCode), ``function``, ``sdk_message``."""

    #: The code this class stands for (None for the base class).
    error_code: ErrorCode | None = None

    def __init__(self, code: int, function: str, sdk_message: str = "") -> None:
        self.code: Union[ErrorCode, int] = _as_code(code)
        self.function = function
        self.sdk_message = sdk_message
        super().__init__(code, function, sdk_message)

    def _format(self) -> str:
        name = self.code.name if isinstance(self.code, ErrorCode) else "UNKNOWN"
        text = f"{self.function} failed: {name} ({int(self.code)})"
        if self.sdk_message:
            text += f": {self.sdk_message}"
        return text


def _as_code(code: int) -> Union[ErrorCode, int]:
    try:
        return ErrorCode(code)
    except ValueError:
        return int(code)


class GeneralError(Xspress3Error):
    """Unspecified SDK failure (XSP3_ERROR)."""

    error_code = ErrorCode.ERROR


class InvalidPathError(Xspress3Error):
    """The handle (``path``) is not an open system."""

    error_code = ErrorCode.INVALID_PATH


class IllegalCardError(Xspress3Error):
    """Card number out of range for this system."""

    error_code = ErrorCode.ILLEGAL_CARD


class IllegalSubpathError(Xspress3Error):
    """Sub-path (channel within a card) out of range."""

    error_code = ErrorCode.ILLEGAL_SUBPATH


class InvalidDmaStreamError(Xspress3Error):
    """The DMA stream asked for does not exist."""

    error_code = ErrorCode.INVALID_DMA_STREAM


class RangeCheckError(Xspress3Error, ValueError):
    """An argument (frame, channel, bin, ...) is outside its range."""

    error_code = ErrorCode.RANGE_CHECK


class InvalidScopeModError(Xspress3Error):
    """Invalid scope-mode module selection."""

    error_code = ErrorCode.INVALID_SCOPE_MOD


class OutOfMemoryError(Xspress3Error, MemoryError):
    """The SDK could not allocate memory."""

    error_code = ErrorCode.OUT_OF_MEMORY


class DeviceNotFoundError(Xspress3Error, ConnectionError):
    """No card answered at the configured address."""

    error_code = ErrorCode.ERR_DEV_NOT_FOUND


class CannotOpenFileError(Xspress3Error, OSError):
    """A settings or calibration file could not be opened."""

    error_code = ErrorCode.CANNOT_OPEN_FILE


class FileReadError(Xspress3Error, OSError):
    """Reading a settings or calibration file failed."""

    error_code = ErrorCode.FILE_READ_FAILED


class FileWriteError(Xspress3Error, OSError):
    """Writing a settings file failed."""

    error_code = ErrorCode.FILE_WRITE_FAILED


class FileRenameError(Xspress3Error, OSError):
    """Renaming a settings file into place failed."""

    error_code = ErrorCode.FILE_RENAME_FAILED


class LogFileMissingError(Xspress3Error, FileNotFoundError):
    """The SDK's log file is missing."""

    error_code = ErrorCode.LOG_FILE_MISSING


class WouldBlockError(Xspress3Error, BlockingIOError):
    """The operation would block (e.g. data not yet available)."""

    error_code = ErrorCode.WOULD_BLOCK


#: One class per SDK error code.
ERROR_CLASSES: dict[ErrorCode, type[Xspress3Error]] = {
    cls.error_code: cls
    for cls in (
        GeneralError,
        InvalidPathError,
        IllegalCardError,
        IllegalSubpathError,
        InvalidDmaStreamError,
        RangeCheckError,
        InvalidScopeModError,
        OutOfMemoryError,
        DeviceNotFoundError,
        CannotOpenFileError,
        FileReadError,
        FileWriteError,
        FileRenameError,
        LogFileMissingError,
        WouldBlockError,
    )
    if cls.error_code is not None
}


def error_for(code: int, function: str, message: str = "") -> Xspress3Error:
    """Build the exception for a negative SDK return ``code`` from ``function``."""
    cls = ERROR_CLASSES.get(_as_code(code), Xspress3Error)  # type: ignore[call-overload]
    return cls(code, function, message)


class LibraryError(DriverError):
    """The shared library cannot be used as libxspress3."""


class LibraryNotFoundError(LibraryError, OSError):
    """The library file is missing or cannot be loaded by the dynamic linker."""

    def __init__(self, library: str, reason: str = "") -> None:
        self.library = library
        self.reason = reason
        super().__init__(library, reason)

    def _format(self) -> str:
        text = f"cannot load Xspress3 library {self.library!r}"
        return f"{text}: {self.reason}" if self.reason else text


class MissingSymbolError(LibraryError, AttributeError):
    """A required (or explicitly requested optional) function is not exported."""

    def __init__(self, symbol: str, library: str) -> None:
        self.symbol = symbol
        self.library = library
        super().__init__(symbol, library)

    def _format(self) -> str:
        return f"function {self.symbol} not found in library {self.library!r}"


class DeviceClosedError(DriverError, RuntimeError):
    """The Xspress3 system was closed; open a new one to continue."""

    def __init__(self, operation: str) -> None:
        self.operation = operation
        super().__init__(operation)

    def _format(self) -> str:
        return f"cannot {self.operation}: the Xspress3 system is closed"
