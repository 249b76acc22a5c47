"""The Xspress3 class: a typed, thread-safe handle on one Xspress3 system.

Blocking calls only; the IOC runs them on its own worker threads. Read-outs
fill arrays the caller owns, so the readout loop allocates nothing per block.

Thread safety: one re-entrant lock (the loaded library's ``lock``) is held
around every SDK call. The SDK keeps process-global state, for example the
text of the last error, and is not re-entrant, so two threads must never be
inside it at once; compound operations (a read split at the circular-buffer
wrap) hold the lock throughout so they appear atomic to other threads.
"""
from __future__ import annotations

import ctypes
import logging
import math
import os
import weakref
from typing import Any, NamedTuple, Optional, Union

import numpy as np

from xspress3.vocabulary import INT32_MAX

from . import _lib
from .constants import (
    ALL_CARDS,
    DEBOUNCE_SHIFT,
    DEFAULT_ADDRESS,
    DEFAULT_FRAMES_MEMORY,
    DEFAULT_NBITS_ENG,
    DEFAULT_PORT,
    MAX_COL_TIME_TICKS,
    MAX_DEBOUNCE,
    NUM_SCALERS,
    TICKS_PER_SECOND,
    ClockFlag,
    ClockSource,
    FrameSource,
    ItfgGap,
    ItfgTrigMode,
    ProgressFlag,
    RunFlag,
    TimingFlag,
)
from .errors import DeviceClosedError, MissingSymbolError, Xspress3Error

__all__ = ["Xspress3", "Progress", "SimControls", "SimLibraryControls", "sim_controls", "ENV_CLOSE_TAKES_FLAG"]

_log = logging.getLogger(__name__)

PathLike = Union[str, "os.PathLike[str]"]
LibrarySpec = Union[None, str, "os.PathLike[str]", _lib.Library]

#: Environment variable stating whether the SDK's xsp3_close takes a second int.
ENV_CLOSE_TAKES_FLAG = "XSPRESS3_CLOSE_TAKES_FLAG"
_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


class Progress(NamedTuple):
    """Acquisition progress: frames completed, and the SDK's error flags."""

    frames: int
    overrun: bool
    missing: bool


def _library(spec: LibrarySpec) -> _lib.Library:
    return spec if isinstance(spec, _lib.Library) else _lib.load(spec)


def _close_takes_flag(lib: _lib.Library, explicit: Optional[bool]) -> bool:
    """Decide xsp3_close's arity: explicit > environment > simulator header; else warn."""
    if explicit is not None:
        return bool(explicit)
    env = os.environ.get(ENV_CLOSE_TAKES_FLAG, "").strip().lower()
    if env in _TRUE:
        return True
    if env in _FALSE:
        return False
    if env:
        raise ValueError(f"{ENV_CLOSE_TAKES_FLAG}={env!r}: expected 1/0, true/false, yes/no or on/off")
    if lib.simulated:
        return False
    _log.warning(
        "arity of xsp3_close in %s is not known; calling xsp3_close(path). If this SDK takes "
        "xsp3_close(path, flag), pass close_takes_flag=True or set %s=1",
        lib.path,
        ENV_CLOSE_TAKES_FLAG,
    )
    return False


class _Handle:
    """State shared with the finalizer (which must not reference the Xspress3)."""

    def __init__(self, lib: _lib.Library, path: int, close_takes_flag: bool) -> None:
        self.lib = lib
        self.path: Optional[int] = path
        self.close_takes_flag = close_takes_flag


def _release(handle: _Handle) -> None:
    """Close the SDK path once; runs from close(), __exit__ or garbage collection."""
    with handle.lib.lock:
        path, handle.path = handle.path, None
        if path is None:
            return
        close = handle.lib.close_function(handle.close_takes_flag)
        try:
            if handle.close_takes_flag:
                close(path, 0)
            else:
                close(path)
        except Xspress3Error:
            _log.exception("closing Xspress3 path %d failed", path)


