"""SynapseIterator: one update per cycle over ny x nx x G with the documented address
steps, tokens as single items, and the engine latency (first update 3 cycles after the
event is accepted)."""

import pytest
from amaranth.sim import Simulator

from hw.conv import ConvEngine
from hw.network import Network
from hw.stream import END_STEP, SPIKE
from hw.synapse import SynapseIterator
from sim.randmodel import random_model

from .harness import pack, unpack


def test_iterator_walks_the_window():
    G, S, K, Wo = 2, 2, 3, 5
    it = SynapseIterator(sa_depth=200, wa_depth=200, n_max=2, groups=G, col_step=1 - G - S * G,
                         row_sa=Wo * G, row_wa=-S * K * G)
    jl, ol = it.job.payload.shape(), it.out.payload.shape()
    jobs = [dict(kind=SPIKE, sa=12, wa=100, ny=2, nx=2), dict(kind=END_STEP, sa=0, wa=0, ny=0, nx=0),
            dict(kind=SPIKE, sa=0, wa=50, ny=1, nx=2)]
    want = []
    for j in jobs:
        if j["kind"] != SPIKE:
            want.append((j["kind"],))
            continue
        for ty in range(j["ny"]):
            for tx in range(j["nx"]):
                for g in range(G):
                    want.append((SPIKE, j["sa"] + (ty * Wo + tx) * G + g,
                                 j["wa"] - ty * S * K * G - tx * S * G + g))
    got, cycles = [], []

    async def bench(ctx):
        ctx.set(it.out.ready, 1)
        i, cycle = 0, 0
        while len(got) < len(want):
            ctx.set(it.job.valid, i < len(jobs))
            if i < len(jobs):
                ctx.set(it.job.payload.as_value(), pack(jl, **jobs[i]))
            _, _, jv, jr, ov, op = await ctx.tick().sample(it.job.valid, it.job.ready,
                                                           it.out.valid, it.out.payload.as_value())
            i += jv and jr
            if ov:
                k, sa, wa = unpack(ol, op, "kind", "sa", "wa")
                got.append((k, sa, wa) if k == SPIKE else (k,))
                cycles.append(cycle)
            cycle += 1
            assert cycle < 100

    sim = Simulator(it)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    assert got == want
    assert cycles == list(range(cycles[0], cycles[0] + len(want)))     # one per cycle


def test_engine_latency_is_three_cycles():
    eng = ConvEngine((1, 5, 5), (2, 5, 5), 3, 1, 1, 1)
    lay = eng.inp.payload.shape()
    seen = {}

    async def bench(ctx):
        ctx.set(eng.out.ready, 1)
        ctx.set(eng.inp.payload.as_value(), pack(lay, kind=SPIKE, c=0, y=2, x=2))
        ctx.set(eng.inp.valid, 1)
        for cycle in range(10):
            _, _, iv, ir, ov = await ctx.tick().sample(eng.inp.valid, eng.inp.ready,
                                                       eng.out.valid)
            if iv and ir:
                seen.setdefault("in", cycle)
                ctx.set(eng.inp.valid, 0)
            if ov:
                seen.setdefault("out", cycle)

    sim = Simulator(eng)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    assert seen["out"] - seen["in"] == 3


def test_network_rejects_bad_parameters():
    import numpy as np
    model = random_model(np.random.default_rng(0))
    with pytest.raises(ValueError, match="fifo_depth"):
        Network(model, fifo_depth=1)
    with pytest.raises(ValueError, match="lanes"):
        Network(model, lanes=0)
