"""Fixtures: an IOC subprocess per test module (or per test), on private ports."""
from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from iochelp import IocProcess  # noqa: E402


@pytest.fixture(scope="module")
def ioc(tmp_path_factory):
    """A 4-channel simulated IOC shared by the tests of one module."""
    tmp = tmp_path_factory.mktemp("ioc")
    proc = IocProcess(tmp)
    proc.start()
    yield proc
    rc = proc.stop()
    print(proc.output()[-20000:])
    assert rc == 0, proc.output()[-4000:]


@pytest.fixture
def fresh_ioc(tmp_path):
    """An IOC of its own for tests that change lasting state."""
    proc = IocProcess(tmp_path)
    proc.start()
    yield proc
    rc = proc.stop()
    assert rc == 0, proc.output()[-4000:]
