"""Running client scripts against a test IOC.

pyepics (alone or under ophyd) reads the CA environment when it is imported, so
every client runs as its own Python process with the IOC's environment.
"""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

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
