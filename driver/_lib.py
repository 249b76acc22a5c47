"""ctypes prototypes of libxspress3 and the loader for the shared library.

Every C function the project calls is declared once in ``SIGNATURES`` with
its C prototype as a comment, and mapped by one helper, ``map_symbol``, which
sets argtypes, restype and the single errcheck. The errcheck turns a negative
return into the matching exception from ``errors`` (with the SDK's own error
text) and debug-logs every call. The prototypes mirror driver/sim/xsp3_abi.h;
tests/driver/test_abi_header.py checks the two agree.

Which library is loaded (first match wins):

1. an explicit ``path`` given to ``load`` (e.g. the IOC's ``--sdk PATH``);
2. the environment variable ``XSPRESS3_LIBRARY``;
3. the simulator built with this package (``xspress3.driver._xsp3sim``).

Loading is lazy: importing this module touches no shared library.

``xsp3_close`` takes one int in the simulator and in the header; some SDK
releases take a second int. Arity cannot be read from a shared object, so the
caller states it (``Library.close_function(takes_flag)``), see
``device.Xspress3(close_takes_flag=...)``.
"""
from __future__ import annotations

import ctypes
import importlib.util
import logging
import os
import threading
from ctypes import POINTER, c_char_p, c_double, c_int, c_int32, c_int64, c_uint, c_uint32, c_uint64
from dataclasses import dataclass
from typing import Any, Callable, Optional, Sequence

import numpy as np

from .errors import LibraryNotFoundError, MissingSymbolError, error_for

__all__ = [
    "Signature",
    "SIGNATURES",
    "SIM_SYMBOLS",
    "Library",
    "ArrayParam",
    "array_param",
    "map_symbol",
    "load",
    "default_library_path",
    "ENV_LIBRARY",
    "BUNDLED_SIMULATOR",
]

_log = logging.getLogger(__name__)

#: Environment variable naming the library to load when no path is given.
ENV_LIBRARY = "XSPRESS3_LIBRARY"
#: Module name under which setup.py builds the simulator.
BUNDLED_SIMULATOR = "xspress3.driver._xsp3sim"


class ArrayParam:
    """ctypes argtype for a C pointer filled from a numpy array.

    Unlike ``np.ctypeslib.ndpointer`` this can accept ``None`` (NULL) and
    says which dtype was expected. Subclasses are made by ``array_param``.
    """

    dtype: np.dtype = np.dtype(np.uint8)
    ctype: Any = ctypes.c_uint8
    nullable: bool = False

    @classmethod
    def from_param(cls, obj: Any) -> Any:
        if obj is None:
            if cls.nullable:
                return None
            raise TypeError(f"NULL not allowed for {cls.__name__}")
        if not isinstance(obj, np.ndarray):
            raise TypeError(f"{cls.__name__} needs a numpy array, got {type(obj).__name__}")
        if obj.dtype != cls.dtype:
            raise TypeError(f"{cls.__name__} needs dtype {cls.dtype}, got {obj.dtype}")
        if not (obj.flags.c_contiguous and obj.flags.writeable):
            raise TypeError(f"{cls.__name__} needs a C-contiguous, writeable array")
        return ctypes.c_void_p(obj.ctypes.data)


def array_param(dtype: Any, ctype: Any, nullable: bool = False) -> type[ArrayParam]:
    """Make an ArrayParam subclass for ``ctype *`` backed by numpy ``dtype``."""
    name = f"{np.dtype(dtype).name}_array{'_or_null' if nullable else ''}"
    return type(name, (ArrayParam,), {"dtype": np.dtype(dtype), "ctype": ctype, "nullable": nullable})


U32_ARRAY = array_param(np.uint32, c_uint32)
F64_ARRAY = array_param(np.float64, c_double)
F64_ARRAY_OR_NULL = array_param(np.float64, c_double, nullable=True)


@dataclass(frozen=True)
class Signature:
    """One C prototype: name, restype, argtypes, and whether it may be absent."""

    name: str
    restype: Any
    argtypes: tuple[Any, ...]
    optional: bool = False
    #: False for functions whose result is not a status code.
    checked: bool = True


