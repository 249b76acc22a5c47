"""Phoebus display (.bob) screens of the IOC, generated from its PV definitions.

A small writer of our own: each widget helper returns an ElementTree element in
the Phoebus display-builder format, and the screen builders lay them out. The
PV prefix is the macro `$(P)` (and the channel the macro `$(N)` on the
per-channel screen), so one set of files serves every IOC. Every PV a screen
names is checked against the PV database of the IOC class while the screen is
built, so a renamed PV breaks generation instead of leaving a dead widget.
"""
from __future__ import annotations

import logging
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from typing import Iterable, Optional, Sequence

from . import enums
from .channel_pvs import NUM_ROIS

log = logging.getLogger(__name__)

PREFIX_MACRO = "$(P)"
CHANNEL_MACRO = "$(N)"
ROW = 24          # row pitch of forms and tables, pixels
HEIGHT = 20       # widget height
MAIN = "xspress3_main.bob"
SPECTRUM = "xspress3_spectrum.bob"
CHANNELS = "xspress3_channels.bob"
SIMULATOR = "xspress3_sim.bob"
MARKED_ROIS = 8   # ROIs whose MinX is marked on the spectrum plot
TABLE_ROIS = 4    # ROI totals shown per channel on the channels table
TRACE_COLORS = ((0, 0, 255), (200, 0, 0), (0, 140, 0), (160, 0, 160), (230, 120, 0),
                (0, 150, 150), (120, 90, 40), (90, 90, 90))


# ---- widget helpers -----------------------------------------------------------------

def _sub(parent: ET.Element, tag: str, text: Optional[object] = None, **attrib) -> ET.Element:
    el = ET.SubElement(parent, tag, attrib)
    if text is not None:
        el.text = str(text)
    return el


def _color(parent: ET.Element, tag: str, rgb: Sequence[int]) -> None:
    holder = _sub(parent, tag)
    r, g, b = rgb
    _sub(holder, "color", red=str(r), green=str(g), blue=str(b))


def _widget(kind: str, version: str, name: str, x: int, y: int, w: int, h: int) -> ET.Element:
    el = ET.Element("widget", {"type": kind, "version": version})
    _sub(el, "name", name)
    for tag, value in (("x", x), ("y", y), ("width", w), ("height", h)):
        _sub(el, tag, value)
    return el


def label(text: str, x: int, y: int, w: int, h: int = HEIGHT, *, bold: bool = False,
          align: int = 0) -> ET.Element:
    el = _widget("label", "2.0.0", f"Label {text}", x, y, w, h)
    _sub(el, "text", text)
    if bold:
        font = _sub(el, "font")
        _sub(font, "font", family="Liberation Sans", style="BOLD", size="14.0")
    _sub(el, "horizontal_alignment", align)
    _sub(el, "vertical_alignment", 1)
    return el


def textupdate(pv: str, x: int, y: int, w: int, h: int = HEIGHT, *,
               show_units: bool = True) -> ET.Element:
    el = _widget("textupdate", "2.0.0", f"Text Update {pv}", x, y, w, h)
    _sub(el, "pv_name", pv)
    _sub(el, "show_units", str(show_units).lower())
    _sub(el, "vertical_alignment", 1)
    return el


def textentry(pv: str, x: int, y: int, w: int, h: int = HEIGHT) -> ET.Element:
    el = _widget("textentry", "3.0.0", f"Text Entry {pv}", x, y, w, h)
    _sub(el, "pv_name", pv)
    _sub(el, "show_units", "false")
    return el


def combo(pv: str, x: int, y: int, w: int, h: int = HEIGHT) -> ET.Element:
    el = _widget("combo", "2.0.0", f"Combo Box {pv}", x, y, w, h)
    _sub(el, "pv_name", pv)
    return el


def led(pv: str, x: int, y: int, size: int = HEIGHT) -> ET.Element:
    el = _widget("led", "2.0.0", f"LED {pv}", x, y, size, size)
    _sub(el, "pv_name", pv)
    _color(el, "off_color", (60, 100, 60))
    _color(el, "on_color", (0, 255, 0))
    return el


