"""ophyd-async's areaDetector IO classes (adcore) against the IOC, over aioca.

ophyd-async checks every PV as it connects: its DBR type against the signal's declared
datatype (bool wants a two-state enum, int an integer scalar, str a string or CHAR
waveform) and an enum's strings against the declared enum class. So a connect that
succeeds is itself the type and enum check of every PV the class names.

libca reads the CA environment when its context is made, once per process, so the
client runs as its own process (this file run as a script, with the IOC's
environment) and prints one JSON object for the tests to check.
"""
from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path

CHANNELS = 4
ROIS_PER_CHANNEL = 48  # MCA{n}ROI:1: .. MCA{n}ROI:48:, as the areaDetector IOC serves them
ROI = (1, 500, 300)  # (ROI number, MinX, SizeX) set on every channel's MCA{n}ROI: plugin
FRAMES = 3
EXPOSURE_S = 0.02
CONNECT_TIMEOUT_S = 10.0  # PVs served answer at once; a missing one waits this long


def device_prefixes(channels: int = CHANNELS) -> dict:
    """Name -> (adcore IO class name, PV prefix) of every device the client connects."""
    out = {"det1": ("ADBaseIO", "det1:"), "HDF1": ("NDFileHDF5IO", "HDF1:"),
           "Proc1": ("NDPluginBaseIO", "Proc1:")}
    for n in range(1, channels + 1):
        out[f"MCA{n}"] = ("NDPluginBaseIO", f"MCA{n}:")
        out[f"MCASUM{n}"] = ("NDPluginBaseIO", f"MCASUM{n}:")
        out[f"C{n}SCA"] = ("NDPluginBaseIO", f"C{n}SCA:")
        out[f"ROI{n}"] = ("NDROIIO", f"ROI{n}:")
        out[f"ROISUM{n}"] = ("NDROIIO", f"ROISUM{n}:")
        out[f"MCA{n}ROI"] = ("NDROIStatIO", f"MCA{n}ROI:")
    return out


# ---------------------------------------------------------------- the client (a script)

def _connect_errors(exc: BaseException, path: str = "") -> dict:
    """Flatten ophyd-async's NotConnectedError tree into {signal path: reason}."""
    from ophyd_async.core import NotConnectedError
    if isinstance(exc, NotConnectedError) and exc.sub_errors:
        out = {}
        for name, sub in exc.sub_errors.items():
            out.update(_connect_errors(sub, f"{path}.{name}" if path else name))
        return out
    return {path or "device": f"{type(exc).__name__}: {exc}".strip()}


async def _client(prefix: str, out_dir: str) -> dict:
    from ophyd_async.core import wait_for_value
    from ophyd_async.epics import adcore

    devices = {}
    for name, (cls, suffix) in device_prefixes().items():
        kwargs = {"num_channels": ROIS_PER_CHANNEL} if cls == "NDROIStatIO" else {}
        devices[name] = getattr(adcore, cls)(prefix + suffix, name=name, **kwargs)
    results = await asyncio.gather(*(d.connect(timeout=CONNECT_TIMEOUT_S) for d in devices.values()),
                                   return_exceptions=True)
    report = {"connect": {name: (_connect_errors(r) if isinstance(r, BaseException) else None)
                          for name, r in zip(devices, results)}}

    async def part(name, signals, body):
        """Run one use of the devices, needing only the signals it uses (a device whose other
        signals failed still serves these), and report its values or its error."""
        try:
            await asyncio.gather(*(s.connect(timeout=CONNECT_TIMEOUT_S) for s in signals))
            report[name] = await body()
        except Exception as exc:  # reported to the test, which fails with it
            report[name] = {"error": f"{type(exc).__name__}: {exc}"}

    number, lo, size = ROI
    rois = [devices[f"MCA{n}ROI"].channels[number] for n in range(1, CHANNELS + 1)]
    roi_signals = [s for r in rois for s in (r.min_x, r.size_x, r.use, r.total)]

    async def configure_rois():
        for n in range(1, CHANNELS + 1):
            roi = devices[f"MCA{n}ROI"].channels[number]
            await roi.min_x.set(lo)
            await roi.size_x.set(size)
            await roi.use.set(True)
        return {"min_x": await devices["MCA1ROI"].channels[number].min_x.get_value()}

    await part("rois", roi_signals, configure_rois)

    hdf = devices["HDF1"]
    capture = None

    async def arm_hdf():
        nonlocal capture
        await hdf.file_path.set(out_dir + "/")
        await hdf.file_name.set("oasync")
        await hdf.file_template.set("%s%s_%6.6d.h5")
        await hdf.file_number.set(7)
        await hdf.auto_increment.set(False)
        await hdf.file_write_mode.set(adcore.ADFileWriteMode.STREAM)
        await hdf.compression.set(adcore.ADCompression.ZLIB)
        await hdf.num_capture.set(FRAMES)
        capture = asyncio.ensure_future(hdf.capture.set(True, timeout=60))
        await wait_for_value(hdf.capture, True, timeout=10)
        return {"file_path_exists": await hdf.file_path_exists.get_value()}

    hdf_signals = [hdf.file_path, hdf.file_name, hdf.file_template, hdf.file_number,
                   hdf.auto_increment, hdf.file_write_mode, hdf.compression, hdf.num_capture,
                   hdf.capture, hdf.file_path_exists, hdf.full_file_name, hdf.num_captured]
    await part("hdf_arm", hdf_signals, arm_hdf)

    det = devices["det1"]
    plugins = {name: devices[name] for n in range(1, CHANNELS + 1) for name in
               (f"MCA{n}", f"MCASUM{n}", f"C{n}SCA", f"MCA{n}ROI", f"ROI{n}", f"ROISUM{n}")}

    async def acquire():
        for plugin in plugins.values():  # each plugin counts the arrays it handles, from here
            await plugin.array_counter.set(0)
        await det.acquire_time.set(EXPOSURE_S)
        await det.num_images.set(FRAMES)
        await det.image_mode.set(adcore.ADImageMode.MULTIPLE)
        await det.acquire.set(True, timeout=60)  # put with callback: returns when the run ends
        return {"array_counter": await det.array_counter.get_value(),
                "acquire_time": await det.acquire_time.get_value(),
                "num_images": await det.num_images.get_value(),
                "state": (await det.detector_state.get_value()).value,
                "manufacturer": await det.manufacturer.get_value(),
                "array_size_x": await det.array_size_x.get_value(),
                "plugin_counters": {name: await p.array_counter.get_value()
                                    for name, p in plugins.items()}}

    await part("acquire", [det] + [p.array_counter for p in plugins.values()], acquire)

    async def roi_values():
        out = {}
        for n in range(1, CHANNELS + 1):
            roi = devices[f"MCA{n}ROI"].channels[number]
            out[n] = {"total": await roi.total.get_value(), "use": await roi.use.get_value(),
                      "size_x": await roi.size_x.get_value()}
        return out

    await part("roi_values", roi_signals, roi_values)

    async def hdf_done():
        if capture is None:
            raise RuntimeError("HDF1 capture never armed")
        await asyncio.wait_for(capture, 60)
        return {"full_file_name": await hdf.full_file_name.get_value(),
                "num_captured": await hdf.num_captured.get_value(),
                "capture": await hdf.capture.get_value()}

    await part("hdf", hdf_signals, hdf_done)
    return report


