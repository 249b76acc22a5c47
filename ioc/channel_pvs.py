"""Per-channel PVs: spectra, sums, ROIs with their time series, SCAs and deadtime.

A channel's PVs sit under several areaDetector prefixes (`MCA{n}:`, `MCASUM{n}:`,
`MCA{n}ROI:{r}:`, `C{n}SCA:{k}:`, `C{n}:`, `det1:C{n}_...`), so one class per
channel number is made by `channel_group(n, ...)` with the full suffixes spelled
out. ROIs are a SubGroup each. Logic lives in the root group.
"""
from __future__ import annotations

import functools

from caproto import ChannelType
from caproto.server import SubGroup, pvproperty

from xspress3.writers.layout import NDATTR_SUFFIXES, ndattribute_name

from . import enums
from .pvtypes import Xsp3Group, enum_pv, root_putter, setting, text_pv

NUM_ROIS = 48
NUM_SCAS = len(enums.SCA_NAMES)
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

    @property
    def stats(self) -> tuple:
        """Total, net, min, max and mean PVs (the columns of rois.roi_stats)."""
        return tuple(getattr(self, attr) for attr, *_ in _ROI_STAT_PVS)

    async def apply_setting(self, attr, value):
        return await self.root.roi_setting(self, attr, value)


def _roi_namespace() -> dict:
    ns: dict = {"__doc__": "One ROI of one channel (NDROIStat-like): bins [MinX, MinX+SizeX).",
                "__module__": __name__}
    ns.update(setting("roi_name", "Name", "", dtype=ChannelType.STRING,
                      doc="ROI name; clients list ROIs up to the first blank name."))
    ns.update(setting("use", "Use", "No", enum_strings=enums.NO_YES, doc="Compute this ROI."))
    ns.update(setting("min_x", "MinX", 0, dtype=int, units="bins", lower_ctrl_limit=0,
                      upper_ctrl_limit=4095, doc="First bin of the ROI."))
    ns.update(setting("size_x", "SizeX", 4096, dtype=int, units="bins", lower_ctrl_limit=0,
                      upper_ctrl_limit=4096,
                      doc="Width of the ROI in bins (clipped at the last bin)."))
    ns.update(setting("bgd_width", "BgdWidth", 0, dtype=int, units="bins", lower_ctrl_limit=0,
                      upper_ctrl_limit=512,
                      doc="Bins at each edge averaged as background for Net_RBV."))
    for attr, name, precision, doc in _ROI_STAT_PVS:
        ns[attr] = pvproperty(name=name, value=0.0, read_only=True, units="counts",
                              precision=precision, doc=doc)
    return ns


RoiPVs = type("RoiPVs", (_RoiBase,), _roi_namespace())


