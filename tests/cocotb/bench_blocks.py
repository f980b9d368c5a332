"""cocotb benches of single blocks: the FIFO of the network and one layer engine
(synapse engine + weight ROM + neuron core), each with random valid gaps at the input
and random ready stalls at the output.
"""

import json
import os
import random

import cocotb
from cocotb.clock import Clock
from cocotb.triggers import FallingEdge, ReadOnly

from runner import load_binned
from sim.cycles import HwParams
from sim.model import load_model
from sim.tb.driver import StreamDriver
from sim.tb.layout import event_layout
from sim.tb.model import NetworkModel
from sim.tb.monitor import StreamMonitor
from sim.tb.scoreboard import Scoreboard


def _case():
    with open(os.environ["TB_CASE"]) as f:
        return json.load(f)


async def _reset(dut):
    dut.rst.value = 1
    for _ in range(3):
        await FallingEdge(dut.clk)
    dut.rst.value = 0


@cocotb.test()
async def fifo(dut):
    """Every word written comes out once, in order, unchanged, under random stalls on
    both sides."""
    case = _case()
    Clock(dut.clk, 10, unit="ns").start()
    dut.w_en.value = 0
    dut.r_en.value = 0
    await _reset(dut)
    rng = random.Random(case["seed"])
    words = [rng.randrange(1 << case["width"]) for _ in range(case["n"])]
    got = []
    mon = StreamMonitor(dut.clk, dut.r_rdy, dut.r_en, dut.r_data, lambda w, c: got.append(w),
                        ready_prob=case["ready"], seed=case["seed"] + 1, name="r")
    cocotb.start_soon(mon.run())
    drv = StreamDriver(dut.clk, dut.w_en, dut.w_rdy, dut.w_data, gap=case["gap"],
                       seed=case["seed"])
    await drv.send(words)
    for _ in range(case["n"] * 20):
        if len(got) >= len(words):
            break
        await FallingEdge(dut.clk)
    for _ in range(5):
        await FallingEdge(dut.clk)
    assert not mon.violations, mon.violations[0]
    assert len(got) == len(words), f"{len(got)} words out, {len(words)} in"
    for i, (g, w) in enumerate(zip(got, words)):
        assert g == w, f"word {i}: expected {w:#x}, got {g:#x}"


@cocotb.test()
async def layer(dut):
    """One layer: per-step spikes, overflow flags and (through the readback port, after
    every step) every stored state against the reference, with random stalls."""
    case = _case()
    model = load_model(case["model"])
    binned = load_binned(case["binned"])
    nm = NetworkModel(model, binned, HwParams(lanes=case["lanes"]),
                      order_seed=case.get("order_seed"), samples=case.get("samples", 1))
    sb = Scoreboard(nm)
    li = nm.layers[0]
    Clock(dut.clk, 10, unit="ns").start()
    dut.inp__valid.value = 0
    dut.out__ready.value = 0
    dut.rb_addr.value = 0
    await _reset(dut)

    mon = StreamMonitor(dut.clk, dut.out__valid, dut.out__ready, dut.out__payload,
                        lambda w, c: sb.layer_word(0, w), ready_prob=case["ready"],
                        seed=case["seed"] + 1, name="out")
    cocotb.start_soon(mon.run())

    async def strobes():
        while True:
            await FallingEdge(dut.clk)
            await ReadOnly()
            if int(dut.step_done.value):
                sb.step_status(0, 0, int(dut.ovf_step.value))
    cocotb.start_soon(strobes())

    steps_sent = [0]

    async def read_states():
        await ReadOnly()
        while len(sb.spikes[0]) < steps_sent[0] or int(dut.busy.value):
            await FallingEdge(dut.clk)
            await ReadOnly()
        words, prev = [], False
        mask = (1 << li.word_bits) - 1
        for a in range(li.D):
            await FallingEdge(dut.clk)
            dut.rb_addr.value = a
            await ReadOnly()
            if prev:
                words.append(int(dut.rb_data.value) & mask)
            prev = True
        await FallingEdge(dut.clk)
        await ReadOnly()
        words.append(int(dut.rb_data.value) & mask)
        sb.layer_states(0, li.states_from_words(words))

    def after(j):
        if nm.words[j][0] == 1:
            steps_sent[0] += 1
            return read_states()
        return None

    lay = event_layout(model.input.shape)
    words = [lay.pack(kind=k, c=p, y=y, x=x) for k, p, y, x in nm.words]
    drv = StreamDriver(dut.clk, dut.inp__valid, dut.inp__ready, dut.inp__payload,
                       gap=case["gap"], seed=case["seed"])
    await drv.send(words, after)
    for _ in range(100000):
        if mon.count and not int(dut.busy.value) and len(sb.spikes[0]) == len(nm.spikes[0]):
            break
        await FallingEdge(dut.clk)
    for _ in range(5):
        await FallingEdge(dut.clk)
    sb.compare_spikes()
    sb.compare_flags()
    sb.compare_states()
    for v in mon.violations:
        sb._error(v)
    dut._log.info("%d comparisons passed", sb.check())
