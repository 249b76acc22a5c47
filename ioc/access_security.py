"""Channel Access security from an EPICS access security file (ACF).

`xspress3-ioc --access FILE` reads the file at start; a file that does not parse
stops the IOC with its line number and the reason. The grammar is EPICS base's:

    UAG(operators) { alice, bob }
    HAG(consoles)  { ws1, ws2 }
    ASG(DEFAULT) {
        RULE(1, READ)
        RULE(1, WRITE) { UAG(operators) HAG(consoles) }
    }

A client gets the highest access of the rules of its PV's group whose level is
at least the PV's level (0 for values, 1 for record fields such as `.DESC`) and
whose UAG and HAG conditions (if any) name its user and host (hosts compare
without regard to case). No matching rule: no access. INP and CALC conditions
are not supported and are refused as errors, so a file never grants more than
it says.

EPICS assigns records to groups in their database (the ASG field); this IOC has
no database files, so the ACF itself assigns PVs by name pattern, in lines that
standard ACF tools read as comments:

    #%ASSIGN(WRITERS) "HDF1:*" "det1:Acquire*"

Patterns are shell-style globs (`*`, `?`, `[...]`) over the PV name without the
IOC prefix; the first ASSIGN line whose pattern matches wins; every other PV is
in DEFAULT. A group named in ASSIGN but not defined is an error; a file without
ASG(DEFAULT) leaves the unassigned PVs with no access, as in EPICS.
"""
from __future__ import annotations

import fnmatch
import logging
import re
from dataclasses import dataclass, field
from typing import Optional

from caproto import AccessRights

log = logging.getLogger(__name__)

LEVELS = {"NONE": AccessRights.NO_ACCESS, "READ": AccessRights.READ,
          "WRITE": AccessRights.READ | AccessRights.WRITE}
VALUE_LEVEL = 0
FIELD_LEVEL = 1

_TOKEN = re.compile(r'\s*(?:(?P<str>"(?:[^"\\\n]|\\.)*")|(?P<word>[A-Za-z0-9_.:\-+*/\[\]$%]+)'
                    r'|(?P<punct>[(){},]))')
_ASSIGN = re.compile(r'^\s*#%\s*ASSIGN\s*\(\s*([A-Za-z0-9_\-]+)\s*\)\s*(.*)$')


class AcfError(ValueError):
    """The file does not parse; the message names the file, the line and the reason."""


@dataclass(frozen=True)
class Rule:
    level: int
    access: AccessRights
    uags: tuple = ()
    hags: tuple = ()


@dataclass
class AccessPolicy:
    """The parsed file: decides the access of one client to one PV."""
    uags: dict = field(default_factory=dict)      # name -> frozenset of users
    hags: dict = field(default_factory=dict)      # name -> frozenset of hosts (lower case)
    asgs: dict = field(default_factory=dict)      # name -> list of Rule
    assignments: list = field(default_factory=list)   # (glob, group name), in file order

    def group_of(self, suffix: str) -> str:
        for pattern, group in self.assignments:
            if fnmatch.fnmatchcase(suffix, pattern):
                return group
        return "DEFAULT"

    def rights(self, group: str, level: int, host: str, user: str) -> AccessRights:
        granted = AccessRights.NO_ACCESS
        host = (host or "").lower()
        for rule in self.asgs.get(group, ()):
            if rule.level < level:
                continue
            if rule.uags and not any(user in self.uags[u] for u in rule.uags):
                continue
            if rule.hags and not any(host in self.hags[h] for h in rule.hags):
                continue
            granted |= rule.access
        return granted

    def describe(self) -> str:
        return (f"{len(self.asgs)} access security groups ({', '.join(self.asgs)}), "
                f"{len(self.assignments)} PV patterns")


# ---- parsing ---------------------------------------------------------------------------

