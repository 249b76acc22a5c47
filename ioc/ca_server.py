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
The rest of the server is caproto's own. `RejectedPutLogFilter` keeps caproto's
log of refused puts out of the IOC's log (each is reported once by the IOC).
"""
from __future__ import annotations

import logging

from caproto.asyncio.server import Context, VirtualCircuit


class RejectedPutLogFilter(logging.Filter):
    """caproto logs every put it refuses as an ERROR with a 30-line traceback.
    The IOC already reports each one, with the PV and the reason, as one WARNING
    line and in det1:StatusMessage_RBV (pvtypes._ReportingMixin), so caproto's
    record would only bury that line in a beamline's log."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not (record.exc_info and str(record.msg).startswith("Invalid write request"))


class SafeCircuit(VirtualCircuit):
    async def _cull_subscriptions(self, db_entry, func):
        removed = await super()._cull_subscriptions(db_entry, func)
        for _sub_spec, sub in removed:
            self.unexpired_updates.pop(sub.subscriptionid, None)
        return removed


class SafeContext(Context):
    CircuitClass = SafeCircuit

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
