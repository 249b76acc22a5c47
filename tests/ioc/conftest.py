"""Fixtures: an IOC subprocess per test module (or per test), on private ports."""
from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from iochelp import running_ioc  # noqa: E402


@pytest.fixture(scope="module")
def ioc(tmp_path_factory):
    """A 4-channel simulated IOC shared by the tests of one module."""
    with running_ioc(tmp_path_factory.mktemp("ioc")) as proc:
        yield proc


@pytest.fixture
def fresh_ioc(tmp_path):
    """An IOC of its own for tests that change lasting state."""
    with running_ioc(tmp_path) as proc:
        yield proc