def main(argv: list) -> int:
    print(json.dumps(asyncio.run(_client(argv[0], argv[1]))))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))


# ---------------------------------------------------------------- the tests

import h5py  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

pytest.importorskip("ophyd_async", reason="ophyd-async needs Python 3.11")

from clienthelp import last_json_line, run_client  # noqa: E402


@pytest.fixture(scope="module")
def report(client_ioc, tmp_path_factory):
    """One run of the client against the module's IOC."""
    out_dir = tmp_path_factory.mktemp("oasync-data")
    client_ioc.put("HDF1:FileWriteMode", "Single")  # the client must set what it needs itself
    result = run_client(client_ioc, Path(__file__).name, client_ioc.prefix, str(out_dir))
    return last_json_line(result.stdout)


@pytest.mark.parametrize("name", list(device_prefixes()))
def test_adcore_device_connects_with_its_type_and_enum_checks(report, name):
    errors = report["connect"][name]
    if errors is not None:
        pytest.fail(f"{len(errors)} signals of {name} failed:\n"
                    + "\n".join(f"  {k}: {v}" for k, v in sorted(errors.items())[:40]), pytrace=False)


def test_adbase_acquires_and_reads_back(report, client_ioc):
    values = report["acquire"]
    assert "error" not in values, values
    assert values["array_counter"] == FRAMES == client_ioc.get("det1:ArrayCounter_RBV")
    assert values["acquire_time"] == EXPOSURE_S == client_ioc.get("det1:AcquireTime_RBV")
    assert values["num_images"] == FRAMES
    assert values["state"] == "Idle" == client_ioc.get("det1:DetectorState_RBV")
    assert values["manufacturer"] == client_ioc.get("det1:Manufacturer_RBV") != ""
    assert values["array_size_x"] == client_ioc.get("det1:ArraySizeX_RBV") > 0
    # every plugin handled every frame of the run (each counter was zeroed before it)
    assert values["plugin_counters"] == {name: FRAMES for name in values["plugin_counters"]}
    assert len(values["plugin_counters"]) == 6 * CHANNELS


def test_roistat_totals_match_the_spectra(report, client_ioc):
    assert "error" not in report["rois"], report["rois"]
    values = report["roi_values"]
    assert "error" not in values, values
    number, lo, size = ROI
    for n in range(1, CHANNELS + 1):
        got = values[str(n)]
        assert got["use"] is True and got["size_x"] == size
        spectrum = client_ioc.get(f"MCA{n}:ArrayData")
        assert got["total"] == client_ioc.get(f"MCA{n}ROI:{number}:Total_RBV")
        assert got["total"] == spectrum[lo:lo + size].sum() > 0


def test_hdf5_capture_writes_the_frames(report, client_ioc):
    assert "error" not in report["hdf_arm"], report["hdf_arm"]
    assert report["hdf_arm"]["file_path_exists"] is True
    done = report["hdf"]
    assert "error" not in done, done
    assert done["num_captured"] == FRAMES and done["capture"] is False
    path = Path(done["full_file_name"])
    assert path.name == "oasync_000007.h5" and path.is_file()
    with h5py.File(path, "r") as f:
        data = f["/entry/instrument/detector/data"]
        assert data.shape[0] == FRAMES
        last = data[-1]
    for n in range(1, CHANNELS + 1):  # the last frame is what the MCA plugins still serve
        assert np.array_equal(last[n - 1], client_ioc.get(f"MCA{n}:ArrayData")[:last.shape[-1]])
