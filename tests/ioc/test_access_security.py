"""Access security: the ACF parser and rights in-process, then a real IOC started
with --access, driven by EPICS base caput/cainfo and caproto's client."""
from __future__ import annotations

import getpass
import socket
import subprocess
import sys

import pytest
from caproto import AccessRights

from iochelp import IocProcess, PutFailed, run_tool
from xspress3.ioc.access_security import (FIELD_LEVEL, VALUE_LEVEL, AcfError, guard,
                                          parse_acf)

ACF = """
# operators may write; everyone else may only read
UAG(ops) { operator1, "operator2" }
HAG(consoles) { WS1, ws2 }
ASG(DEFAULT) {
    RULE(1, READ)
    RULE(1, WRITE, TRAPWRITE) { UAG(ops) HAG(consoles) }
}
ASG(LOCKED) {
    RULE(0, READ)
}
#%ASSIGN(LOCKED) "det1:AcquireTime" "HDF1:File*"
"""

R, RW, NONE = AccessRights.READ, AccessRights.READ | AccessRights.WRITE, AccessRights.NO_ACCESS


def test_rules_grant_by_user_host_and_level():
    policy = parse_acf(ACF)
    assert policy.rights("DEFAULT", VALUE_LEVEL, "ws1", "operator1") == RW
    assert policy.rights("DEFAULT", VALUE_LEVEL, "Ws2", "operator2") == RW   # hosts ignore case
    assert policy.rights("DEFAULT", VALUE_LEVEL, "ws1", "carol") == R  # user not in ops
    assert policy.rights("DEFAULT", VALUE_LEVEL, "elsewhere", "operator1") == R  # host not in consoles
    assert policy.rights("DEFAULT", FIELD_LEVEL, "ws1", "operator1") == RW
    # LOCKED: level-0 rule covers values only; record fields get nothing
    assert policy.rights("LOCKED", VALUE_LEVEL, "ws1", "operator1") == R
    assert policy.rights("LOCKED", FIELD_LEVEL, "ws1", "operator1") == NONE
    assert policy.rights("UNKNOWN", VALUE_LEVEL, "ws1", "operator1") == NONE


def test_patterns_assign_groups_first_match_wins():
    policy = parse_acf(ACF)
    assert policy.group_of("det1:AcquireTime") == "LOCKED"
    assert policy.group_of("det1:AcquireTime_RBV") == "DEFAULT"
    assert policy.group_of("HDF1:FileName") == "LOCKED"
    assert policy.group_of("MCA1:ArrayData") == "DEFAULT"


def test_guard_applies_field_level_to_record_fields():
    policy = parse_acf(ACF)

    class Entry:
        pass

    value, desc = Entry(), Entry()
    guard(policy, value, "P:det1:AcquireTime", "P:")
    guard(policy, desc, "P:det1:AcquireTime.DESC", "P:")
    assert value.check_access("ws1", "operator1") == R
    assert desc.check_access("ws1", "operator1") == NONE


@pytest.mark.parametrize("text, line, words", [
    ("UAG(a) { x }\nASG(DEFAULT) {\n  RULE(2, READ)\n}\n", 3, "level must be 0 or 1"),
    ("ASG(DEFAULT) {\n  RULE(1, SUPER)\n}\n", 2, "NONE, READ or WRITE"),
    ("ASG(DEFAULT) {\n  RULE(1, WRITE) { UAG(nobody) }\n}\n", 2, "UAG(nobody) is not defined"),
    ("ASG(DEFAULT) {\n  INPA(\"X:Y\")\n}\n", 2, "not supported"),
    ("ASG(DEFAULT) {\n  RULE(1, WRITE) { CALC(\"A=1\") }\n}\n", 2, "CALC"),
    ("ASG(DEFAULT) { RULE(1, READ) }\n#%ASSIGN(OTHER) \"det1:*\"\n", 2, "does not define"),
    ("ASG(DEFAULT) { RULE(1, READ) }\n#%ASSIGN(DEFAULT) det1:*\n", 2, "quoted patterns"),
    ("UAG(a) { x }\nUAG(a) { y }\n", 2, "defined twice"),
    ("ASG(DEFAULT) {\n  RULE(1, READ)\n", 2, "file ends"),
    ("GROUP(x) { }\n", 1, "expected UAG, HAG or ASG"),
])
def test_bad_files_name_the_line_and_reason(text, line, words):
    with pytest.raises(AcfError) as info:
        parse_acf(text, "site.acf")
    message = str(info.value)
    assert message.startswith(f"site.acf:{line}:"), message
    assert words in message, message


