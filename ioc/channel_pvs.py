"""Per-channel PVs: spectra, sums, ROIs with their time series, SCAs and deadtime.

A channel's PVs sit under several areaDetector prefixes (`MCA{n}:`, `MCASUM{n}:`,
`MCA{n}ROI:{r}:`, `C{n}SCA:{k}:`, `C{n}:`, `det1:C{n}_...`), so one class per
channel number is made by `channel_group(n, ...)` with the full suffixes spelled
out. ROIs are a SubGroup each. Logic lives in the root group.
"""
from __future__ import annotations

import asyncio
import functools
import time

from caproto import ChannelType
from caproto.server import SubGroup, pvproperty

from xspress3.vocabulary import DEFAULT_BINS, NUM_ROIS, NUM_SCAS
from xspress3.writers.layout import NDATTR_SUFFIXES, ndattribute_name

from . import enums, handlers
from .plugin_pvs import DET1_CHANNEL, DOCS, NDROISTAT_N, ROOT_EXTRA, declare, parse, plugin_group
from .handlers import root_of
from .pvtypes import Xsp3Group, enum_pv, record_type, root_putter, setting, text_pv

#: During a run the plugin counters and frame descriptions (ArrayCounter_RBV,
#: ArrayRate_RBV, UniqueId_RBV, TimeStamp_RBV, ...: ~45 PVs per channel) are posted at
#: most this often, the run's last frame always: they were two fifths of the PV writes
#: of each 10 Hz display update.
PLUGIN_POST_PERIOD_S = 0.5
# Updates queued per subscriber of a waveform: a slow client skips old spectra
# instead of making the server hold thousands of copies.
WAVEFORM_BACKLOG = 8
SCA_UNITS = ("ticks", "ticks", "counts", "counts", "counts", "counts", "counts", "counts",
             "ticks", "factor", "%")


#: The statistics PVs of an ROI, in the order of rois.roi_stats' columns.
_ROI_STAT_PVS = (
    ("total", "Total_RBV", 0, "Sum of the ROI bins in the latest frame."),
    ("net", "Net_RBV", 1, "Total minus the edge background (BgdWidth) in the latest frame."),
    ("min_value", "MinValue_RBV", 0, "Smallest bin in the ROI, latest frame."),
    ("max_value", "MaxValue_RBV", 0, "Largest bin in the ROI, latest frame."),
    ("mean_value", "MeanValue_RBV", 3, "Mean bin value in the ROI, latest frame."))


class _RoiBase(Xsp3Group):
    def __init__(self, *args, channel: int, index: int, **kwargs):
        self.channel = channel
        self.index = index
        super().__init__(*args, **kwargs)

    @functools.cached_property
    def stats(self) -> tuple:
        """Total, net, min, max and mean PVs (the columns of rois.roi_stats)."""
        return tuple(getattr(self, attr) for attr, *_ in _ROI_STAT_PVS)

    @functools.cached_property
    def ts_stats(self) -> tuple:
        """TSTotal, TSNet, TSMinValue, TSMaxValue, TSMeanValue (the same columns)."""
        return tuple(getattr(self, attr) for attr, *_ in _ROI_TS_PVS)

    async def apply_setting(self, attr, value):
        return await root_of(self).roi_setting(self, attr, value)

    async def on_put(self, name: str, value) -> None:
        """Generic NDROIStatN PVs (plugin_pvs) with a meaning here: Reset zeroes the statistics."""
        if name == "Reset":
            for pv in self.stats:
                await pv.write(0.0)


def _roi_namespace() -> dict:
    ns: dict = {"__doc__": "One ROI of one channel (NDROIStat-like): bins [MinX, MinX+SizeX).",
                "__module__": __name__}
    ns.update(setting("roi_name", "Name", "", dtype=ChannelType.STRING,
                      doc="ROI name; clients list ROIs up to the first blank name."))
    ns.update(setting("use", "Use", "No", enum_strings=enums.NO_YES, doc="Compute this ROI."))
    ns.update(setting("min_x", "MinX", 0, dtype=int, units="bins", lower_ctrl_limit=0,
                      upper_ctrl_limit=DEFAULT_BINS - 1, doc="First bin of the ROI."))
    ns.update(setting("size_x", "SizeX", DEFAULT_BINS, dtype=int, units="bins", lower_ctrl_limit=0,
                      upper_ctrl_limit=DEFAULT_BINS,
                      doc="Width of the ROI in bins (clipped at the last bin)."))
    ns.update(setting("bgd_width", "BgdWidth", 0, dtype=int, units="bins", lower_ctrl_limit=0,
                      upper_ctrl_limit=512,
                      doc="Bins at each edge averaged as background for Net_RBV."))
    for attr, name, precision, doc in _ROI_STAT_PVS:
        ns[attr] = pvproperty(name=name, value=0.0, read_only=True, units="counts",
                              precision=precision, doc=doc)
    return ns