class _Tokens:
    def __init__(self, text: str, source: str):
        self.source = source
        self.items: list = []            # (kind, text, line)
        self.assign_lines: list = []     # (line number, group, rest of line)
        for number, line in enumerate(text.splitlines(), 1):
            m = _ASSIGN.match(line)
            if m:
                self.assign_lines.append((number, m.group(1), m.group(2)))
                continue
            line = _strip_comment(line)
            pos = 0
            while pos < len(line):
                if not line[pos:].strip():
                    break
                m = _TOKEN.match(line, pos)
                if not m:
                    raise self.error(number, f"unexpected character {line[pos:].strip()[0]!r}")
                kind = m.lastgroup
                value = m.group(kind)
                if kind == "str":
                    value = value[1:-1]
                self.items.append((kind, value, number))
                pos = m.end()
        self.pos = 0

    def error(self, line: int, message: str) -> AcfError:
        return AcfError(f"{self.source}:{line}: {message}")

    @property
    def line(self) -> int:
        if self.pos < len(self.items):
            return self.items[self.pos][2]
        return self.items[-1][2] if self.items else 1

    def peek(self) -> Optional[str]:
        return self.items[self.pos][1] if self.pos < len(self.items) else None

    def take(self, expected: Optional[str] = None, what: str = "") -> str:
        if self.pos >= len(self.items):
            raise self.error(self.line, f"file ends where {expected or what} was expected")
        kind, value, line = self.items[self.pos]
        if expected is not None and value != expected:
            raise self.error(line, f"expected {expected!r}, found {value!r}")
        if expected is None and kind == "punct":
            raise self.error(line, f"expected {what or 'a name'}, found {value!r}")
        self.pos += 1
        return value

    def names(self) -> list:
        """A comma-separated list up to '}' or ')' (not taken)."""
        out = []
        while self.peek() not in ("}", ")", None):
            out.append(self.take(what="a name"))
            if self.peek() == ",":
                self.take(",")
        return out


def _strip_comment(line: str) -> str:
    quoted = False
    for i, ch in enumerate(line):
        if ch == '"':
            quoted = not quoted
        elif ch == "#" and not quoted:
            return line[:i]
    return line


def parse_acf(text: str, source: str = "<acf>") -> AccessPolicy:
    """Parse ACF text; raises AcfError naming the line and the reason."""
    tokens = _Tokens(text, source)
    policy = AccessPolicy()
    while tokens.peek() is not None:
        line = tokens.line
        keyword = tokens.take(what="UAG, HAG or ASG")
        if keyword not in ("UAG", "HAG", "ASG"):
            raise tokens.error(line, f"expected UAG, HAG or ASG, found {keyword!r}")
        tokens.take("(")
        name = tokens.take(what=f"the {keyword} name")
        tokens.take(")")
        table = {"UAG": policy.uags, "HAG": policy.hags, "ASG": policy.asgs}[keyword]
        if name in table:
            raise tokens.error(line, f"{keyword}({name}) is defined twice")
        if keyword == "ASG":
            table[name] = _parse_asg(tokens, policy)
            continue
        members: list = []
        if tokens.peek() == "{":
            tokens.take("{")
            members = tokens.names()
            tokens.take("}")
        table[name] = frozenset(m.lower() for m in members) if keyword == "HAG" else frozenset(members)
    for number, group, rest in tokens.assign_lines:
        patterns = re.findall(r'"([^"]*)"', rest)
        leftover = re.sub(r'"[^"]*"', "", rest).strip()
        if not patterns or leftover:
            raise tokens.error(number, 'ASSIGN needs one or more quoted patterns, e.g. '
                                       '#%ASSIGN(WRITERS) "HDF1:*"')
        if group not in policy.asgs:
            raise tokens.error(number, f"ASSIGN names ASG({group}), which the file does not define")
        policy.assignments += [(p, group) for p in patterns]
    if "DEFAULT" not in policy.asgs:
        log.warning("%s has no ASG(DEFAULT): PVs it does not assign get no access", source)
    return policy