def test_bad_file_stops_the_ioc_at_start(tmp_path):
    acf = tmp_path / "bad.acf"
    acf.write_text("ASG(DEFAULT) {\n  RULE(1, WRIT)\n}\n")
    proc = subprocess.run([sys.executable, "-m", "xspress3.ioc.main", "--access", str(acf),
                           "--stream", "none", "--monitor", "none", "--settings", "none"],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2
    assert f"{acf}:2:" in proc.stderr and "NONE, READ or WRITE" in proc.stderr


def _acf_for_this_client(tmp_path, writers: str) -> str:
    user = getpass.getuser()
    text = (f'UAG(ops) {{ "{writers or user}" }}\n'
            "ASG(DEFAULT) {\n  RULE(1, READ)\n  RULE(1, WRITE) { UAG(ops) }\n}\n"
            "ASG(READONLY) {\n  RULE(1, READ)\n}\n"
            '#%ASSIGN(READONLY) "det1:AcquireTime"\n')
    path = tmp_path / "site.acf"
    path.write_text(text)
    return str(path)


def test_ioc_refuses_puts_without_write_access(tmp_path):
    """This client's user may write, except det1:AcquireTime (read-only group)."""
    acf = _acf_for_this_client(tmp_path, writers="")
    with IocProcess(tmp_path, "--access", acf, stream=False, monitor=False) as ioc:
        assert "access security" in ioc.output()
        # allowed: in DEFAULT, user in ops
        ioc.put("det1:NumImages", 7)
        assert ioc.get("det1:NumImages_RBV") == 7
        # EPICS base tools: cainfo shows the rights, caput is refused and nothing stored
        info = run_tool(ioc, "cainfo", ioc.pv("det1:AcquireTime"))
        assert info.returncode == 0, info.stderr
        assert "Access:" in info.stdout and "read, no write" in info.stdout, info.stdout
        before = ioc.get("det1:AcquireTime_RBV")
        refused = run_tool(ioc, "caput", ioc.pv("det1:AcquireTime"), "0.5")
        assert refused.returncode != 0
        assert "write access" in (refused.stdout + refused.stderr).lower(), refused.stdout
        assert ioc.get("det1:AcquireTime") == before
        assert ioc.get("det1:AcquireTime_RBV") == before
        # reads still work for everybody
        caget = run_tool(ioc, "caget", ioc.pv("det1:AcquireTime"))
        assert caget.returncode == 0 and ioc.pv("det1:AcquireTime") in caget.stdout


def test_ioc_refuses_every_put_from_other_users(tmp_path):
    acf = _acf_for_this_client(tmp_path, writers="someone-else")
    with IocProcess(tmp_path, "--access", acf, stream=False, monitor=False) as ioc:
        info = run_tool(ioc, "cainfo", ioc.pv("det1:NumImages"))
        assert "read, no write" in info.stdout, info.stdout
        with pytest.raises(PutFailed):
            ioc.put("det1:NumImages", 9)
        assert ioc.get("det1:NumImages_RBV") != 9
        refused = run_tool(ioc, "caput", ioc.pv("det1:Acquire"), "1")
        assert refused.returncode != 0
        assert ioc.get("det1:DetectorState_RBV") == "Idle"
        assert socket.gethostname()  # the rules above need no host: any host is refused