SIGNATURES: list[Signature] = []


def _declare(name: str, restype: Any, argtypes: Sequence[Any], optional: bool = False, checked: bool = True) -> None:
    SIGNATURES.append(Signature(name, restype, tuple(argtypes), optional, checked))


# ---- lifecycle ----
# int xsp3_config(int ncards, int num_tf, char *baseIPaddress, int basePort, char *baseMACaddress,
#                 int nchan, int createmodule, char *modname, int debug, int card_index);
_declare("xsp3_config", c_int, [c_int, c_int, c_char_p, c_int, c_char_p, c_int, c_int, c_char_p, c_int, c_int])
# int xsp3_close(int path);   (some SDK releases: int xsp3_close(int path, int flag); see close_function)
_declare("xsp3_close", c_int, [c_int])
# char *xsp3_get_error_message(void);
_declare("xsp3_get_error_message", c_char_p, [], checked=False)
# int xsp3_get_num_chan(int path);
_declare("xsp3_get_num_chan", c_int, [c_int])
# int xsp3_get_num_cards(int path);
_declare("xsp3_get_num_cards", c_int, [c_int])
# int xsp3_get_bins_per_mca(int path);
_declare("xsp3_get_bins_per_mca", c_int, [c_int])
# int xsp3_get_num_tf(int path);
_declare("xsp3_get_num_tf", c_int, [c_int], optional=True)
# int xsp3_get_generation(int path, int card);
_declare("xsp3_get_generation", c_int, [c_int, c_int])
# int xsp3_has_itfg(int path, int card);
_declare("xsp3_has_itfg", c_int, [c_int, c_int])
# int xsp3_clocks_setup(int path, int card, int clk_src, int flags, int tp_type);
_declare("xsp3_clocks_setup", c_int, [c_int, c_int, c_int, c_int, c_int])
# int xsp3_restore_settings(int path, char *dir_name, int force_mismatch);
_declare("xsp3_restore_settings", c_int, [c_int, c_char_p, c_int])
# int xsp3_save_settings(int path, char *dir_name);
_declare("xsp3_save_settings", c_int, [c_int, c_char_p])
# int xsp3_format_run(int path, int chan, int aux1_mode, int res_thres, int aux2_cont,
#                     int disables, int aux2_mode, int nbits_eng);
_declare("xsp3_format_run", c_int, [c_int, c_int, c_int, c_int, c_int, c_int, c_int, c_int])
# int xsp3_set_run_flags(int path, int flags);
_declare("xsp3_set_run_flags", c_int, [c_int, c_int])

# ---- timing ----
# int xsp3_set_glob_timeA(int path, int card, uint32_t time);
_declare("xsp3_set_glob_timeA", c_int, [c_int, c_int, c_uint32])
# int xsp3_set_glob_timeFixed(int path, int card, uint32_t time);
_declare("xsp3_set_glob_timeFixed", c_int, [c_int, c_int, c_uint32])
# int xsp3_itfg_setup(int path, int card, int num_tf, uint32_t col_time, int trig_mode, int gap_mode);
_declare("xsp3_itfg_setup", c_int, [c_int, c_int, c_int, c_uint32, c_int, c_int])
# int xsp3_itfg_setup2(int path, int card, int num_tf, uint32_t col_time, int trig_mode, int gap_mode,
#                      int acq_in_pause, int marker_period, int marker_frame);
_declare("xsp3_itfg_setup2", c_int, [c_int, c_int, c_int, c_uint32, c_int, c_int, c_int, c_int, c_int])
# int xsp3_itfg_start(int path, int card);
_declare("xsp3_itfg_start", c_int, [c_int, c_int])
# int xsp3_itfg_stop(int path, int card);
_declare("xsp3_itfg_stop", c_int, [c_int, c_int])