def write_button(text: str, pv: str, value: object, x: int, y: int, w: int,
                 h: int = HEIGHT + 4) -> ET.Element:
    """A button that writes `value` to `pv`."""
    el = _widget("action_button", "3.0.0", f"Action Button {text}", x, y, w, h)
    actions = _sub(el, "actions")
    action = _sub(actions, "action", type="write_pv")
    _sub(action, "pv_name", pv)
    _sub(action, "value", value)
    _sub(action, "description", text)
    _sub(el, "pv_name", pv)
    _sub(el, "text", text)
    return el


def open_button(text: str, file: str, x: int, y: int, w: int, h: int = HEIGHT + 4,
                macros: Optional[dict] = None) -> ET.Element:
    """A button that opens another display in a new window (macros are passed on)."""
    el = _widget("action_button", "3.0.0", f"Action Button {text}", x, y, w, h)
    actions = _sub(el, "actions")
    action = _sub(actions, "action", type="open_display")
    _sub(action, "file", file)
    macro_el = _sub(action, "macros")
    for key, value in (macros or {}).items():
        _sub(macro_el, key, value)
    _sub(action, "target", "window")
    _sub(action, "description", text)
    _sub(el, "text", text)
    return el


@dataclass
class Trace:
    y_pv: str
    name: str
    axis: int = 0
    color: Sequence[int] = (0, 0, 255)


def xyplot(name: str, x: int, y: int, w: int, h: int, traces: Sequence[Trace], *,
           x_title: str, y_titles: Sequence[str], markers: Sequence[str] = ()) -> ET.Element:
    """An XY plot of waveforms against their index, with optional vertical markers."""
    el = _widget("xyplot", "3.0.0", name, x, y, w, h)
    _sub(el, "title", name)
    _sub(el, "show_toolbar", "true")
    _sub(el, "show_legend", "true")
    x_axis = _sub(el, "x_axis")
    _sub(x_axis, "title", x_title)
    _sub(x_axis, "autoscale", "true")
    _sub(x_axis, "log_scale", "false")
    _sub(x_axis, "show_grid", "true")
    y_axes = _sub(el, "y_axes")
    for index, title in enumerate(y_titles):
        axis = _sub(y_axes, "y_axis")
        _sub(axis, "title", title)
        _sub(axis, "autoscale", "true")
        _sub(axis, "log_scale", "false")
        _sub(axis, "show_grid", "true" if index == 0 else "false")
        _sub(axis, "on_right", "false" if index == 0 else "true")
    traces_el = _sub(el, "traces")
    for trace in traces:
        t = _sub(traces_el, "trace")
        _sub(t, "name", trace.name)
        _sub(t, "x_pv", "")
        _sub(t, "y_pv", trace.y_pv)
        _sub(t, "err_pv", "")
        _sub(t, "axis", trace.axis)
        _sub(t, "trace_type", 2)  # step: one level per bin
        _color(t, "color", trace.color)
        _sub(t, "line_width", 1)
        _sub(t, "point_type", 0)
        _sub(t, "point_size", 4)
        _sub(t, "visible", "true")
    if markers:
        markers_el = _sub(el, "marker")
        for index, pv in enumerate(markers):
            m = _sub(markers_el, "marker")
            _color(m, "color", TRACE_COLORS[index % len(TRACE_COLORS)])
            _sub(m, "pv_name", pv)
            _sub(m, "interactive", "false")
    return el


@dataclass
class Display:
    """One .bob file: a title, size, default macros and widgets."""

    name: str
    width: int
    height: int
    macros: dict = field(default_factory=dict)
    widgets: list = field(default_factory=list)

    def add(self, *widgets: ET.Element) -> None:
        self.widgets.extend(widgets)

    def to_xml(self) -> str:
        root = ET.Element("display", {"version": "2.0.0"})
        _sub(root, "name", self.name)
        if self.macros:
            macros = _sub(root, "macros")
            for key, value in self.macros.items():
                _sub(macros, key, value)
        _sub(root, "width", self.width)
        _sub(root, "height", self.height)
        for widget in self.widgets:
            root.append(widget)
        ET.indent(root, space="  ")
        return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(root, encoding="unicode") + "\n"