def _check_array(arr: Any, dtype: Any, ndim: int, name: str) -> np.ndarray:
    """Validate a caller-provided output array, with errors that say what is wrong."""
    if not isinstance(arr, np.ndarray):
        raise ValueError(f"{name} must be a numpy array, got {type(arr).__name__}")
    if arr.dtype != np.dtype(dtype):
        raise ValueError(f"{name} must have dtype {np.dtype(dtype)}, got {arr.dtype}")
    if arr.ndim != ndim:
        raise ValueError(f"{name} must have {ndim} dimensions, got shape {arr.shape}")
    if not arr.flags.c_contiguous:
        raise ValueError(f"{name} must be C-contiguous")
    if not arr.flags.writeable:
        raise ValueError(f"{name} must be writeable")
    return arr


def _check_range(name: str, first: int, count: int, limit: int) -> None:
    if first < 0 or count < 0 or first + count > limit:
        raise ValueError(f"{name} {first}..{first + count - 1} outside 0..{limit - 1}")


class Xspress3:
    """One open Xspress3 system (real SDK or the bundled simulator).

    The constructor runs the areaDetector connect sequence: config, clocks
    per card, optional restore of calibration from ``config_dir``, format_run
    per channel and run flags (scalers and histograms). ``close_takes_flag``
    states whether this SDK's xsp3_close takes a second int (passed as 0); it
    falls back to $XSPRESS3_CLOSE_TAKES_FLAG, then to the one-int form, which
    is logged as a warning for a non-simulated library.
    """

    def __init__(
        self,
        library: LibrarySpec = None,
        cards: int = 1,
        channels: int = 4,
        frames_memory: int = DEFAULT_FRAMES_MEMORY,
        address: str = DEFAULT_ADDRESS,
        port: int = DEFAULT_PORT,
        config_dir: Optional[PathLike] = None,
        close_takes_flag: Optional[bool] = None,
    ) -> None:
        if cards < 1 or channels < 1 or frames_memory < 1:
            raise ValueError("cards, channels and frames_memory must be >= 1")
        self._lib = _library(library)
        self._lock = self._lib.lock
        self._circular = False
        self._num_cards = self._num_channels = self._bins = self._frames_memory = 0
        takes_flag = _close_takes_flag(self._lib, close_takes_flag)
        with self._lock:
            path = self._lib.xsp3_config(
                cards, frames_memory, address.encode(), port, None, channels, 1, None, 0, 0
            )
            self._handle = _Handle(self._lib, path, takes_flag)
            self._finalizer = weakref.finalize(self, _release, self._handle)
            try:
                self._connect(path, config_dir, frames_memory)
            except BaseException:
                self.close()
                raise
        _log.info("opened %r", self)

    def _connect(self, path: int, config_dir: Optional[PathLike], frames_memory: int) -> None:
        """The connect sequence after xsp3_config; sizes are read back from the SDK."""
        lib = self._lib
        self._num_cards = lib.xsp3_get_num_cards(path)
        self._num_channels = lib.xsp3_get_num_chan(path)
        has_num_tf = lib.has("xsp3_get_num_tf")
        self._frames_memory = lib.xsp3_get_num_tf(path) if has_num_tf else frames_memory
        for card in range(self._num_cards):
            lib.xsp3_clocks_setup(path, card, ClockSource.XTAL, ClockFlag.MASTER | ClockFlag.NO_DITHER, 0)
        if config_dir is not None:
            lib.xsp3_restore_settings(path, os.fsencode(config_dir), 0)
        for chan in range(self._num_channels):
            lib.xsp3_format_run(path, chan, 0, 0, 0, 0, 0, DEFAULT_NBITS_ENG)
        lib.xsp3_set_run_flags(path, RunFlag.SCALERS | RunFlag.HIST)
        self._bins = lib.xsp3_get_bins_per_mca(path)  # after format_run, which sets it

    # ---- lifecycle and properties ----

    def close(self) -> None:
        """Close the system; safe to call more than once and from any thread."""
        self._finalizer()

    @property
    def closed(self) -> bool:
        return self._handle.path is None

    def __enter__(self) -> "Xspress3":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "closed" if self.closed else f"path {self._handle.path}"
        return (
            f"<Xspress3 {state}: {self._num_cards} card(s), {self._num_channels} ch, {self._bins} bins, "
            f"{self._frames_memory} frames, {self._lib.path!r}>"
        )

    def _path(self, operation: str) -> int:
        """The live SDK handle; the caller holds the lock."""
        path = self._handle.path
        if path is None:
            raise DeviceClosedError(operation)
        return path

    @property
    def simulated(self) -> bool:
        """True when the loaded library exports the simulator-only controls."""
        return self._lib.simulated

    @property
    def library_path(self) -> str:
        return self._lib.path

    @property
    def num_channels(self) -> int:
        return self._num_channels

    @property
    def num_cards(self) -> int:
        return self._num_cards

    @property
    def bins(self) -> int:
        return self._bins

    @property
    def frames_memory(self) -> int:
        """Frames of on-board memory (the circular buffer's length)."""
        return self._frames_memory

    @property
    def circular(self) -> bool:
        """Whether the last set_run_flags selected circular-buffer mode."""
        return self._circular

    @property
    def has_dtc_read(self) -> bool:
        """Whether read_dtc is available (xsp3_hist_dtc_read4d exported)."""
        return self._lib.has("xsp3_hist_dtc_read4d")

    def generation(self, card: int = 0) -> int:
        """Hardware generation of ``card``."""
        with self._lock:
            return self._lib.xsp3_get_generation(self._path("get generation"), card)

    def has_itfg(self, card: int = 0) -> bool:
        """Whether ``card`` has the internal time-frame generator."""
        with self._lock:
            return bool(self._lib.xsp3_has_itfg(self._path("query itfg"), card))

    # ---- configuration ----

    def set_run_flags(self, circular: bool) -> None:
        """Record scalers and histograms; ``circular`` for runs longer than memory."""
        flags = RunFlag.SCALERS | RunFlag.HIST | (RunFlag.CIRCULAR_BUFFER if circular else RunFlag(0))
        with self._lock:
            self._lib.xsp3_set_run_flags(self._path("set run flags"), flags)
            self._circular = bool(circular)

    def set_timing(
        self, source: FrameSource, invert_f0: bool = False, invert_veto: bool = False, debounce: int = 0
    ) -> None:
        """Select what starts and ends frames; cards after the first follow card 0's veto."""
        source = FrameSource(source)
        if not 0 <= debounce <= MAX_DEBOUNCE:
            raise ValueError(f"debounce must be 0..{MAX_DEBOUNCE} ticks, got {debounce}")
        flags = (TimingFlag.F0_INV if invert_f0 else 0) | (TimingFlag.VETO_INV if invert_veto else 0)
        flags |= debounce << DEBOUNCE_SHIFT
        with self._lock:
            path = self._path("set timing")
            self._lib.xsp3_set_glob_timeA(path, 0, int(source) | flags)
            for card in range(1, self._num_cards):
                self._lib.xsp3_set_glob_timeA(path, card, int(FrameSource.TTL_VETO_ONLY) | flags)

    def setup_itfg(
        self,
        num_frames: int,
        exposure_s: float,
        trig_mode: ItfgTrigMode = ItfgTrigMode.BURST,
        gap: ItfgGap = ItfgGap.GAP_1US,
    ) -> int:
        """Program the run length and frame time; returns the frame time in ticks."""
        if not 1 <= num_frames <= INT32_MAX:
            raise ValueError(f"num_frames must be 1..{INT32_MAX}, got {num_frames}")
        if not math.isfinite(exposure_s):
            raise ValueError(f"exposure_s must be finite, got {exposure_s}")
        ticks = round(exposure_s * TICKS_PER_SECOND)
        if not 1 <= ticks <= MAX_COL_TIME_TICKS:
            raise ValueError(
                f"exposure {exposure_s} s is {ticks} ticks; must be 1..{MAX_COL_TIME_TICKS} "
                f"({1 / TICKS_PER_SECOND:g}..{MAX_COL_TIME_TICKS / TICKS_PER_SECOND:g} s)"
            )
        with self._lock:
            self._lib.xsp3_itfg_setup(
                self._path("set up itfg"), 0, num_frames, ticks, ItfgTrigMode(trig_mode), ItfgGap(gap)
            )
        return ticks

    def set_window(self, chan: int, win: int, low: int, high: int) -> None:
        """Set in-window scaler ``win`` (0 or 1) of ``chan`` to bins low..high."""
        with self._lock:
            self._lib.xsp3_set_window(self._path("set window"), chan, win, low, high)

    def get_window(self, chan: int, win: int) -> tuple[int, int]:
        """(low, high) bins of in-window scaler ``win`` of ``chan``."""
        low, high = ctypes.c_uint32(), ctypes.c_uint32()
        with self._lock:
            self._lib.xsp3_get_window(self._path("get window"), chan, win, ctypes.byref(low), ctypes.byref(high))
        return low.value, high.value

    def set_good_threshold(self, chan: int, value: int) -> None:
        """Set the "all good" event threshold of ``chan``."""
        with self._lock:
            self._lib.xsp3_set_good_thres(self._path("set good threshold"), chan, value)

    def get_good_threshold(self, chan: int) -> int:
        value = ctypes.c_uint32()
        with self._lock:
            self._lib.xsp3_get_good_thres(self._path("get good threshold"), chan, ctypes.byref(value))
        return value.value

    def save_settings(self, directory: PathLike) -> None:
        """Write the calibration/settings files into ``directory``."""
        with self._lock:
            self._lib.xsp3_save_settings(self._path("save settings"), os.fsencode(directory))

    def restore_settings(self, directory: PathLike, force_mismatch: bool = False) -> None:
        """Load calibration/settings files from ``directory``."""
        with self._lock:
            self._lib.xsp3_restore_settings(self._path("restore settings"), os.fsencode(directory), int(force_mismatch))

    # ---- acquisition control ----

    def clear(self, first_frame: int, num_frames: int) -> None:
        """Zero frames first_frame.. of every channel (memory slots, not run frames)."""
        _check_range("frames", first_frame, num_frames, self._frames_memory)
        if num_frames == 0:
            return
        with self._lock:
            self._lib.xsp3_histogram_clear(self._path("clear"), 0, self._num_channels, first_frame, num_frames)

    def arm(self) -> None:
        """Ready every card to acquire on its triggers."""
        with self._lock:
            self._lib.xsp3_histogram_arm(self._path("arm"), ALL_CARDS)

    def start(self) -> None:
        """Arm and go (software and internal timing)."""
        with self._lock:
            self._lib.xsp3_histogram_start(self._path("start"), ALL_CARDS)

    def stop(self) -> None:
        with self._lock:
            self._lib.xsp3_histogram_stop(self._path("stop"), ALL_CARDS)

    def pause(self) -> None:
        """End the current frame (software timing)."""
        with self._lock:
            self._lib.xsp3_histogram_pause(self._path("pause"), 0)

    def continue_(self) -> None:
        """Start the next frame (software timing)."""
        with self._lock:
            self._lib.xsp3_histogram_continue(self._path("continue"), 0)

    def is_busy(self) -> bool:
        with self._lock:
            return bool(self._lib.xsp3_histogram_is_any_busy(self._path("query busy")))

    def progress(self) -> Progress:
        """Frames completed so far (absolute, also in circular mode) and error flags."""
        with self._lock:
            path = self._path("check progress")
            if self._lib.has("xsp3_scaler_check_progress_details"):
                flags, furthest = ctypes.c_int32(0), ctypes.c_int64(0)
                frames = self._lib.xsp3_scaler_check_progress_details(
                    path, ctypes.byref(flags), 1, ctypes.byref(furthest)
                )
                bits = ProgressFlag(flags.value & (ProgressFlag.OVERRUN | ProgressFlag.MISSING))
                return Progress(int(frames), ProgressFlag.OVERRUN in bits, ProgressFlag.MISSING in bits)
            return Progress(self._lib.xsp3_scaler_check_progress(path), False, False)

    # ---- read-out ----

    def _segments(self, first_frame: int, count: int) -> list[tuple[int, int, int]]:
        """(memory slot, offset in caller's array, frames) pieces of a frame range.

        In circular mode frame k lives in slot k % memory, so a range that
        crosses the end of memory is read in two pieces.
        """
        mem = self._frames_memory
        if first_frame < 0:
            raise ValueError(f"first_frame must be >= 0, got {first_frame}")
        if not self._circular:
            _check_range("frames", first_frame, count, mem)
            return [(first_frame, 0, count)]
        if count > mem:
            raise ValueError(f"cannot handle {count} frames at once in a circular buffer of {mem}")
        slot = first_frame % mem
        head = min(count, mem - slot)
        pieces = [(slot, 0, head)]
        if head < count:
            pieces.append((0, head, count - head))
        return pieces

    def _block_checks(self, nch: int, first_channel: int, nbins: int = 0, first_bin: int = 0) -> None:
        _check_range("channels", first_channel, nch, self._num_channels)
        _check_range("bins", first_bin, nbins, self._bins)

    def read_spectra(self, out: np.ndarray, first_frame: int, first_bin: int = 0, first_channel: int = 0) -> np.ndarray:
        """Fill ``out`` (frames, channels, bins) uint32 from ``first_frame``; returns ``out``.

        The channel and bin ranges start at first_channel / first_bin and
        their lengths are out.shape[1:]. In circular mode frame numbers are
        absolute (as counted by progress()).
        """
        _check_array(out, np.uint32, 3, "out")
        n, nch, nbins = out.shape
        self._block_checks(nch, first_channel, nbins, first_bin)
        if n == 0 or nch == 0 or nbins == 0:
            return out
        with self._lock:
            path = self._path("read spectra")
            for slot, off, cnt in self._segments(first_frame, n):
                self._lib.xsp3_histogram_read4d(
                    path, out[off : off + cnt], first_bin, 0, first_channel, slot, nbins, 1, nch, cnt
                )
        return out

    def read_scalers(self, out: np.ndarray, first_frame: int, first_channel: int = 0) -> np.ndarray:
        """Fill ``out`` (frames, channels, 9) uint32 with all scalers; returns ``out``."""
        _check_array(out, np.uint32, 3, "out")
        n, nch, nsc = out.shape
        if nsc != NUM_SCALERS:
            raise ValueError(f"out must have {NUM_SCALERS} scalers on the last axis, got shape {out.shape}")
        self._block_checks(nch, first_channel)
        if n == 0 or nch == 0:
            return out
        with self._lock:
            path = self._path("read scalers")
            for slot, off, cnt in self._segments(first_frame, n):
                self._lib.xsp3_scaler_read(path, out[off : off + cnt], 0, first_channel, slot, NUM_SCALERS, nch, cnt)
        return out

    def read_dtc(
        self,
        hist_out: np.ndarray,
        factor_out: Optional[np.ndarray],
        first_frame: int,
        first_bin: int = 0,
        first_channel: int = 0,
    ) -> np.ndarray:
        """Deadtime-corrected spectra into ``hist_out`` (frames, channels, bins) float64.

        ``factor_out`` (frames, channels) float64 receives the SDK's per-frame
        correction factors, or pass None. Needs xsp3_hist_dtc_read4d
        (MissingSymbolError otherwise; see has_dtc_read).
        """
        read = self._lib.require("xsp3_hist_dtc_read4d")
        _check_array(hist_out, np.float64, 3, "hist_out")
        n, nch, nbins = hist_out.shape
        if factor_out is not None:
            _check_array(factor_out, np.float64, 2, "factor_out")
            if factor_out.shape != (n, nch):
                raise ValueError(f"factor_out must have shape {(n, nch)}, got {factor_out.shape}")
        self._block_checks(nch, first_channel, nbins, first_bin)
        if n == 0 or nch == 0 or nbins == 0:
            return hist_out
        with self._lock:
            path = self._path("read dtc")
            for slot, off, cnt in self._segments(first_frame, n):
                factors = None if factor_out is None else factor_out[off : off + cnt]
                read(path, hist_out[off : off + cnt], factors, first_bin, 0, first_channel, slot, nbins, 1, nch, cnt)
        return hist_out

    def ack(self, first_frame: int, num_frames: int) -> None:
        """Release read frames in circular mode (absolute numbers, mapped modulo memory)."""
        if num_frames == 0:
            return
        if num_frames < 0:
            raise ValueError(f"num_frames must be >= 0, got {num_frames}")
        with self._lock:
            path = self._path("acknowledge frames")
            for slot, _off, cnt in self._segments(first_frame, num_frames):
                self._lib.xsp3_histogram_circ_ack(path, 0, slot, self._num_channels, cnt)

    def dtc_factor(self, scalers: Any, chan: int) -> tuple[float, float]:
        """The SDK's (factor, corrected all-event count) for one channel's nine scalers."""
        data = np.ascontiguousarray(scalers, dtype=np.uint32)
        if data.shape != (NUM_SCALERS,):
            raise ValueError(f"scalers must have shape ({NUM_SCALERS},), got {data.shape}")
        data = data.copy() if not data.flags.writeable else data
        factor, all_event = ctypes.c_double(), ctypes.c_double()
        with self._lock:
            path = self._path("get dtc factor")
            self._lib.xsp3_get_dtcfactor(path, data, ctypes.byref(factor), ctypes.byref(all_event), chan)
        return factor.value, all_event.value

    # ---- simulator ----

    @property
    def sim(self) -> Optional["SimControls"]:
        """Simulator controls, or None with a real SDK."""
        return SimControls(self) if self._lib.simulated else None