# ---- acquisition ----
# int xsp3_histogram_clear(int path, int first_chan, int num_chan, int first_frame, int num_frames);
_declare("xsp3_histogram_clear", c_int, [c_int, c_int, c_int, c_int, c_int])
# int xsp3_histogram_arm(int path, int card);
_declare("xsp3_histogram_arm", c_int, [c_int, c_int])
# int xsp3_histogram_start(int path, int card);
_declare("xsp3_histogram_start", c_int, [c_int, c_int])
# int xsp3_histogram_continue(int path, int card);
_declare("xsp3_histogram_continue", c_int, [c_int, c_int])
# int xsp3_histogram_pause(int path, int card);
_declare("xsp3_histogram_pause", c_int, [c_int, c_int])
# int xsp3_histogram_stop(int path, int card);
_declare("xsp3_histogram_stop", c_int, [c_int, c_int])
# int xsp3_histogram_is_any_busy(int path);
_declare("xsp3_histogram_is_any_busy", c_int, [c_int])
# int xsp3_scaler_check_progress(int path);
_declare("xsp3_scaler_check_progress", c_int, [c_int])
# int64_t xsp3_scaler_check_progress_details(int path, Xsp3ErrFlag *flags, int quiet, int64_t *furthest_frame);
_declare(
    "xsp3_scaler_check_progress_details", c_int64, [c_int, POINTER(c_int32), c_int, POINTER(c_int64)], optional=True
)
# int xsp3_histogram_read4d(int path, uint32_t *buffer, unsigned eng, unsigned aux, unsigned chan,
#                           unsigned tf, unsigned num_eng, unsigned num_aux, unsigned num_chan,
#                           unsigned num_tf);
_declare(
    "xsp3_histogram_read4d", c_int, [c_int, U32_ARRAY, c_uint, c_uint, c_uint, c_uint, c_uint, c_uint, c_uint, c_uint]
)
# int xsp3_scaler_read(int path, uint32_t *dest, unsigned scaler, unsigned chan, unsigned t,
#                      unsigned n_scalers, unsigned n_chan, unsigned dt);
_declare("xsp3_scaler_read", c_int, [c_int, U32_ARRAY, c_uint, c_uint, c_uint, c_uint, c_uint, c_uint])
# int xsp3_hist_dtc_read4d(int path, double *hist_buff, double *scal_buff, unsigned eng, unsigned aux,
#                          unsigned chan, unsigned tf, unsigned num_eng, unsigned num_aux,
#                          unsigned num_chan, unsigned num_tf);
_declare(
    "xsp3_hist_dtc_read4d",
    c_int,
    [c_int, F64_ARRAY, F64_ARRAY_OR_NULL, c_uint, c_uint, c_uint, c_uint, c_uint, c_uint, c_uint, c_uint],
    optional=True,
)
# int xsp3_histogram_circ_ack(int path, int chan, unsigned frame, unsigned num_chan, unsigned num_frames);
_declare("xsp3_histogram_circ_ack", c_int, [c_int, c_int, c_uint, c_uint, c_uint])

# ---- windows, thresholds, deadtime ----
# int xsp3_set_window(int path, int chan, int win, int low, int high);
_declare("xsp3_set_window", c_int, [c_int, c_int, c_int, c_int, c_int])
# int xsp3_get_window(int path, int chan, int win, uint32_t *low, uint32_t *high);
_declare("xsp3_get_window", c_int, [c_int, c_int, c_int, POINTER(c_uint32), POINTER(c_uint32)])
# int xsp3_set_good_thres(int path, int chan, uint32_t good_thres);
_declare("xsp3_set_good_thres", c_int, [c_int, c_int, c_uint32])
# int xsp3_get_good_thres(int path, int chan, uint32_t *good_thres);
_declare("xsp3_get_good_thres", c_int, [c_int, c_int, POINTER(c_uint32)])
# int xsp3_get_dtcfactor(int path, uint32_t *scaData, double *dtcFactor, double *dtcAllEvent, int chan);
_declare("xsp3_get_dtcfactor", c_int, [c_int, U32_ARRAY, POINTER(c_double), POINTER(c_double), c_int])