RoiPVs = type("RoiPVs", (_RoiBase,), _roi_namespace())


#: The time-series PVs of an ROI, in the order of rois.STATS (the columns of roi_stats).
_ROI_TS_PVS = (
    ("ts_total", "TSTotal", "ROI total of every frame of the time series (TSCurrentPoint points)."),
    ("ts_net", "TSNet", "ROI net (Net_RBV) of every frame of the time series."),
    ("ts_min_value", "TSMinValue", "Smallest ROI bin of every frame of the time series."),
    ("ts_max_value", "TSMaxValue", "Largest ROI bin of every frame of the time series."),
    ("ts_mean_value", "TSMeanValue", "Mean ROI bin value of every frame of the time series."))
#: Description of every TSTimestamp PV (the ROIs' and C{n}SCA:TS:'s)
TS_TIMESTAMP_DOC = DOCS["TSTimestamp"]


@functools.lru_cache(maxsize=None)
def _roi_class(ts_points: int):
    """ROI group with a time series of `ts_points` points (one class per size)."""
    ns = {}
    for attr, name, doc in _ROI_TS_PVS:
        ns[attr] = pvproperty(name=name, value=[0.0], dtype=float, max_length=ts_points,
                              read_only=True, units="counts",
                              max_subscription_backlog=WAVEFORM_BACKLOG, doc=doc)
    ns["ts_timestamp"] = pvproperty(name="TSTimestamp", value=[0.0], dtype=float,
                                    max_length=ts_points, read_only=True, units="s",
                                    max_subscription_backlog=WAVEFORM_BACKLOG,
                                    doc=TS_TIMESTAMP_DOC)
    served = {p.pvspec.name for p in vars(RoiPVs).values() if isinstance(p, pvproperty)}
    served |= {p.pvspec.name for p in ns.values()}
    ns.update(declare(parse(NDROISTAT_N), ts_points=ts_points, exclude=served))
    return type(f"RoiPVs{ts_points}", (RoiPVs,), ns)


