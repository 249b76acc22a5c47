"""Fixtures for the client tests: an IOC subprocess per test module."""
from __future__ import annotations

import sys
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE.parent), str(HERE)]  # iochelp; clienthelp and the client scripts

from iochelp import running_ioc  # noqa: E402


@pytest.fixture(scope="module")
def client_ioc(tmp_path_factory):
    """A 4-channel simulated IOC for one module of client tests."""
    with running_ioc(tmp_path_factory.mktemp("client-ioc"), channels=4, monitor=False,
                     stream=False) as proc:
        yield proc