class SimLibraryControls:
    """Simulator controls that act on the whole library, usable with no system open."""

    def __init__(self, library: _lib.Library) -> None:
        missing = [name for name in _lib.SIM_SYMBOLS if not library.has(name)]
        if missing:
            raise MissingSymbolError(missing[0], library.path)
        self._lib = library

    def inject_fault(self, function: str, code: int, after_calls: int = 0) -> None:
        """Make ``function`` return ``code`` once, after ``after_calls`` successful calls."""
        self._lib.xsp3sim_inject_fault(function.encode(), int(code), after_calls)

    def clear_faults(self) -> None:
        self._lib.xsp3sim_clear_faults()

    def refuse_address(self, address: Optional[str]) -> None:
        """Make xsp3_config fail (device not found) for ``address``; None stops refusing."""
        self._lib.xsp3sim_refuse_address(None if address is None else address.encode())

    def version(self) -> int:
        return int(self._lib.xsp3sim_version())


class SimControls(SimLibraryControls):
    """Simulator controls bound to one open system (triggers, gates, rates)."""

    def __init__(self, device: Xspress3) -> None:
        super().__init__(device._lib)
        self._device = device

    def _call(self, name: str, *args: Any) -> int:
        dev = self._device
        with dev._lock:
            return int(getattr(self._lib, name)(dev._path(name), *args))

    def trigger(self, n: int = 1, card: int = 0) -> None:
        """Deliver ``n`` external frame triggers to ``card``."""
        self._call("xsp3sim_trigger", card, n)

    def gate(self, open: bool, card: int = 0) -> None:
        """Open or close the external veto gate of ``card``."""
        self._call("xsp3sim_gate", card, int(bool(open)))

    def set_rate(self, counts_per_second: float, chan: int = -1) -> None:
        """Input count rate of ``chan`` (-1: every channel)."""
        self._call("xsp3sim_set_rate", chan, float(counts_per_second))

    def set_seed(self, seed: int) -> None:
        """Seed the simulator's random events, for reproducible data."""
        self._call("xsp3sim_set_seed", seed)


def sim_controls(library: LibrarySpec = None) -> SimLibraryControls:
    """Library-wide simulator controls (faults, refused addresses) before any system is open.

    Raises MissingSymbolError if ``library`` is not the simulator.
    """
    return SimLibraryControls(_library(library))