# ---- simulator-only controls (absent from the real SDK) ----
# int xsp3sim_trigger(int path, int card, int n);
_declare("xsp3sim_trigger", c_int, [c_int, c_int, c_int], optional=True)
# int xsp3sim_gate(int path, int card, int open);
_declare("xsp3sim_gate", c_int, [c_int, c_int, c_int], optional=True)
# int xsp3sim_set_rate(int path, int chan, double counts_per_second);
_declare("xsp3sim_set_rate", c_int, [c_int, c_int, c_double], optional=True)
# int xsp3sim_set_seed(int path, uint64_t seed);
_declare("xsp3sim_set_seed", c_int, [c_int, c_uint64], optional=True)
# int xsp3sim_inject_fault(const char *function, int code, int after_calls);
_declare("xsp3sim_inject_fault", c_int, [c_char_p, c_int, c_int], optional=True)
# int xsp3sim_clear_faults(void);
_declare("xsp3sim_clear_faults", c_int, [], optional=True)
# int xsp3sim_refuse_address(const char *address);
_declare("xsp3sim_refuse_address", c_int, [c_char_p], optional=True)
# int xsp3sim_version(void);
_declare("xsp3sim_version", c_int, [], optional=True)

#: Prototype of the two-argument xsp3_close found in some SDK releases.
CLOSE_WITH_FLAG = Signature("xsp3_close", c_int, (c_int, c_int))
#: The simulator-only family; a library exporting all of them is the simulator.
SIM_SYMBOLS: tuple[str, ...] = tuple(s.name for s in SIGNATURES if s.name.startswith("xsp3sim_"))


def _summarise(value: Any) -> str:
    """Short text for one call argument (arrays by shape, not contents)."""
    if isinstance(value, np.ndarray):
        return f"<{value.dtype}{list(value.shape)}>"
    if isinstance(value, (int, float, bytes, str)) or value is None:
        return repr(value)
    return f"<{type(value).__name__}>"


def map_symbol(
    lib: ctypes.CDLL,
    name: str,
    restype: Any,
    argtypes: Sequence[Any],
    errcheck: Optional[Callable[..., Any]] = None,
    optional: bool = False,
) -> Optional[Any]:
    """Return the C function ``name`` of ``lib`` with its prototype set.

    A missing symbol raises MissingSymbolError naming the function and the
    library, unless ``optional``, in which case None is returned (probing).
    Each call returns a fresh function object, so libraries never share
    prototypes through ctypes' attribute cache.
    """
    try:
        func = lib[name]
    except AttributeError:
        if optional:
            _log.debug("optional symbol %s absent from %s", name, lib._name)
            return None
        raise MissingSymbolError(name, str(lib._name)) from None
    func.restype = restype
    func.argtypes = list(argtypes)
    if errcheck is not None:
        func.errcheck = errcheck
    return func


