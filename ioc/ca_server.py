"""The caproto asyncio server Context, with work-arounds for two caproto faults.

1. caproto 1.3 sends each value update to every subscriber by iterating the
   live deque of subscriptions and awaiting a send per subscriber. A client that
   unsubscribes during those awaits removes itself from that deque, and the loop
   dies with ``RuntimeError: deque mutated during iteration``, which takes the
   server's subscription task down with it. `SafeContext` iterates over a
   snapshot instead and skips subscriptions cancelled meanwhile.
2. Each circuit keeps the last queued updates of every subscription id in
   ``unexpired_updates`` and never forgets a cancelled one. Clients that
   subscribe and unsubscribe over and over (each time with a new id) made the
   IOC grow by one spectrum per subscription (measured: ~75 MB a minute with
   four clients churning the waveform PVs). `SafeCircuit` drops those entries
   when the subscriptions are cancelled.

And one addition: `SafeContext.updates_sent` tells when every value update
posted so far has gone out to the clients, so that an Acquire put completes only
once the run's end state has reached them (see `UPDATE_BATCH_GAP_S`).

The rest of the server is caproto's own. `RejectedPutLogFilter` keeps caproto's
log of refused puts out of the IOC's log (each is reported once by the IOC).
"""
from __future__ import annotations

import asyncio
import logging
import os
import time
from typing import Optional

from caproto.asyncio.server import Context, VirtualCircuit
from caproto.server import common as caproto_common

#: A circuit sends the value updates it has batched once no new one has come for
#: this long (caproto's HIGH_LOAD_TIMEOUT, 10 ms by default). The IOC posts its
#: updates in bursts (a display update, the end of a run) whose writes come well
#: under a millisecond apart, so 2 ms still sends a burst as one batch, and the end
#: of a run reaches clients sooner: each point of a step scan waits for it.
UPDATE_BATCH_GAP_S = 0.002
#: A circuit whose send has waited this long has a client that is not reading (a
#: suspended camonitor, a congested link): updates_sent stops waiting for it.
STALLED_SEND_S = 0.05


def tune_update_batching() -> None:
    """Apply UPDATE_BATCH_GAP_S unless the site chose its own caproto setting."""
    if "CAPROTO_SERVER_HIGH_LOAD_TIMEOUT_SEC" not in os.environ:
        caproto_common.HIGH_LOAD_TIMEOUT = UPDATE_BATCH_GAP_S


class RejectedPutLogFilter(logging.Filter):
    """caproto logs every put it refuses as an ERROR with a 30-line traceback.
    The IOC already reports each one, with the PV and the reason, as one WARNING
    line and in det1:StatusMessage_RBV (pvtypes._ReportingMixin), so caproto's
    record would only bury that line in a beamline's log."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not (record.exc_info and str(record.msg).startswith("Invalid write request"))


class SafeCircuit(VirtualCircuit):
    # caproto's subscription loop waits for updates without a timeout only when it
    # has sent all it took from its queue: then `_idle` is set.
    _idle = False
    _send_started: Optional[float] = None

    async def get_from_sub_queue(self, timeout=None):
        if timeout is None:
            self._idle = True
        ref = await super().get_from_sub_queue(timeout)
        if ref is not None:
            self._idle = False
        return ref

    async def send(self, *commands):
        self._send_started = time.monotonic()
        try:
            await super().send(*commands)
        finally:
            self._send_started = None

    def updates_pending(self) -> bool:
        """True while this circuit holds value updates for a client that is reading."""
        if self._idle and self.subscription_queue.empty():
            return False
        started = self._send_started
        return started is None or time.monotonic() - started < STALLED_SEND_S

    async def _cull_subscriptions(self, db_entry, func):
        removed = await super()._cull_subscriptions(db_entry, func)
        for _sub_spec, sub in removed:
            self.unexpired_updates.pop(sub.subscriptionid, None)
        return removed


class SafeContext(Context):
    CircuitClass = SafeCircuit

    async def updates_sent(self, timeout: float) -> bool:
        """Wait until every value update posted so far has been sent to each client
        that is reading (at most `timeout` seconds); False if the time ran out."""
        deadline = time.monotonic() + timeout
        while not self.subscription_queue.empty() or \
                any(c.updates_pending() for c in tuple(self.circuits)):
            if time.monotonic() > deadline:
                return False
            await asyncio.sleep(0.001)
        return True

    async def _subscription_queue_iteration(self, sub_specs, metadata, values, flags, sub):
        if sub is not None:
            return await super()._subscription_queue_iteration(sub_specs, metadata, values,
                                                               flags, sub)
        for sub_spec in sub_specs:
            live = self.subscriptions.get(sub_spec)
            if not live:
                continue
            for subscriber in tuple(live):
                if subscriber not in live:      # cancelled while we were sending
                    continue
                await self._subscription_queue_send(sub_spec, subscriber, metadata=metadata,
                                                    values=values, flags=flags)
