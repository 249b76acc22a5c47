"""Running client scripts against a test IOC.

pyepics (alone or under ophyd) reads the CA environment when it is imported, so
every client runs as its own Python process with the IOC's environment.
"""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from ophyd import DynamicDeviceComponent
from ophyd.signal import EpicsSignalBase

HERE = Path(__file__).resolve().parent
SCRIPT_TIMEOUT_S = 120  # hang guard only


def run_client(ioc, script: str, *args: str) -> subprocess.CompletedProcess:
    """Run tests/clients/<script> with the IOC's CA environment; fail with its output."""
    result = subprocess.run([sys.executable, str(HERE / script), *args], env=ioc.env,
                            capture_output=True, text=True, timeout=SCRIPT_TIMEOUT_S)
    assert result.returncode == 0, (f"{script} exited {result.returncode}\n{result.stdout[-3000:]}"
                                    f"\n{result.stderr[-6000:]}\nIOC log:\n{ioc.output()[-3000:]}")
    return result


def last_json_line(text: str):
    return json.loads(text.strip().splitlines()[-1])


def ophyd_pv_suffixes(device_cls, prefix: str) -> set:
    """Every PV suffix the signals of an ophyd device class name (setpoints and readbacks)."""
    out = set()
    for cpt in device_cls._sig_attrs.values():
        if isinstance(cpt, DynamicDeviceComponent):
            items = [(cls, suffix, kw) for cls, suffix, kw in cpt.defn.values()]
        elif getattr(cpt.cls, "_sig_attrs", None):
            out |= ophyd_pv_suffixes(cpt.cls, prefix + (cpt.suffix or ""))
            continue
        else:
            items = [(cpt.cls, cpt.suffix, cpt.kwargs)]
        for cls, suffix, kw in items:
            if suffix is None or not (isinstance(cls, type) and issubclass(cls, EpicsSignalBase)):
                continue
            out.add(prefix + suffix)
            if cls.__name__.endswith("SignalWithRBV"):
                out.add(prefix + suffix + "_RBV")
            if "write_pv" in kw:
                out.add(prefix + kw["write_pv"])
    return out
