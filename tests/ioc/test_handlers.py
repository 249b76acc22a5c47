"""The typed root interface the PV groups use (ioc/handlers.py)."""
from __future__ import annotations

import asyncio
import inspect

import pytest

from xspress3.ioc import handlers
from xspress3.ioc.handlers import RootHandlers
from xspress3.ioc.server import IocBase

MEMBERS = [name for name, _ in inspect.getmembers(RootHandlers, inspect.isfunction)
           if not name.startswith("_")]
ADAPTERS = [name for name, fn in vars(handlers).items()
            if inspect.iscoroutinefunction(fn) and fn.__module__ == handlers.__name__]


@pytest.mark.parametrize("name", MEMBERS)
def test_root_group_implements_each_handler(name):
    """IocBase has every member of RootHandlers, with the same parameters and kind."""
    declared = getattr(RootHandlers, name)
    implemented = getattr(IocBase, name, None)
    assert implemented is not None, f"IocBase lacks {name}"
    assert inspect.iscoroutinefunction(implemented) == inspect.iscoroutinefunction(declared)
    assert (list(inspect.signature(implemented).parameters)
            == list(inspect.signature(declared).parameters))


class _Recorder:
    """Stands in for the root: records which method an adapter calls."""

    def __init__(self):
        self.called = []

    def __getattr__(self, name):
        if name not in MEMBERS:
            raise AttributeError(name)

        async def method(*args):
            self.called.append((name, args))
            return "stored"
        return method


@pytest.mark.parametrize("name", ADAPTERS)
def test_each_adapter_calls_the_root_method_of_its_name(name):
    root = _Recorder()
    fn = getattr(handlers, name)
    args = ("instance", "value") if len(inspect.signature(fn).parameters) == 3 else ()
    result = asyncio.run(fn(root, *args))
    assert root.called == [(name, args)]
    assert result == ("stored" if args else None)


def test_adapters_cover_the_putters_and_commands_the_pv_modules_use():
    assert {"acquire_put", "soft_trigger_put", "capture_put", "erase", "connect"} <= set(ADAPTERS)
