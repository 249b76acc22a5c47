"""Many CA clients subscribing to and dropping the waveform PVs during a full-rate run,
while two frozen clients (subscribed, never reading) hold their sockets full.

caproto 1.3 died here with "deque mutated during iteration" (see ioc/ca_server.py);
the IOC must survive, keep answering and finish the run; and the frozen clients
must not hold up the end of each later run.
"""
from __future__ import annotations

import threading
import time

import psutil
from caproto.threading.client import Context

from iochelp import FrozenClient, close_context


def churn(ioc, stop: threading.Event, errors: list, counts: list) -> None:
    ioc._ca()
    ctx = Context()
    names = [ioc.pv(f"MCA{n}:ArrayData") for n in (1, 2, 3, 4)] + \
        [ioc.pv(f"MCASUM{n}:ArrayData") for n in (1, 2)]
    try:
        pvs = ctx.get_pvs(*names, timeout=5)
        for pv in pvs:
            pv.wait_for_connection(timeout=10)
        while not stop.is_set():
            subs = [pv.subscribe(data_type="native") for pv in pvs]
            callbacks = []
            for sub in subs:
                cb = (lambda s, r: counts.append(1))
                callbacks.append(cb)
                sub.add_callback(cb)
            time.sleep(0.03)
            for sub in subs:
                sub.clear()
    except Exception as ex:  # collected and asserted on by the test
        errors.append(ex)
    finally:
        close_context(ctx)


def test_subscription_churn_during_full_rate_run(fresh_ioc):
    ioc = fresh_ioc
    frozen = [FrozenClient(ioc, [f"MCA{n}:ArrayData" for n in (1, 2, 3, 4)]) for _ in range(2)]
    try:
        ioc.put("det1:UpdateRate", 50.0)
        ioc.put("det1:AcquireTime", 0.0001)
        ioc.put("det1:NumImages", 40000)
        stop = threading.Event()
        errors: list = []
        counts: list = []
        workers = [threading.Thread(target=churn, args=(ioc, stop, errors, counts), daemon=True)
                   for _ in range(4)]
        for w in workers:
            w.start()
        run_ok = []

        def acquire():
            ioc.put("det1:Acquire", 1, wait=True, timeout=120)
            run_ok.append(True)

        rss_before = psutil.Process(ioc.proc.pid).memory_info().rss
        runner = threading.Thread(target=acquire, daemon=True)
        runner.start()
        runner.join(150)
        stop.set()
        for w in workers:
            w.join(30)
        assert run_ok, "the run did not complete"
        assert ioc.get("det1:ArrayCounter_RBV") == 40000
        # the frozen clients' sends are stuck by now: each end of run stops waiting for
        # them to take its last updates (ca_server.STALLED_SEND_S) instead of running out
        # the flush's time limit
        ioc.put("det1:NumImages", 10)
        for _ in range(3):
            ioc.put("det1:Acquire", 1, wait=True, timeout=30)
    finally:
        for f in frozen:
            f.close()
    assert "were not all sent" not in ioc.output()
    rss_after = psutil.Process(ioc.proc.pid).memory_info().rss
    # frozen clients hold at most a few queued spectra each: memory stays bounded
    assert rss_after - rss_before < 200 * 2**20, (rss_before, rss_after)
    assert not errors, errors
    assert counts, "no subscriber ever received an update"
    assert ioc.get("det1:ArrayCounter_RBV") == 10
    assert ioc.get("det1:DetectorState_RBV") == "Idle"
    assert "deque mutated" not in ioc.output()