def channel_group(n: int, bins: int, ts_points: int):
    """Make the PVGroup class of channel `n` (1-based)."""
    ns: dict = {"__doc__": f"Channel {n}.", "__module__": __name__, "number": n}
    zeros = [0.0] * bins
    ns["spectrum"] = pvproperty(name=f"MCA{n}:ArrayData", value=zeros, dtype=float, max_length=bins,
                                read_only=True, units="counts", max_subscription_backlog=WAVEFORM_BACKLOG,
                                doc="Spectrum of the latest frame (all bins; bins outside the "
                                    "recorded range read 0).")
    ns["spectrum_sum"] = pvproperty(name=f"MCASUM{n}:ArrayData", value=zeros, dtype=float,
                                    max_length=bins, read_only=True, units="counts",
                                    max_subscription_backlog=WAVEFORM_BACKLOG,
                                    doc="Sum of every frame since the last erase.")
    for k, (sca, units) in enumerate(zip(enums.SCA_NAMES, SCA_UNITS)):
        ns[f"sca{k}"] = pvproperty(name=f"C{n}SCA:{k}:Value_RBV", value=0.0, read_only=True,
                                   precision=5 if k >= 9 else 0, units=units,
                                   doc=f"{sca} of the latest frame.")
    for k, (sca, units) in enumerate(zip(enums.SCA_NAMES, SCA_UNITS)):
        ns[f"sca_sum{k}"] = pvproperty(name=f"C{n}SCA:{k}:ValueSum_RBV", value=0.0, read_only=True,
                                       precision=3 if k >= 9 else 0, units=units,
                                       doc=f"{sca} summed over every frame since the last erase.")
    ns["dt_factor"] = pvproperty(name=f"C{n}:DTFactor_RBV", value=1.0, read_only=True, precision=5,
                                 units="factor",
                                 doc="Deadtime correction factor of the latest frame.")
    ns["dead_time"] = pvproperty(name=f"C{n}:DeadTime_RBV", value=0.0, read_only=True, precision=5,
                                 units="%", doc="Deadtime of the latest frame, percent.")
    ns.update(setting("event_width", f"C{n}:EventWidth", 6.0, dtype=float, units="ticks",
                      precision=0, lower_ctrl_limit=0.0, upper_ctrl_limit=100.0,
                      doc="Event width (80 MHz ticks) used in the deadtime formula."))
    ns.update(setting("threshold", f"det1:C{n}_SCA4_THRESHOLD", 0, dtype=int, units="bins",
                      lower_ctrl_limit=0, upper_ctrl_limit=bins - 1,
                      doc="Good-event threshold written to the SDK."))
    for w, sca in ((0, 5), (1, 6)):
        ns.update(setting(f"win{w}_low", f"det1:C{n}_SCA{sca}_LLM", 0, dtype=int, units="bins",
                          lower_ctrl_limit=0, upper_ctrl_limit=bins - 1,
                          doc=f"Lower bin of in-window scaler {w + 1} (SDK window {w})."))
        ns.update(setting(f"win{w}_high", f"det1:C{n}_SCA{sca}_HLM", bins - 1, dtype=int,
                          units="bins", lower_ctrl_limit=0, upper_ctrl_limit=bins - 1,
                          doc=f"Upper bin of in-window scaler {w + 1} (SDK window {w})."))
    ns["ts_control"] = enum_pv(f"MCA{n}ROI:TSControl", enums.TS_CONTROL, enums.TS_CONTROL[2],
                               put=_ts_control_put,
                               doc="Erase/Start, Start, Stop or Read the ROI time series.")
    ns["ts_num_points"] = pvproperty(name=f"MCA{n}ROI:TSNumPoints", value=ts_points,
                                     lower_ctrl_limit=1, upper_ctrl_limit=ts_points,
                                     units="frames", put=_ts_num_points_put,
                                     doc="Frames the time series holds (all channels share it); "
                                         "recording stops when it is full.")
    ns["ts_current_point"] = pvproperty(name=f"MCA{n}ROI:TSCurrentPoint", value=0, read_only=True,
                                        doc="Points recorded so far.")
    ns["ts_acquiring"] = enum_pv(f"MCA{n}ROI:TSAcquiring", enums.TS_ACQUIRING, 0, read_only=True,
                                 doc="Whether the time series is recording.")
    ns["ts_read"] = pvproperty(name=f"MCA{n}ROI:TSRead", value=0, put=root_putter(handlers.time_series_read),
                               units="n/a", doc="Any write posts the time-series waveforms now "
                                                "(they are also posted when a run ends).")
    ns["roi_reset_all"] = enum_pv(f"MCA{n}ROI:ResetAll", enums.NO_LABELS, 0, put=_reset_all_put,
                                  doc="Any write zeroes this channel's ROI Total/Net/Min/Max/Mean readbacks.")
    ns.update(_sca_time_series(n, ts_points))
    ns.update(_plugins(n, ts_points))
    for r in range(1, NUM_ROIS + 1):
        ns[f"roi{r}"] = SubGroup(_roi_class(ts_points), prefix=f"MCA{n}ROI:{r}:", channel=n,
                                 index=r, doc=f"ROI {r} of channel {n}.")
    return type(f"Channel{n}PVs", (_ChannelBase,), ns)