def pv_names(xml_text: str) -> list[str]:
    """Every PV name a display refers to (widgets, traces, markers, write actions)."""
    root = ET.fromstring(xml_text)
    names = []
    for tag in ("pv_name", "y_pv", "x_pv", "err_pv"):
        for el in root.iter(tag):
            if el.text and el.text.strip():
                names.append(el.text.strip())
    return names


def display_macros(xml_text: str) -> dict:
    root = ET.fromstring(xml_text)
    macros = root.find("macros")
    return {} if macros is None else {el.tag: el.text or "" for el in macros}


def linked_displays(xml_text: str) -> list[tuple[str, dict]]:
    """(file, macros) of every open-display action."""
    root = ET.fromstring(xml_text)
    out = []
    for action in root.iter("action"):
        if action.get("type") == "open_display":
            macros = action.find("macros")
            out.append((action.findtext("file", ""),
                        {} if macros is None else {el.tag: el.text or "" for el in macros}))
    return out


# ---- layout helpers -------------------------------------------------------------------

class Form:
    """A column of rows: label | setpoint | readback, placed from (x, y) down."""

    def __init__(self, x: int, y: int, label_w: int = 130, field_w: int = 120):
        self.x, self.y = x, y
        self.label_w, self.field_w = label_w, field_w
        self.widgets: list[ET.Element] = []

    def _cols(self) -> tuple[int, int]:
        set_x = self.x + self.label_w + 5
        return set_x, set_x + self.field_w + 5

    def row(self, text: str, setpoint: Optional[ET.Element] = None,
            readback: Optional[ET.Element] = None) -> None:
        self.widgets.append(label(text, self.x, self.y, self.label_w))
        for el in (setpoint, readback):
            if el is not None:
                self.widgets.append(el)
        self.y += ROW

    def entry(self, text: str, pv: str, rbv: Optional[str] = None) -> None:
        set_x, rbv_x = self._cols()
        self.row(text, textentry(pv, set_x, self.y, self.field_w),
                 textupdate(rbv, rbv_x, self.y, self.field_w) if rbv else None)

    def choice(self, text: str, pv: str, rbv: Optional[str] = None) -> None:
        set_x, rbv_x = self._cols()
        self.row(text, combo(pv, set_x, self.y, self.field_w),
                 textupdate(rbv, rbv_x, self.y, self.field_w) if rbv else None)

    def show(self, text: str, pv: str, width: Optional[int] = None) -> None:
        set_x, _ = self._cols()
        self.row(text, textupdate(pv, set_x, self.y, width or self.field_w))

    def header(self, text: str) -> None:
        self.widgets.append(label(text, self.x, self.y, self.label_w + 2 * self.field_w + 10,
                                  bold=True))
        self.y += ROW + 2


# ---- the screens --------------------------------------------------------------------------

def _p(suffix: str) -> str:
    return PREFIX_MACRO + suffix


