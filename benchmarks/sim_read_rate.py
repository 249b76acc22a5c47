"""Read-out rate of the C simulator: frames/s of xsp3_histogram_read4d for 4 x 4096 frames.

Why: the simulator must never be the bottleneck of the IOC's read-out (target
>= 50 000 frames/s at a low count per frame). This calls the shared library
directly with ctypes, so the binding's overhead is not included.

Usage: python benchmarks/sim_read_rate.py [--seconds 1.0]
"""
from __future__ import annotations

import argparse
import ctypes
import importlib.util
import time
from ctypes import c_char_p, c_int, c_uint, c_uint32, c_void_p

import numpy as np

NCHAN = 4
BINS = 4096
MEMORY = 4096
SRC_TTL_BOTH = 5


def load() -> ctypes.CDLL:
    """Loads the built simulator and declares the few prototypes used here."""
    spec = importlib.util.find_spec("xspress3.driver._xsp3sim")
    if spec is None or spec.origin is None:
        raise SystemExit("simulator not built: run `pip install -e .` in the repository")
    lib = ctypes.CDLL(spec.origin)
    lib.xsp3_config.argtypes = [c_int, c_int, c_char_p, c_int, c_char_p, c_int, c_int, c_char_p, c_int, c_int]
    lib.xsp3_get_error_message.restype = c_char_p
    lib.xsp3_set_glob_timeA.argtypes = [c_int, c_int, c_uint32]
    lib.xsp3_itfg_setup.argtypes = [c_int, c_int, c_int, c_uint32, c_int, c_int]
    lib.xsp3_histogram_read4d.argtypes = [c_int, c_void_p] + [c_uint] * 8
    lib.xsp3sim_set_rate.argtypes = [c_int, c_int, ctypes.c_double]
    return lib


def check(lib: ctypes.CDLL, rc: int) -> int:
    if rc < 0:
        raise RuntimeError(f"rc={rc}: {lib.xsp3_get_error_message().decode()}")
    return rc


def fill_memory(lib: ctypes.CDLL, path: int, col_time: int) -> None:
    """Acquires MEMORY frames of col_time ticks each, completed by simulated trigger pulses."""
    check(lib, lib.xsp3_histogram_clear(path, 0, NCHAN, 0, MEMORY))
    check(lib, lib.xsp3_set_glob_timeA(path, 0, SRC_TTL_BOTH))
    check(lib, lib.xsp3_itfg_setup(path, 0, MEMORY, col_time, 0, 0))
    check(lib, lib.xsp3_histogram_arm(path, -1))
    check(lib, lib.xsp3sim_trigger(path, 0, MEMORY))


def rate(lib: ctypes.CDLL, path: int, block: int, seconds: float) -> float:
    buf = np.zeros((block, NCHAN, BINS), dtype=np.uint32)
    buf.fill(1)  # commit the pages before timing
    addr = buf.ctypes.data
    frames = 0
    start = time.perf_counter()
    while time.perf_counter() - start < seconds:
        for first in range(0, MEMORY - block + 1, block):
            check(lib, lib.xsp3_histogram_read4d(path, addr, 0, 0, 0, first, BINS, 1, NCHAN, block))
            frames += block
    return frames / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=1.0, help="time per measurement")
    args = parser.parse_args()
    lib = load()
    path = check(lib, lib.xsp3_config(1, MEMORY, b"192.168.0.1", -1, None, NCHAN, 1, None, 0, 0))
    try:
        for label, col_time, cps in [
            ("20 us frames at 50 kcps (~1 event/ch)", 1600, 5e4),
            ("1 ms frames at 50 kcps (~50 events/ch)", 80_000, 5e4),
            ("1 ms frames at 1 Mcps (~800 events/ch)", 80_000, 1e6),
        ]:
            check(lib, lib.xsp3sim_set_rate(path, -1, cps))
            fill_memory(lib, path, col_time)
            for block in (1, 16, 256):
                fps = rate(lib, path, block, args.seconds)
                print(f"{label:42s} block {block:4d}: {fps:12,.0f} frames/s")
    finally:
        lib.xsp3_close(path)


if __name__ == "__main__":
    main()
