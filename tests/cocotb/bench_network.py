"""cocotb bench of the network top (``hw.network.Network`` as Verilog).

The case file (``TB_CASE``) names the model directory, the binned sample and the
hardware/stimulus parameters. The bench drives the input stream (random valid gaps),
watches every layer's output stream, the step strobes and stamps, the result, and in
``readback`` mode reads every state word back through the status port after every
step; the scoreboard compares all of it with the reference and the cycle model.
"""

import json
import os

import cocotb
from cocotb.clock import Clock
from cocotb.triggers import FallingEdge, ReadOnly

from runner import load_binned
from sim.cycles import HwParams
from sim.model import load_model
from sim.tb.driver import StreamDriver
from sim.tb.model import NetworkModel
from sim.tb.monitor import StatusMonitor, StatusPort, StreamMonitor
from sim.tb.scoreboard import Scoreboard


def _case():
    with open(os.environ["TB_CASE"]) as f:
        return json.load(f)


async def _reset(dut):
    dut.inp__valid.value = 0
    dut.clear.value = 0
    dut.rb_layer.value = 0
    dut.rb_addr.value = 0
    dut.rst.value = 1
    for _ in range(3):
        await FallingEdge(dut.clk)
    dut.rst.value = 0


def _child(handle, name):
    """The signal ``name`` under ``handle``; an escaped Verilog name (``out__valid$24``)
    is ``\\out__valid$24 `` (backslash, trailing blank) under Verilator's VPI."""
    try:
        return getattr(handle, name)
    except AttributeError:
        if not name.isidentifier():
            return getattr(handle, f"\\{name} ")
        raise


def _signed(v, bits):
    return v - (1 << bits) if v >> (bits - 1) else v


@cocotb.test()
async def network(dut):
    case = _case()
    model = load_model(case["model"])
    binned = load_binned(case["binned"])
    params = HwParams(lanes=case.get("lanes"), fifo_depth=case["fifo_depth"])
    samples = case.get("samples", 1)
    nm = NetworkModel(model, binned, params, samples=samples, order_seed=case.get("order_seed"),
                      bad_per_step=case.get("bad_per_step", 0))
    sb = Scoreboard(nm)
    n = len(model.layers)
    readback = case.get("readback", False)

    Clock(dut.clk, 10, unit="ns").start()
    await _reset(dut)

    mons = []
    for i in range(n):
        h = getattr(dut, f"layer{i}")
        # the layer's ``out`` port by its name in the Verilog (an inner wire of the same
        # name can take the plain name, see runner.layer_out_ports): required
        names = case["out_ports"][i]
        mon = StreamMonitor(dut.clk, _child(h, names["valid"]), _child(h, names["ready"]),
                            _child(h, names["payload"]),
                            (lambda w, c, i=i: sb.layer_word(i, w)), name=f"layer{i}.out")
        mons.append(mon)
        cocotb.start_soon(mon.run())
    status = StatusMonitor(dut, n, lambda i, stamp, ovf, idx: sb.step_status(i, stamp, ovf))
    cocotb.start_soon(status.run())

    last = model.layers[-1]
    nc = last.n_out
    if model.readout == "membrane":
        sbits, signed = last.state_bits, True
    else:
        sbits, signed = max(1, model.input.timesteps.bit_length()) + 1, False

    async def results():
        # ``prediction`` is registered in the cycle of the ``done`` strobe: read it (and
        # the scores, registered earlier) in the cycle after the strobe
        pending = False
        while True:
            await FallingEdge(dut.clk)
            await ReadOnly()
            if pending:
                raw = int(dut.scores.value)
                sc = [(raw >> (c * sbits)) & ((1 << sbits) - 1) for c in range(nc)]
                if signed:
                    sc = [_signed(v, sbits) for v in sc]
                sb.result(sc, int(dut.prediction.value))
                if not int(dut.result_valid.value):
                    sb._error("result_valid low after done")
            pending = bool(int(dut.done.value))
    cocotb.start_soon(results())

    port = StatusPort(dut, nm.layers)

    async def read_states():
        words = await port.wait_idle_and_read()
        for i, li in enumerate(nm.layers):
            sb.layer_states(i, li.states_from_words(words[i]))

    def after(j):
        if readback and nm.words[j][0] == 1:
            return read_states()
        return None

    drv = StreamDriver(dut.clk, dut.inp__valid, dut.inp__ready, dut.inp__payload,
                       gap=case.get("gap", 0.0), seed=case.get("seed", 0), cycle=dut.cycle)
    await drv.send(nm.packed_words(), after)
    limit = case.get("max_cycles", 2_000_000)
    waited = 0
    while len(sb.scores) < samples:
        await FallingEdge(dut.clk)
        waited += 1
        assert waited < limit, "timeout waiting for the results"
    for _ in range(4):
        await FallingEdge(dut.clk)
    await ReadOnly()
    status_vals = {k: int(getattr(dut, k).value) for k in ("dropped", "range_error", "steps",
                                                           "samples", "idle")}

    sb.compare_spikes()
    sb.compare_flags()
    sb.compare_results()
    sb.compare_status(status_vals)
    if readback:
        sb.compare_states()
    sync = nm.readback_words + 1 if readback else None
    rep = nm.cycles(start=drv.first_offer, gaps=drv.gaps, sync_cycles=sync)
    sb.compare_cycles(rep, exact=True)
    if any(drv.gaps):
        base = nm.cycles(start=drv.first_offer, sync_cycles=sync)
        sb.compare_cycles(base, exact=False)
    if readback and rep.idle_after_step != port.idle_cycles:
        sb._error(f"idle after steps at {port.idle_cycles[:5]}..., cycle model says "
                  f"{rep.idle_after_step[:5]}...")
    for mon in mons:
        for v in mon.violations:
            sb._error(v)
    if not status_vals["idle"]:
        sb._error("network not idle after the last result")
    for e in sb.errors[:20]:        # the failure names the first; the log lists more
        dut._log.error(e)
    checked = sb.check()
    dut._log.info("%d comparisons passed; %d cycles (model: %d)", checked,
                  rep.end - rep.start, rep.end - rep.start)