def _parse_asg(tokens: _Tokens, policy: AccessPolicy) -> list:
    rules: list = []
    if tokens.peek() != "{":
        return rules
    tokens.take("{")
    while tokens.peek() != "}":
        line = tokens.line
        keyword = tokens.take(what="RULE")
        if re.fullmatch(r"INP[A-L]", keyword):
            raise tokens.error(line, f"{keyword} (CALC input links) is not supported by this IOC")
        if keyword != "RULE":
            raise tokens.error(line, f"expected RULE, found {keyword!r}")
        tokens.take("(")
        level_text = tokens.take(what="the rule level")
        if level_text not in ("0", "1"):
            raise tokens.error(line, f"rule level must be 0 or 1, found {level_text!r}")
        tokens.take(",")
        access = tokens.take(what="NONE, READ or WRITE")
        if access not in LEVELS:
            raise tokens.error(line, f"access must be NONE, READ or WRITE, found {access!r}")
        if tokens.peek() == ",":
            tokens.take(",")
            trap = tokens.take(what="TRAPWRITE or NOTRAPWRITE")
            if trap not in ("TRAPWRITE", "NOTRAPWRITE"):
                raise tokens.error(line, f"expected TRAPWRITE or NOTRAPWRITE, found {trap!r}")
        tokens.take(")")
        uags: list = []
        hags: list = []
        if tokens.peek() == "{":
            tokens.take("{")
            while tokens.peek() != "}":
                cline = tokens.line
                kind = tokens.take(what="UAG or HAG")
                if kind == "CALC":
                    raise tokens.error(cline, "CALC conditions are not supported by this IOC")
                if kind not in ("UAG", "HAG"):
                    raise tokens.error(cline, f"expected UAG or HAG, found {kind!r}")
                tokens.take("(")
                names = tokens.names()
                tokens.take(")")
                known = policy.uags if kind == "UAG" else policy.hags
                for n in names:
                    if n not in known:
                        raise tokens.error(cline, f"{kind}({n}) is not defined before this rule")
                (uags if kind == "UAG" else hags).extend(names)
            tokens.take("}")
        rules.append(Rule(int(level_text), LEVELS[access], tuple(uags), tuple(hags)))
    tokens.take("}")
    return rules


def load_acf(path: str) -> AccessPolicy:
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except OSError as ex:
        raise AcfError(f"{path}: cannot read: {ex.strerror or ex}") from ex
    return parse_acf(text, path)


# ---- applying it to the server ---------------------------------------------------------

class PvAccess:
    """Bound as a PV's `check_access`: caproto asks it when a channel is created
    (the client is told its rights, which `cainfo` shows) and at every put."""
    __slots__ = ("policy", "group", "level")

    def __init__(self, policy: AccessPolicy, group: str, level: int):
        self.policy, self.group, self.level = policy, group, level

    def __call__(self, hostname, username) -> AccessRights:
        return self.policy.rights(self.group, self.level, hostname, username)


def guard(policy: AccessPolicy, entry, pvname: str, prefix: str) -> None:
    """Attach the policy to one PV (or record field) the server is about to serve."""
    if isinstance(getattr(entry, "check_access", None), PvAccess):
        return
    name = pvname[len(prefix):] if pvname.startswith(prefix) else pvname
    record, _, fld = name.partition(".")
    level = FIELD_LEVEL if fld and fld != "VAL" else VALUE_LEVEL
    entry.check_access = PvAccess(policy, policy.group_of(record), level)


def secured_context(context_class):
    """A subclass of the server Context class whose PVs answer with the policy's rights."""

    class SecuredContext(context_class):
        policy: Optional[AccessPolicy] = None
        prefix = ""

        def __getitem__(self, pvname):
            entry = super().__getitem__(pvname)
            if self.policy is not None:
                guard(self.policy, entry, pvname, self.prefix)
            return entry

    return SecuredContext
