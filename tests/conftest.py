"""Shared fixtures: the bundled simulator library and an open simulated system."""
from __future__ import annotations

import importlib.util
from collections.abc import Iterator

import pytest

from iochelp import ca_repeater
from xspress3.driver import Xspress3, sim_controls


@pytest.fixture(scope="session", autouse=True)
def quiet_ca_repeater() -> Iterator[None]:
    """One CA repeater for the session, detached from pytest's output (see ca_repeater)."""
    with ca_repeater():
        yield


@pytest.fixture(scope="session")
def sim_library() -> str:
    """Path of the simulator built with the package (not $XSPRESS3_LIBRARY)."""
    spec = importlib.util.find_spec("xspress3.driver._xsp3sim")
    assert spec is not None and spec.origin, "simulator not built: run `pip install -e .`"
    return spec.origin


@pytest.fixture
def xsp3(sim_library: str) -> Iterator[Xspress3]:
    """A simulated 4-channel system with 64 frames of memory; faults cleared around it."""
    controls = sim_controls(sim_library)
    controls.clear_faults()
    with Xspress3(library=sim_library, channels=4, frames_memory=64) as dev:
        yield dev
    controls.clear_faults()
    controls.refuse_address(None)
