"""cocotb monitors (import cocotb): streams, step status, state readback.

Same timing convention as :mod:`sim.tb.driver`: drive after the falling edge, sample
after ``ReadOnly()``.
"""

from __future__ import annotations

import random

from cocotb.triggers import FallingEdge, ReadOnly

__all__ = ["StreamMonitor", "StatusMonitor", "StatusPort"]


class StreamMonitor:
    """Watches a ``valid``/``ready``/``payload`` stream and calls ``callback(word, cycle)``
    for every transfer.

    With ``ready_prob`` given, the monitor also drives ``ready``: high with that
    probability in every cycle (``random.Random(seed)``), so the source sees random
    stalls. It also checks the stream rules on the fly: once ``valid`` is high without
    a transfer, ``valid`` must stay high and ``payload`` must not change
    (:attr:`violations` lists any breach).

    Parameters
    ----------
    clk, valid, ready, payload : cocotb handles
    callback : callable
    ready_prob : float, optional
    seed : int
    name : str
    """

    def __init__(self, clk, valid, ready, payload, callback, *, ready_prob=None, seed=0,
                 name="stream"):
        self.clk, self.valid, self.ready, self.payload = clk, valid, ready, payload
        self.callback = callback
        self.ready_prob = ready_prob
        self.rng = random.Random(seed)
        self.name = name
        self.count = 0
        self.cycle = 0
        self.violations = []
        self.ready_trace = []

    async def run(self):
        pending = None
        while True:
            await FallingEdge(self.clk)
            self.cycle += 1
            if self.ready_prob is not None:
                r = 1 if self.rng.random() < self.ready_prob else 0
                self.ready.value = r
                self.ready_trace.append(r)
            await ReadOnly()
            v = int(self.valid.value)
            if pending is not None:
                if not v:
                    self.violations.append(f"{self.name}: valid withdrawn at cycle {self.cycle}")
                elif int(self.payload.value) != pending:
                    self.violations.append(f"{self.name}: payload changed while stalled at "
                                           f"cycle {self.cycle}")
            pending = None
            if v:
                word = int(self.payload.value)
                if int(self.ready.value):
                    self.count += 1
                    self.callback(word, self.cycle)
                else:
                    pending = word


class StatusMonitor:
    """Watches the network's step strobes: for every ``step_done[i]`` pulse records the
    layer's overflow flag (``ovf_step[i]`` at the strobe) and, one cycle later, the
    stamp ``step_cycle[i]`` and the index ``step_index[i]`` from the status port, and
    calls ``callback(i, stamp, ovf, index)``.

    Parameters
    ----------
    dut : cocotb handle of the network top
    n_layers : int
    cycle_bits : int
    callback : callable
    """

    def __init__(self, dut, n_layers, callback, *, cycle_bits=32):
        self.dut = dut
        self.n = n_layers
        self.callback = callback
        self.cycle_bits = cycle_bits
        self.strobe_cycles = [[] for _ in range(n_layers)]

    async def run(self):
        dut = self.dut
        pending = []
        cmask = (1 << self.cycle_bits) - 1
        while True:
            await FallingEdge(dut.clk)
            await ReadOnly()
            if pending:
                stamps = int(dut.step_cycle.value)
                index = int(dut.step_index.value)
                for i, ovf, cyc in pending:
                    stamp = (stamps >> (i * self.cycle_bits)) & cmask
                    if stamp != cyc:
                        raise AssertionError(f"layer {i}: step_cycle holds {stamp}, the strobe "
                                             f"came in cycle {cyc}")
                    self.callback(i, stamp, ovf, (index >> (16 * i)) & 0xFFFF)
                pending = []
            sd = int(dut.step_done.value)
            if sd:
                ovf = int(dut.ovf_step.value)
                cyc = int(dut.cycle.value)
                for i in range(self.n):
                    if (sd >> i) & 1:
                        self.strobe_cycles[i].append(cyc)
                        pending.append((i, (ovf >> i) & 1, cyc))


class StatusPort:
    """Reads the state RAMs of the network back through ``rb_layer``/``rb_addr``/``rb_data``.

    :meth:`wait_idle_and_read` is meant to run right after a falling edge (inputs may be
    driven): it samples ``idle`` in this and following cycles until high, then puts one
    address per cycle on the port (``rb_data`` is the word of the address set one cycle
    earlier) and returns after the ``ReadOnly()`` of the cycle that shows the last word.
    ``N`` words take ``N + 1`` cycles after the idle cycle.
    """

    def __init__(self, dut, layers):
        self.dut = dut
        self.layers = layers        # list of sim.tb.model.LayerInfo
        self.idle_cycles = []

    async def wait_idle_and_read(self):
        dut = self.dut
        await ReadOnly()
        while not int(dut.idle.value):
            await FallingEdge(dut.clk)
            await ReadOnly()
        self.idle_cycles.append(int(dut.cycle.value))
        out = []
        prev = None
        for i, li in enumerate(self.layers):
            words = []
            out.append(words)
            for a in range(li.D):
                await FallingEdge(dut.clk)
                dut.rb_layer.value = i
                dut.rb_addr.value = a
                await ReadOnly()
                if prev is not None:
                    prev[0].append(int(dut.rb_data.value) & prev[1])
                prev = (words, (1 << li.word_bits) - 1)
        await FallingEdge(dut.clk)
        await ReadOnly()
        prev[0].append(int(dut.rb_data.value) & prev[1])
        return out
