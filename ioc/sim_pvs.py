"""`SIM:` PVs: drive the built-in simulator (triggers, gate, count rate, faults).

They exist only when the loaded library is the simulator, so tests and
demonstrations can run external-trigger modes and SDK faults over Channel
Access, exactly as a user would.
"""
from __future__ import annotations

from caproto import ChannelType
from caproto.server import pvproperty

from xspress3.vocabulary import INT32_MAX

from . import enums
from .handlers import root_of
from .pvtypes import Xsp3Group, enum_pv


class SimPVs(Xsp3Group):
    """Simulator controls (present only with the built-in simulator)."""

    trigger = pvproperty(name="Trigger", value=0, lower_ctrl_limit=0, upper_ctrl_limit=1_000_000,
                         doc="Writing n sends n trigger pulses (external trigger modes).")
    gate = enum_pv("Gate", enums.GATE, 0, doc="Opens/closes the veto gate (Veto Only modes).")
    count_rate = pvproperty(name="CountRate", value=50_000.0, units="cps", precision=0,
                            lower_ctrl_limit=0.0, upper_ctrl_limit=5e7,
                            doc="Input count rate of every channel.")
    seed = pvproperty(name="Seed", value=1, lower_ctrl_limit=0, upper_ctrl_limit=INT32_MAX,
                      doc="Random seed of the simulated events (reproducible runs).")
    fault_function = pvproperty(name="FaultFunction", value="xsp3_histogram_start",
                                dtype=ChannelType.STRING,
                                doc="SDK function the next injected fault hits.")
    fault_code = pvproperty(name="FaultCode", value=-1, lower_ctrl_limit=-20, upper_ctrl_limit=-1,
                            doc="SDK error code the faulty call returns.")
    fault_after = pvproperty(name="FaultAfter", value=0, lower_ctrl_limit=0,
                             upper_ctrl_limit=1_000_000,
                             doc="Successful calls before the fault fires (once).")
    inject_fault = enum_pv("InjectFault", enums.INJECT, 0,
                           doc="Arms the fault described by FaultFunction/Code/After.")
    clear_faults = enum_pv("ClearFaults", enums.CLEAR, 0, doc="Removes pending faults.")

    @trigger.putter
    async def trigger(self, instance, value):
        if value > 0:
            await root_of(self).sim_call("trigger", int(value))
        return 0

    @gate.putter
    async def gate(self, instance, value):
        await root_of(self).sim_call("gate", value == enums.Gate.OPEN)
        return value

    @count_rate.putter
    async def count_rate(self, instance, value):
        await root_of(self).sim_call("set_rate", float(value))
        return value

    @seed.putter
    async def seed(self, instance, value):
        await root_of(self).sim_call("set_seed", int(value))
        return value

    @inject_fault.putter
    async def inject_fault(self, instance, value):
        await root_of(self).sim_call("inject_fault", self.fault_function.value,
                                 int(self.fault_code.value), int(self.fault_after.value))
        return 0

    @clear_faults.putter
    async def clear_faults(self, instance, value):
        await root_of(self).sim_call("clear_faults")
        return 0