def _sca_time_series(n: int, ts_points: int) -> dict:
    """The NDAttribute-style SCA PVs (C{n}SCA:) and their time series (C{n}SCA:TS:).

    They share the one time series of the IOC with the ROIs (see readout.TimeSeries),
    so TSAcquire here and MCA{n}ROI:TSControl drive the same recording.
    """
    ns: dict = {}
    ns["sca_reset"] = enum_pv(f"C{n}SCA:Reset", enums.SCA_RESET, 0, put=_sca_reset_put,
                              doc="Any write zeroes this channel's C{n}SCA:{k}:ValueSum_RBV.")
    for k, (suffix, units) in enumerate(zip(NDATTR_SUFFIXES, SCA_UNITS)):
        name = ndattribute_name(n, suffix)
        ns[f"sca_attr{k}"] = text_pv(f"C{n}SCA:{k}:AttrName", name, put=root_putter(handlers.sca_attr_name),
                                     doc="Name of the attribute (as in the HDF5 NDAttributes group); "
                                         "fixed: a put of another name is rejected.")
        ns[f"sca_attr{k}_rbv"] = text_pv(f"C{n}SCA:{k}:AttrName_RBV", name, read_only=True,
                                         doc="Readback of AttrName.")
        for attr, pvname in ((f"sca_ts{k}", f"C{n}SCA:{k}:TSArrayValue"),
                             (f"sca_ts_series{k}", f"C{n}SCA:TS:{k}:TimeSeries")):
            ns[attr] = pvproperty(name=pvname, value=[0.0], dtype=float, max_length=ts_points,
                                  read_only=True, units=units, max_subscription_backlog=WAVEFORM_BACKLOG,
                                  doc=f"{enums.SCA_NAMES[k]} of every frame of the time series.")
    for k in range(NUM_SCAS):
        ns[f"sca_ts_name{k}"] = record_type(pvproperty(name=f"C{n}SCA:TS:{k}:Name", value=enums.SCA_NAMES[k],
                                           dtype=ChannelType.STRING, read_only=True,
                                           doc="Name of SCA k's time series (fixed)."),
                                               "stringout")
    ns["sca_ts_acquire"] = record_type(enum_pv(f"C{n}SCA:TS:TSAcquire", enums.TS_ACQUIRE, 0,
                                   put=root_putter(handlers.sca_ts_acquire),
                                   doc="1 erases and starts the time series, 0 stops it; reads 1 "
                                       "while it records. The put completes at once."), "busy")
    ns["sca_ts_num_points"] = pvproperty(name=f"C{n}SCA:TS:TSNumPoints", value=ts_points,
                                         lower_ctrl_limit=1, upper_ctrl_limit=ts_points, units="frames",
                                         put=_ts_num_points_put,
                                         doc="Same as MCA{n}ROI:TSNumPoints (one series for all).")
    ns["sca_ts_current_point"] = pvproperty(name=f"C{n}SCA:TS:TSCurrentPoint", value=0, read_only=True,
                                            units="frames", doc="Points held.")
    ns["sca_ts_acquiring"] = enum_pv(f"C{n}SCA:TS:TSAcquiring", enums.TS_ACQUIRING, 0, read_only=True,
                                     doc="Whether the time series is recording.")
    ns["sca_ts_read"] = enum_pv(f"C{n}SCA:TS:TSRead", enums.TS_READ, 0, put=root_putter(handlers.time_series_read),
                                doc="Any write posts the time-series waveforms now.")
    ns["sca_ts_acquire_mode"] = record_type(enum_pv(f"C{n}SCA:TS:TSAcquireMode", enums.TS_ACQUIRE_MODES, 0,
                                        put=root_putter(handlers.ts_acquire_mode),
                                        doc="Fixed length: stop when TSNumPoints frames are held; "
                                            "Circ. buffer: keep the newest TSNumPoints frames."),
                                          "mbbo")
    return ns


#: areaDetector plugin prefixes of channel n: attribute, prefix, plugin kind
PLUGINS = (("roi_plugin", "ROI{n}:", "ROI"), ("mca_plugin", "MCA{n}:", "StdArrays"),
           ("roisum_plugin", "ROISUM{n}:", "ROISum"), ("mcasum_plugin", "MCASUM{n}:", "StdArrays"),
           ("roistat_plugin", "MCA{n}ROI:", "ROIStat"), ("sca_plugin", "C{n}SCA:", "Attribute"),
           ("sca_ts_plugin", "C{n}SCA:TS:", "TimeSeries"))
#: plugin -> the plugin that feeds it frames, as areaDetector's NDArrayPort chain: a
#: disabled plugin stops the work of those downstream of it
UPSTREAM = {"mca_plugin": "roi_plugin", "mcasum_plugin": "roisum_plugin",
            "sca_ts_plugin": "sca_plugin"}
#: names the channel group itself serves under C{n}SCA:TS: (with their logic)
_SCA_TS_OWN = ("TSAcquire", "TSNumPoints", "TSCurrentPoint", "TSAcquiring", "TSRead",
               "TSAcquireMode")