@functools.lru_cache(maxsize=None)
def _roi_class(ts_points: int):
    """ROI group with a time series of `ts_points` points (one class per size)."""
    ts_total = pvproperty(name="TSTotal", value=[0.0], dtype=float, max_length=ts_points,
                      read_only=True, units="counts", max_subscription_backlog=WAVEFORM_BACKLOG,
                      doc="ROI total of every frame of the time series (TSCurrentPoint points).")
    return type(f"RoiPVs{ts_points}", (RoiPVs,), {"ts_total": ts_total})


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
    ns["enable_callbacks"] = enum_pv(f"MCA{n}:EnableCallbacks", enums.DISABLE_ENABLE, 1,
                                     doc="Accepted (no-op): spectra are always published.")
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
    ns.update(setting("event_width", f"C{n}:EventWidth", 6, dtype=int, units="ticks",
                      lower_ctrl_limit=0, upper_ctrl_limit=100,
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
    ns["ts_control"] = enum_pv(f"MCA{n}ROI:TSControl", enums.TS_CONTROL, 2,
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
    ns["roi_enable_callbacks"] = enum_pv(f"MCA{n}ROI:EnableCallbacks", enums.DISABLE_ENABLE, 1,
                                         doc="Accepted (no-op).")
    ns["ts_read"] = pvproperty(name=f"MCA{n}ROI:TSRead", value=0, put=root_putter("time_series_read"),
                               units="n/a", doc="Any write posts the time-series waveforms now "
                                                "(they are also posted when a run ends).")
    ns["roi_reset_all"] = enum_pv(f"MCA{n}ROI:ResetAll", enums.RESET, 0, put=root_putter("reset_roi_stats"),
                                  doc="Any write zeroes this channel's ROI Total/Net/Min/Max/Mean readbacks.")
    ns.update(_sca_time_series(n, ts_points))
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
    ns["sca_enable_callbacks"] = enum_pv(f"C{n}SCA:EnableCallbacks", enums.DISABLE_ENABLE, 1,
                                         doc="Accepted (no-op).")
    ns["sca_reset"] = enum_pv(f"C{n}SCA:Reset", enums.RESET, 0, put=root_putter("reset_sca_sums"),
                              doc="Any write zeroes this channel's C{n}SCA:{k}:ValueSum_RBV.")
    for k, (suffix, units) in enumerate(zip(NDATTR_SUFFIXES, SCA_UNITS)):
        name = ndattribute_name(n, suffix)
        ns[f"sca_attr{k}"] = text_pv(f"C{n}SCA:{k}:AttrName", name, put=root_putter("sca_attr_name"),
                                     doc="Name of the attribute (as in the HDF5 NDAttributes group); "
                                         "fixed: a put of another name is rejected.")
        ns[f"sca_attr{k}_rbv"] = text_pv(f"C{n}SCA:{k}:AttrName_RBV", name, read_only=True,
                                         doc="Readback of AttrName.")
        for attr, pvname in ((f"sca_ts{k}", f"C{n}SCA:{k}:TSArrayValue"),
                             (f"sca_ts_series{k}", f"C{n}SCA:TS:{k}:TimeSeries")):
            ns[attr] = pvproperty(name=pvname, value=[0.0], dtype=float, max_length=ts_points,
                                  read_only=True, units=units, max_subscription_backlog=WAVEFORM_BACKLOG,
                                  doc=f"{enums.SCA_NAMES[k]} of every frame of the time series.")
    ns["sca_ts_acquire"] = enum_pv(f"C{n}SCA:TS:TSAcquire", enums.TS_ACQUIRE, 0,
                                   put=root_putter("sca_ts_acquire"),
                                   doc="1 erases and starts the time series, 0 stops it; reads 1 "
                                       "while it records. The put completes at once.")
    ns["sca_ts_num_points"] = pvproperty(name=f"C{n}SCA:TS:TSNumPoints", value=ts_points,
                                         lower_ctrl_limit=1, upper_ctrl_limit=ts_points, units="frames",
                                         put=_ts_num_points_put,
                                         doc="Same as MCA{n}ROI:TSNumPoints (one series for all).")
    ns["sca_ts_current_point"] = pvproperty(name=f"C{n}SCA:TS:TSCurrentPoint", value=0, read_only=True,
                                            units="frames", doc="Points held.")
    ns["sca_ts_acquiring"] = enum_pv(f"C{n}SCA:TS:TSAcquiring", enums.TS_ACQUIRING, 0, read_only=True,
                                     doc="Whether the time series is recording.")
    ns["sca_ts_read"] = enum_pv(f"C{n}SCA:TS:TSRead", enums.TS_READ, 0, put=root_putter("time_series_read"),
                                doc="Any write posts the time-series waveforms now.")
    ns["sca_ts_acquire_mode"] = enum_pv(f"C{n}SCA:TS:TSAcquireMode", enums.TS_ACQUIRE_MODES, 0,
                                        put=root_putter("ts_acquire_mode"),
                                        doc="Fixed length: stop when TSNumPoints frames are held; "
                                            "Circ. buffer: keep the newest TSNumPoints frames.")
    return ns


async def _ts_num_points_put(group, instance, value):
    return await group.root.ts_num_points(group, value)


async def _ts_control_put(group, instance, value):
    return await group.root.ts_control(group, value)


class _ChannelBase(Xsp3Group):
    async def apply_setting(self, attr, value):
        return await self.root.channel_setting(self, attr, value)

    @functools.cached_property
    def rois(self) -> list:
        return [getattr(self, f"roi{r}") for r in range(1, NUM_ROIS + 1)]
