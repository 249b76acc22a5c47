"""The caproto asyncio server Context, with a work-around for a caproto fault.

caproto 1.3 sends each value update to every subscriber by iterating the live
deque of subscriptions and awaiting a send per subscriber. A client that
unsubscribes during those awaits removes itself from that deque, and the loop
dies with ``RuntimeError: deque mutated during iteration``, which takes the
server's subscription task down with it. Clients that churn subscriptions on
spectra updating at full rate trigger it. `SafeContext` iterates over a
snapshot instead and skips subscriptions cancelled meanwhile; the rest of the
server is caproto's own.
"""
from __future__ import annotations

from caproto.asyncio.server import Context


class SafeContext(Context):
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
