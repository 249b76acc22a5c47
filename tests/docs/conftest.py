"""Fixtures for the documentation tests: a live IOC for the screen check."""
from __future__ import annotations

import sys
from pathlib import Path

import pytest

TESTS = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(TESTS))

from iochelp import running_ioc  # noqa: E402


@pytest.fixture(scope="module")
def live_ioc(tmp_path_factory):
    """A 4-channel simulated IOC (the channel count the checked-in screens show)."""
    with running_ioc(tmp_path_factory.mktemp("docs-ioc"), channels=4, monitor=False,
                     stream=False) as proc:
        yield proc