def _plugins(n: int, ts_points: int) -> dict:
    """The plugin-base SubGroups of channel n, its det1:C{n}_ extras and (channel 1)
    the IOC-wide Proc1: plugin and MeanDeadTime_RBV/MaxDeadTime_RBV."""
    ns: dict = {}
    for attr, prefix, kind in PLUGINS:
        exclude = _SCA_TS_OWN if kind == "TimeSeries" else ()
        ns[attr] = SubGroup(plugin_group(kind, ts_points, exclude), prefix=prefix.format(n=n),
                            doc=f"areaDetector {kind} plugin-base PVs of channel {n}.")
    ns.update(declare(parse(DET1_CHANNEL), ts_points=ts_points, prefix=f"det1:C{n}_"))
    if n == 1:
        ns["proc_plugin"] = SubGroup(plugin_group("Process", ts_points), prefix="Proc1:",
                                     doc="areaDetector NDProcess plugin-base PVs (Proc1:).")
        ns.update(declare(parse(ROOT_EXTRA), ts_points=ts_points))
    return ns


async def _ts_num_points_put(group, instance, value):
    return await root_of(group).ts_num_points(group, value)


async def _sca_reset_put(group, instance, value):
    await root_of(group).reset_sca_sums(instance, value)
    return enums.SCA_RESET[0]


async def _reset_all_put(group, instance, value):
    await root_of(group).reset_roi_stats(instance, value)
    return enums.NO_LABELS[0]


async def _ts_control_put(group, instance, value):
    # Erase empties the series and leaves recording as it was (readout.TimeSeries.control)
    return await root_of(group).ts_control(group, value)


class _ChannelBase(Xsp3Group):
    _plugins_posted = 0.0    # time.time() of the last post of the plugin counters
    async def apply_setting(self, attr, value):
        return await root_of(self).channel_setting(self, attr, value)

    @functools.cached_property
    def plugins(self) -> list:
        """This channel's plugin groups (channel 1 also holds the IOC-wide Proc1:)."""
        out = [getattr(self, attr) for attr, _, _ in PLUGINS]
        proc = getattr(self, "proc_plugin", None)
        return out + [proc] if proc is not None else out

    def working(self, attr: str) -> bool:
        """Whether plugin `attr` (a PLUGINS attribute) does its work: it and every
        plugin feeding it have EnableCallbacks Enable."""
        up = UPSTREAM.get(attr)
        return getattr(self, attr).enabled and (up is None or self.working(up))

    def plugins_run_started(self) -> None:
        """A new acquisition: the frame numbering starts again (see plugin_stats)."""
        for plugin in self.plugins:
            plugin.stats.run_started()

    async def post_spectra(self, s, i: int) -> None:
        """Post channel i's part of a frame summary, as areaDetector's plugin chain would:
        ROI{n}: MinX/SizeX select the bins MCA{n}:ArrayData shows; a plugin with
        EnableCallbacks Disable, or fed by one (UPSTREAM), neither counts nor updates
        its PVs (pv_publisher gates the ROI statistics and SCA PVs the same way)."""
        now = time.time()
        spectrum = s.spectra[i]
        roi = self.roi_plugin
        first = min(max(int(roi.pv_named("MinX").value), 0), len(spectrum) - 1)
        size = int(roi.pv_named("SizeX").value)
        size = len(spectrum) - first if size <= 0 else size   # 0: to the last bin
        cropped = spectrum[first:first + size]
        for attr, _, _ in PLUGINS:
            up = UPSTREAM.get(attr)
            getattr(self, attr).stats.handled(s.frame_number, up is None or self.working(up))
        proc = getattr(self, "proc_plugin", None)
        if proc is not None:
            proc.stats.handled(s.frame_number)
        if self.working("mca_plugin"):
            await self.spectrum.write(cropped, verify_value=False)
        if s.sums is not None and self.working("mcasum_plugin"):
            await asyncio.sleep(0)   # let the loop serve clients between big writes
            await self.spectrum_sum.write(s.sums[i], verify_value=False)
        if not s.final and now - self._plugins_posted < PLUGIN_POST_PERIOD_S:
            return
        self._plugins_posted = now
        await asyncio.sleep(0)
        for plugin in self.plugins:
            bins = len(cropped) if plugin is roi or plugin is self.mca_plugin else len(spectrum)
            await plugin.publish(s.frame_number, bins, now)

    @functools.cached_property
    def rois(self) -> list:
        return [getattr(self, f"roi{r}") for r in range(1, NUM_ROIS + 1)]
