"""`xspress3-docs`: generate the PV reference and the Phoebus screens from the IOC's PVGroups.

The IOC class is built (without a detector: no threads start) and walked group
by group; what each PV is (type, access, units, limits, enum strings, doc) comes
from its declaration, so the reference cannot drift from the code. `--check`
compares the generated files with the checked-in ones and exits 1 on any
difference, which is what the golden test and CI run.
"""
from __future__ import annotations

import argparse
import logging
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Optional

from caproto import ChannelType

from . import enums, screens
from .channel_pvs import NUM_ROIS
from .options import IocOptions
from .server import build_ioc_class

log = logging.getLogger(__name__)

PREFIX = "$(P)"
PV_REFERENCE = "pvs.md"
SCREEN_DIR = "screens"
DEFAULT_CHANNELS = IocOptions.channels

TYPE_NAMES = {ChannelType.DOUBLE: "double", ChannelType.LONG: "long", ChannelType.INT: "short",
              ChannelType.ENUM: "enum", ChannelType.STRING: "string", ChannelType.CHAR: "char",
              ChannelType.FLOAT: "float"}

# channel 1 / ROI 1 names, generalised to {n} / {r}; applied in this order
_CHANNEL_NAME_RULES = (
    (re.compile(r"^MCA1ROI:1:"), "MCA{n}ROI:{r}:"),
    (re.compile(r"^MCA1ROI:"), "MCA{n}ROI:"),
    (re.compile(r"^MCASUM1:"), "MCASUM{n}:"),
    (re.compile(r"^MCA1:"), "MCA{n}:"),
    (re.compile(r"^ROISUM1:"), "ROISUM{n}:"),
    (re.compile(r"^ROI1:"), "ROI{n}:"),
    (re.compile(r"^C1SCA:"), "C{n}SCA:"),
    (re.compile(r"^C1:"), "C{n}:"),
    (re.compile(r"^det1:C1_"), "det1:C{n}_"),
)


def build_group(channels: int = 1, prefix: str = PREFIX):
    """An instance of the IOC's root group (simulated), with no detector and no threads."""
    options = IocOptions(prefix=prefix, channels=channels, settings_file=None, stream=None,
                         monitor=None)
    cls = build_ioc_class(options)
    return cls(prefix=prefix, options=options, driver=None)


def generic_name(suffix: str) -> str:
    """`MCA1ROI:1:Total_RBV` -> `MCA{n}ROI:{r}:Total_RBV`; other names unchanged."""
    for pattern, replacement in _CHANNEL_NAME_RULES:
        if pattern.match(suffix):
            return pattern.sub(replacement, suffix, count=1)
    return suffix


def generic_text(text: str) -> str:
    """Channel-1 names quoted inside a description, generalised like generic_name."""
    for pattern, replacement in _CHANNEL_NAME_RULES:
        text = re.sub(r"(?<![\w{:])" + pattern.pattern.lstrip("^"), replacement, text)
    return text


@dataclass
class PvRow:
    name: str
    type: str
    access: str
    units: str
    limits: str
    choices: str
    doc: str


def _cell(text: str) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def _number(value) -> str:
    if isinstance(value, float) and value.is_integer() and abs(value) < 1e15:
        return str(int(value))
    return f"{value:g}" if isinstance(value, float) else str(value)


def describe(pv, suffix: str) -> PvRow:
    """One reference row from a caproto ChannelData."""
    spec = pv.pvspec
    kind = TYPE_NAMES.get(pv.data_type, str(pv.data_type))
    length = pv.max_length or 1
    if pv.data_type == ChannelType.CHAR:
        kind = f"char[{length}] (text)"
    elif length > 1:
        kind = f"{kind}[{length}]"
    units = getattr(pv, "units", "") or ""
    limits = ""
    low, high = getattr(pv, "lower_ctrl_limit", 0), getattr(pv, "upper_ctrl_limit", 0)
    if (low, high) != (0, 0) and low is not None:
        limits = f"{_number(low)} .. {_number(high)}"
    choices = ""
    if pv.data_type == ChannelType.ENUM:
        choices = ", ".join(f"{i} {s}" for i, s in enumerate(pv.enum_strings))
    return PvRow(name=generic_name(suffix), type=kind, access="RO" if spec.read_only else "RW",
                 units=units, limits=limits, choices=choices, doc=generic_text(spec.doc or ""))


@dataclass
class Section:
    title: str
    intro: str
    rows: list