class Library:
    """One loaded libxspress3 (or simulator) with every prototype mapped.

    Functions are attributes named like the C symbols; absent optional
    symbols are None (see ``has``). ``lock`` is the lock every caller must
    hold around SDK calls: the SDK keeps process-global state (the last
    error text among it) and is not re-entrant. The mapped functions take it
    themselves, so a stray call can never interleave with another.
    """

    def __init__(self, cdll: ctypes.CDLL, path: str) -> None:
        self.path = path
        self.lock = threading.RLock()
        self._cdll = cdll
        self._raw: dict[str, Any] = {}
        checker = self._make_errcheck()
        for sig in SIGNATURES:
            errcheck = checker if sig.checked else _log_only
            func = map_symbol(cdll, sig.name, sig.restype, sig.argtypes, errcheck=errcheck, optional=sig.optional)
            self._raw[sig.name] = func
            setattr(self, sig.name, None if func is None else self._locked(func))
        # A second, unlogged handle: the errcheck reads the text inside a failing call.
        self._get_message_raw: Any = map_symbol(cdll, "xsp3_get_error_message", c_char_p, [])
        self.simulated = all(self._raw[name] is not None for name in SIM_SYMBOLS)
        _log.info("loaded %s (%s)", path, "simulator" if self.simulated else "SDK")

    def __getattr__(self, name: str) -> Any:
        # Reached only for names that were never mapped: the declared functions
        # are instance attributes set in __init__ (this also tells type checkers so).
        raise AttributeError(f"{type(self).__name__} has no function {name!r}")

    def _locked(self, func: Any) -> Callable[..., Any]:
        lock = self.lock

        def call(*args: Any) -> Any:
            with lock:
                return func(*args)

        call.__name__ = func.__name__
        call.__qualname__ = func.__name__
        return call

    def _make_errcheck(self) -> Callable[[Any, Any, tuple[Any, ...]], Any]:
        def errcheck(result: Any, func: Any, args: tuple[Any, ...]) -> Any:
            if _log.isEnabledFor(logging.DEBUG):
                _log.debug("%s(%s) -> %s", func.__name__, ", ".join(_summarise(a) for a in args), result)
            if result < 0:
                raise error_for(result, func.__name__, self.last_error_message())
            return result

        return errcheck

    def last_error_message(self) -> str:
        """Text of the SDK's last error (empty if it has none)."""
        with self.lock:
            raw = self._get_message_raw()
        return raw.decode("utf-8", errors="replace").strip() if raw else ""

    def has(self, name: str) -> bool:
        """True if the library exports the declared function ``name``."""
        return self._raw.get(name) is not None

    def require(self, name: str) -> Callable[..., Any]:
        """The function ``name``, or MissingSymbolError if the library lacks it."""
        func = getattr(self, name, None)
        if func is None:
            raise MissingSymbolError(name, self.path)
        return func

    def argtypes(self, name: str) -> tuple[Any, ...]:
        """The argtypes mapped for ``name`` (for introspection and tests)."""
        func = self._raw.get(name)
        if func is None:
            raise MissingSymbolError(name, self.path)
        return tuple(func.argtypes)

    def close_function(self, takes_flag: bool) -> Callable[..., Any]:
        """xsp3_close mapped with one int argument, or two when ``takes_flag``."""
        if not takes_flag:
            return self.require("xsp3_close")
        sig = CLOSE_WITH_FLAG
        func = map_symbol(self._cdll, sig.name, sig.restype, sig.argtypes, errcheck=self._make_errcheck())
        return self._locked(func)

    def __repr__(self) -> str:
        return f"<Library {self.path!r}{' (simulator)' if self.simulated else ''}>"


def _log_only(result: Any, func: Any, args: tuple[Any, ...]) -> Any:
    if _log.isEnabledFor(logging.DEBUG):
        _log.debug("%s(%s) -> %r", func.__name__, ", ".join(_summarise(a) for a in args), result)
    return result


_cache: dict[str, Library] = {}
_cache_lock = threading.Lock()


def default_library_path() -> str:
    """The library ``load(None)`` uses: $XSPRESS3_LIBRARY, else the bundled simulator."""
    env = os.environ.get(ENV_LIBRARY)
    if env:
        return env
    spec = importlib.util.find_spec(BUNDLED_SIMULATOR)
    if spec is None or not spec.origin:
        raise LibraryNotFoundError(
            BUNDLED_SIMULATOR, "the bundled simulator is not built; run `pip install -e .` in the source tree"
        )
    return spec.origin


def load(path: Optional[str | os.PathLike[str]] = None) -> Library:
    """Load (once per file) and return the library at ``path``; see the module doc."""
    name = os.fspath(path) if path is not None else default_library_path()
    key = os.path.realpath(name) if os.path.exists(name) else name
    with _cache_lock:
        lib = _cache.get(key)
        if lib is None:
            try:
                cdll = ctypes.CDLL(key)
            except OSError as exc:
                raise LibraryNotFoundError(name, str(exc)) from exc
            lib = Library(cdll, key)
            _cache[key] = lib
        return lib