def main_screen(channels: int, simulated: bool) -> Display:
    """Acquire, trigger mode, exposure, frames, state, status, counters, file writing."""
    d = Display("Xspress3 $(P)", 1010, 700, macros={"P": "XSP3:"})
    d.add(label("Xspress3  $(P)", 10, 8, 600, 28, bold=True))

    acq = Form(10, 48)
    acq.header("Acquisition")
    set_x, rbv_x = acq._cols()
    acq.row("Acquire", write_button("Start", _p("det1:Acquire"), 1, set_x, acq.y - 2, 58),
            write_button("Stop", _p("det1:Acquire"), 0, set_x + 62, acq.y - 2, 58))
    acq.widgets.append(led(_p("det1:Acquire_RBV"), rbv_x, acq.y - ROW))
    acq.widgets.append(textupdate(_p("det1:Acquire_RBV"), rbv_x + 25, acq.y - ROW, 95))
    acq.choice("Trigger mode", _p("det1:TriggerMode"), _p("det1:TriggerMode_RBV"))
    acq.entry("Exposure (s)", _p("det1:AcquireTime"), _p("det1:AcquireTime_RBV"))
    acq.entry("Frames", _p("det1:NumImages"), _p("det1:NumImages_RBV"))
    acq.show("Detector state", _p("det1:DetectorState_RBV"))
    acq.show("Status", _p("det1:StatusMessage_RBV"), width=2 * acq.field_w + 5)
    acq.row("Soft trigger", write_button("Trigger", _p("det1:SoftTrigger"), 1, set_x, acq.y - 2,
                                         acq.field_w))
    acq.row("Erase", write_button("Erase", _p("det1:ERASE"), 1, set_x, acq.y - 2, acq.field_w))
    acq.choice("Erase on start", _p("det1:EraseOnStart"), _p("det1:EraseOnStart_RBV"))
    acq.choice("Deadtime correction", _p("det1:CTRL_DTC"), _p("det1:CTRL_DTC_RBV"))
    acq.entry("Update rate (Hz)", _p("det1:UpdateRate"), _p("det1:UpdateRate_RBV"))

    acq.header("Counters")
    acq.show("Frames read", _p("det1:ArrayCounter_RBV"))
    acq.show("Frames this run", _p("det1:NumImagesCounter_RBV"))
    acq.show("Frames on detector", _p("det1:FRAME_COUNT_RBV"))
    acq.show("Frames lost", _p("det1:FramesLost_RBV"))
    acq.show("Stream endpoint", _p("det1:StreamEndpoint_RBV"), width=2 * acq.field_w + 5)
    acq.show("Stream receivers", _p("det1:StreamReceivers_RBV"))
    acq.show("Frames streamed", _p("det1:StreamFramesSent_RBV"))
    acq.show("Stream frames lost", _p("det1:StreamFramesLost_RBV"))
    acq.show("Uptime (s)", _p("det1:Uptime_RBV"))
    d.add(*acq.widgets)

    files = Form(400, 48, label_w=120, field_w=230)
    files.header("File writing (HDF1:)")
    set_x, rbv_x = files._cols()
    files.entry("Directory", _p("HDF1:FilePath"), _p("HDF1:FilePath_RBV"))
    files.entry("File name", _p("HDF1:FileName"), _p("HDF1:FileName_RBV"))
    files.entry("Template", _p("HDF1:FileTemplate"), _p("HDF1:FileTemplate_RBV"))
    files.entry("File number", _p("HDF1:FileNumber"), _p("HDF1:FileNumber_RBV"))
    files.choice("Auto increment", _p("HDF1:AutoIncrement"), _p("HDF1:AutoIncrement_RBV"))
    files.entry("Create directory", _p("HDF1:CreateDirectory"), _p("HDF1:CreateDirectory_RBV"))
    files.entry("Frames per file", _p("HDF1:NumCapture"), _p("HDF1:NumCapture_RBV"))
    files.choice("Compression", _p("HDF1:Compression"), _p("HDF1:Compression_RBV"))
    files.choice("Write to files", _p("HDF1:EnableCallbacks"), _p("HDF1:EnableCallbacks_RBV"))
    files.row("Capture", write_button("Capture", _p("HDF1:Capture"), 1, set_x, files.y - 2, 112),
              write_button("Stop", _p("HDF1:Capture"), 0, set_x + 118, files.y - 2, 112))
    files.widgets.append(led(_p("HDF1:Capture_RBV"), rbv_x, files.y - ROW))
    files.widgets.append(textupdate(_p("HDF1:Capture_RBV"), rbv_x + 25, files.y - ROW, 205))
    files.show("Frames written", _p("HDF1:NumCaptured_RBV"))
    files.show("Frames dropped", _p("HDF1:FramesDropped_RBV"))
    files.show("Directory exists", _p("HDF1:FilePathExists_RBV"))
    files.show("File", _p("HDF1:FullFileName_RBV"), width=2 * files.field_w + 5)
    files.show("Write status", _p("HDF1:WriteStatus"))
    files.show("Message", _p("HDF1:WriteMessage"), width=2 * files.field_w + 5)

    files.header("Detector")
    files.show("Model", _p("det1:Model_RBV"))
    files.show("Simulated", _p("det1:Simulation_RBV"))
    files.show("Connection", _p("det1:CONNECTED"))
    files.entry("Channels read", _p("det1:NUM_CHANNELS"), _p("det1:NUM_CHANNELS_RBV"))
    files.show("Frame memory", _p("det1:MAX_FRAMES_RBV"))
    files.row("Commands",
              write_button("Connect", _p("det1:CONNECT"), 1, set_x, files.y - 2, 74),
              write_button("Disconnect", _p("det1:DISCONNECT"), 1, set_x + 78, files.y - 2, 74))
    files.widgets.append(write_button("Reset", _p("det1:RESET"), 1, set_x + 156, files.y - ROW - 2, 74))
    d.add(*files.widgets)

    y = max(acq.y, files.y) + 10
    x = 10
    for n in range(1, channels + 1):
        d.add(open_button(f"Spectrum {n}", SPECTRUM, x, y, 100, macros={"P": "$(P)", "N": n}))
        x += 105
    d.add(open_button("All channels", CHANNELS, x, y, 110, macros={"P": "$(P)"}))
    x += 115
    if simulated:
        d.add(open_button("Simulator", SIMULATOR, x, y, 100, macros={"P": "$(P)"}))
    d.height = y + 40
    return d


