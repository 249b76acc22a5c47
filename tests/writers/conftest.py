"""Fixtures for the data-path tests."""
from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Callable

import pytest

from xspress3.writers import wire

# Tests run with --import-mode=importlib: make the helper module importable by name.
HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from writers_helpers import block_values, make_start  # noqa: E402


@pytest.fixture
def blocks() -> Callable[..., wire.FrameBlock]:
    return block_values


@pytest.fixture
def series() -> Callable[..., wire.SeriesStart]:
    return make_start


@pytest.fixture
def subprocess_env() -> dict[str, str]:
    """Environment for child Pythons (unbuffered, so tests can follow their output)."""
    env = dict(os.environ)
    env["PYTHONUNBUFFERED"] = "1"
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(HERE), env.get("PYTHONPATH", "")) if p)
    return env


@pytest.fixture
def here() -> Path:
    return HERE