def _rows(group, prefix: str, attrs: Iterable[str]) -> list:
    out = []
    for attr in attrs:
        pv = group.attr_pvdb[attr]
        out.append(describe(pv, pv.pvname[len(prefix):]))
    return out


from .channel_pvs import PLUGINS  # noqa: E402  (the plugin prefixes of a channel)


def sections(root) -> list:
    """The reference, grouped as the IOC groups its PVs (see server.build_ioc_class)."""
    prefix = root.prefix
    own = [a for a in root.attr_pvdb if "." not in a]
    det, hdf, ch = root.groups["det"], root.groups["hdf"], root.groups["ch1"]
    det_own = [a for a in det.attr_pvdb if not a.startswith("ad_")]
    det_compat = [a for a in det.attr_pvdb if a.startswith("ad_")]
    hdf_own = [a for a in hdf.attr_pvdb if not a.startswith("ad_")]
    hdf_compat = [a for a in hdf.attr_pvdb if a.startswith("ad_")]
    ch_own = [a for a in ch.attr_pvdb if "." not in a]
    roi = ch.groups["roi1"]
    out = [
        Section("Driver `det1:`",
                "Acquisition control, detector configuration and status "
                "(group `DetectorPVs`, ioc/detector_pvs.py; the uptime PV belongs to the root group).",
                _rows(det, prefix, det_own) + _rows(root, prefix, own)),
        Section("Driver `det1:`, areaDetector compatibility",
                "ADBase / CamBase PVs that ophyd's camera classes connect to. They have no "
                "meaning for an Xspress3 and are served as documented no-ops "
                "(ioc/adbase_pvs.py).",
                _rows(det, prefix, det_compat)),
        Section("Per channel `n`",
                "One group per channel, n = 1 .. `--channels` (group `Channel{n}PVs`, "
                "ioc/channel_pvs.py). SCA k of `C{n}SCA:{k}:Value_RBV`: "
                + ", ".join(f"{k} {name}" for k, name in enumerate(enums.SCA_NAMES)) + ".",
                _rows(ch, prefix, ch_own)),
        Section("Per ROI `r` of channel `n`",
                f"r = 1 .. {NUM_ROIS} (group `RoiPVs`, ioc/channel_pvs.py). An ROI covers bins "
                "[MinX, MinX + SizeX) of the channel's spectrum.",
                _rows(roi, prefix, list(roi.attr_pvdb))),
    ]
    for attr, plugin_prefix, kind in PLUGINS + (("proc_plugin", "Proc1:", "Process"),):
        plugin = ch.groups[attr]
        out.append(Section(
            f"areaDetector plugin `{plugin_prefix}`",
            f"NDPluginBase PVs ({kind} kind) of the areaDetector plugin this prefix stands for, "
            "declared once in ioc/plugin_pvs.py; counters, rate, EnableCallbacks and array "
            "sizes are this plugin's own (ioc/plugin_stats.py), the rest say what they are." +
            (" Proc1: exists once (served by channel 1's group)." if kind == "Process" else ""),
            _rows(plugin, prefix, list(plugin.attr_pvdb))))
    out += [
        Section("File writer `HDF1:`",
                "The built-in HDF5 writer, named as the areaDetector NDFileHDF5 plugin "
                "(group `FilePVs`, ioc/file_pvs.py); the file layout is in hdf5-layout.md.",
                _rows(hdf, prefix, hdf_own)),
    ]
    if hdf_compat:
        out.append(Section("File writer `HDF1:`, areaDetector compatibility",
                           "NDPluginBase / NDFile / NDFileHDF5 PVs that ophyd's HDF5 plugin "
                           "classes connect to, served as documented no-ops or fixed values "
                           "(ioc/adbase_pvs.py).",
                           _rows(hdf, prefix, hdf_compat)))
    if "sim" in root.groups:
        sim = root.groups["sim"]
        out.append(Section("Simulator `SIM:`",
                           "Present only when the built-in simulator runs (no `--sdk`): "
                           "drive external-trigger modes and inject SDK faults over Channel "
                           "Access (group `SimPVs`, ioc/sim_pvs.py).",
                           _rows(sim, prefix, list(sim.attr_pvdb))))
    return out


def pv_counts() -> tuple[int, int, int, int]:
    """(PVs outside channels with the simulator, of which SIM:, per channel without ROIs, per ROI)."""
    one, two = build_group(1), build_group(2)
    per_channel = len(two.pvdb) - len(one.pvdb)
    roi = len(one.groups["ch1.roi1"].pvdb)
    fixed = len(one.pvdb) - per_channel
    return fixed, len(one.groups["sim"].pvdb), per_channel - NUM_ROIS * roi, roi