def spectrum_screen() -> Display:
    """Spectrum of channel $(N) with its ROIs: a plot and the ROI table."""
    d = Display("Xspress3 $(P) channel $(N)", 1280, 0, macros={"P": "XSP3:", "N": "1"})
    ch = CHANNEL_MACRO
    d.add(label("Xspress3  $(P)  channel $(N)", 10, 8, 600, 28, bold=True))
    traces = [Trace(_p(f"MCA{ch}:ArrayData"), "latest frame", 0, (0, 0, 255)),
              Trace(_p(f"MCASUM{ch}:ArrayData"), "sum since erase", 1, (200, 0, 0))]
    markers = [_p(f"MCA{ch}ROI:{r}:MinX_RBV") for r in range(1, MARKED_ROIS + 1)]
    d.add(xyplot(f"MCA{ch}", 10, 44, 640, 420, traces, x_title="bin",
                 y_titles=("counts", "sum counts"), markers=markers))
    d.add(label(f"Markers: MinX of ROIs 1-{MARKED_ROIS}", 10, 468, 640))

    stats = Form(10, 496, label_w=150, field_w=110)
    stats.header("Deadtime and scalers")
    stats.show("Deadtime factor", _p(f"C{ch}:DTFactor_RBV"))
    stats.show("Deadtime (%)", _p(f"C{ch}:DeadTime_RBV"))
    stats.entry("Event width (ticks)", _p(f"C{ch}:EventWidth"), _p(f"C{ch}:EventWidth_RBV"))
    for k, name in enumerate(enums.SCA_NAMES[:9]):
        stats.show(f"SCA {k} {name}", _p(f"C{ch}SCA:{k}:Value_RBV"))
    d.add(*stats.widgets)

    cols = (("ROI", 40), ("Name", 110), ("Use", 70), ("MinX", 70), ("SizeX", 70),
            ("Total", 100), ("Net", 100))
    x0, y = 670, 44
    x = x0
    for title, width in cols:
        d.add(label(title, x, y, width, bold=True))
        x += width + 5
    for r in range(1, NUM_ROIS + 1):
        y += ROW
        base = f"MCA{ch}ROI:{r}:"
        widths = [w for _, w in cols]
        xs = [x0 + sum(widths[:i]) + 5 * i for i in range(len(widths))]
        d.add(label(str(r), xs[0], y, widths[0], align=2),
              textentry(_p(base + "Name"), xs[1], y, widths[1]),
              combo(_p(base + "Use"), xs[2], y, widths[2]),
              textentry(_p(base + "MinX"), xs[3], y, widths[3]),
              textentry(_p(base + "SizeX"), xs[4], y, widths[4]),
              textupdate(_p(base + "Total_RBV"), xs[5], y, widths[5], show_units=False),
              textupdate(_p(base + "Net_RBV"), xs[6], y, widths[6], show_units=False))
    d.height = max(y, stats.y) + 40
    return d


