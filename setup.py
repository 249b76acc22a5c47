"""Builds the simulated libxspress3 (driver/sim/xsp3sim.c) as a plain shared library.

It is declared as an extension module only so that setuptools compiles it with the
user's C compiler at install time; it exports the SDK's C symbols, not a Python module,
and is loaded with ctypes by xspress3.driver._lib.
"""
from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension(
            "xspress3.driver._xsp3sim",
            sources=["driver/sim/xsp3sim.c"],
            depends=["driver/sim/xsp3_abi.h"],
            include_dirs=["driver/sim"],
            extra_compile_args=["-O2", "-std=c11", "-Wall", "-Wextra", "-Werror=implicit-function-declaration", "-pthread"],
            extra_link_args=["-pthread", "-lm"],
        )
    ]
)