def pv_reference() -> str:
    """The text of db_docs/pvs.md."""
    root = build_group(1)
    fixed, sim, per_channel, per_roi = pv_counts()
    lines = [
        "# PV reference",
        "",
        "Generated by `xspress3-docs` from the IOC's PVGroups; do not edit by hand "
        "(`xspress3-docs --check` and tests/docs fail when this file and the code differ).",
        "",
        "Every name follows the IOC prefix `$(P)` (`--prefix`, e.g. `XSP3:`). `n` is a channel "
        f"number (1 .. `--channels`, default {DEFAULT_CHANNELS}), `r` an ROI number "
        f"(1 .. {NUM_ROIS}). RW PVs accept puts; a rejected put fails the put and says why in "
        "`det1:StatusMessage_RBV`. Setpoints with an `_RBV` twin show the value in force "
        "there. Limits are the control limits: puts outside them are rejected.",
        "",
        f"With `N` channels the IOC serves {fixed} + N × ({per_channel} + {NUM_ROIS} × "
        f"{per_roi}) PVs, {sim} of them (`SIM:`) only with the simulator.",
        "",
        "Columns: type (`char[256] (text)` is a CHAR waveform holding a string, as "
        "areaDetector uses for paths and messages), access, units, limits, enum choices "
        "(index and string), description.",
        "",
        "## Contents",
        "",
    ]
    parts = sections(root)
    for section in parts:
        anchor = re.sub(r"[^a-z0-9 -]", "", section.title.lower()).replace(" ", "-")
        lines.append(f"- [{section.title}](#{anchor}) ({len(section.rows)} PVs)")
    for section in parts:
        lines += ["", f"## {section.title}", "", section.intro, "",
                  "| PV | type | access | units | limits | choices | description |",
                  "|---|---|---|---|---|---|---|"]
        for row in section.rows:
            lines.append("| " + " | ".join(_cell(v) for v in (
                f"`{row.name}`", row.type, row.access, row.units, row.limits, row.choices,
                row.doc)) + " |")
    return "\n".join(lines) + "\n"


def generate(channels: int = DEFAULT_CHANNELS) -> dict:
    """{path relative to db_docs: text} of every generated file."""
    out = {PV_REFERENCE: pv_reference()}
    root = build_group(channels)
    for name, text in screens.build_screens(root.pvdb, channels).items():
        out[f"{SCREEN_DIR}/{name}"] = text
    return out


def differences(files: dict, out_dir: Path) -> list:
    """Relative paths whose checked-in copy is missing or differs, plus stale screens."""
    changed = []
    for rel, text in files.items():
        path = out_dir / rel
        if not path.is_file() or path.read_text(encoding="utf-8") != text:
            changed.append(rel)
    screen_dir = out_dir / SCREEN_DIR
    if screen_dir.is_dir():
        for path in sorted(screen_dir.glob("*.bob")):
            rel = f"{SCREEN_DIR}/{path.name}"
            if rel not in files:
                changed.append(rel)
    return changed


def write(files: dict, out_dir: Path) -> list:
    """Write the files that changed; returns their relative paths."""
    changed = differences(files, out_dir)
    for rel in changed:
        path = out_dir / rel
        if rel in files:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(files[rel], encoding="utf-8")
        else:
            path.unlink()
    return changed


def main(argv: Optional[list] = None) -> int:
    p = argparse.ArgumentParser(prog="xspress3-docs", description=__doc__.splitlines()[0])
    p.add_argument("--out", type=Path, default=Path("db_docs"),
                   help="db_docs directory to write or check (default ./db_docs)")
    p.add_argument("--channels", type=int, default=DEFAULT_CHANNELS,
                   help=f"channels on the screens (default {DEFAULT_CHANNELS})")
    p.add_argument("--check", action="store_true",
                   help="write nothing; exit 1 if a file differs from what the code generates")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    files = generate(args.channels)
    if args.check:
        changed = differences(files, args.out)
        for rel in changed:
            log.error("out of date: %s", args.out / rel)
        if changed:
            log.error("run `xspress3-docs --out %s` and commit the result", args.out)
            return 1
        log.info("%d files up to date in %s", len(files), args.out)
        return 0
    changed = write(files, args.out)
    log.info("%d of %d files written to %s", len(changed), len(files), args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