def channels_screen(channels: int) -> Display:
    """Scalers, deadtime and the first ROI totals of every channel, one row each."""
    cols = [("Ch", 30)]
    cols += [(name, 86) for name in enums.SCA_NAMES[:8]]
    cols += [("DTFactor", 80), ("Deadtime %", 80)]
    cols += [(f"ROI {r}", 86) for r in range(1, TABLE_ROIS + 1)]
    cols += [("", 80)]
    widths = [w for _, w in cols]
    xs = [10 + sum(widths[:i]) + 4 * i for i in range(len(widths))]
    d = Display("Xspress3 $(P) channels", xs[-1] + widths[-1] + 10, 0, macros={"P": "XSP3:"})
    d.add(label("Xspress3  $(P)  all channels", 10, 8, 600, 28, bold=True))
    y = 44
    for (title, _), x, w in zip(cols, xs, widths):
        d.add(label(title, x, y, w, bold=True, align=1))
    for n in range(1, channels + 1):
        y += ROW
        row = [label(str(n), xs[0], y, widths[0], align=1)]
        pvs = [f"C{n}SCA:{k}:Value_RBV" for k in range(8)]
        pvs += [f"C{n}:DTFactor_RBV", f"C{n}:DeadTime_RBV"]
        pvs += [f"MCA{n}ROI:{r}:Total_RBV" for r in range(1, TABLE_ROIS + 1)]
        for pv, x, w in zip(pvs, xs[1:], widths[1:]):
            row.append(textupdate(_p(pv), x, y, w, show_units=False))
        row.append(open_button("Spectrum", SPECTRUM, xs[-1], y - 2, widths[-1],
                               macros={"P": "$(P)", "N": n}))
        d.add(*row)
    d.height = y + 40
    return d


def simulator_screen() -> Display:
    """The simulator's controls: triggers, gate, count rate, seed, fault injection."""
    d = Display("Xspress3 $(P) simulator", 420, 0, macros={"P": "XSP3:"})
    d.add(label("Xspress3  $(P)  simulator", 10, 8, 400, 28, bold=True))
    f = Form(10, 48, label_w=150, field_w=120)
    set_x, _ = f._cols()
    f.entry("Trigger pulses", _p("SIM:Trigger"))
    f.choice("Gate", _p("SIM:Gate"))
    f.entry("Count rate (cps)", _p("SIM:CountRate"))
    f.entry("Seed", _p("SIM:Seed"))
    f.header("Fault injection")
    f.entry("SDK function", _p("SIM:FaultFunction"))
    f.entry("Error code", _p("SIM:FaultCode"))
    f.entry("After calls", _p("SIM:FaultAfter"))
    f.row("", write_button("Inject", _p("SIM:InjectFault"), 1, set_x, f.y - 2, 58),
          write_button("Clear", _p("SIM:ClearFaults"), 1, set_x + 62, f.y - 2, 58))
    d.add(*f.widgets)
    d.height = f.y + 30
    return d


def build_screens(pvdb_names: Iterable[str], channels: int, simulated: bool = True) -> dict:
    """{file name: .bob text}. `pvdb_names` are the IOC's PV names with prefix `$(P)`;
    a screen naming a PV outside them raises ValueError."""
    known = set(pvdb_names)
    screens = {MAIN: main_screen(channels, simulated), SPECTRUM: spectrum_screen(),
               CHANNELS: channels_screen(channels)}
    if simulated:
        screens[SIMULATOR] = simulator_screen()
    out = {}
    for name, display in screens.items():
        text = display.to_xml()
        macros = display_macros(text)
        for pv in pv_names(text):
            resolved = pv.replace(CHANNEL_MACRO, macros.get("N", "1"))
            if resolved not in known:
                raise ValueError(f"{name}: {pv} is not a PV of the IOC")
        out[name] = text
        log.debug("screen %s: %d PV references", name, len(pv_names(text)))
    return out
