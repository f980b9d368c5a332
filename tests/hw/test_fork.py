"""hw.fork.Fork against sim.cycles.ForkModel under random valid/ready stalls.

Driver: one word after a random gap, held until its transfer. Monitors: the input
handshake and every output. Scoreboard: every output receives every word once, in
order; every cycle ``inp.ready`` and every ``out[i].valid`` are what the model says."""

import random

import pytest
from amaranth.hdl import ClockDomain, Module
from amaranth.sim import Simulator

from hw.fork import Fork
from sim.cycles import ForkModel
from sim.geometry import END_SAMPLE, END_STEP, SPIKE

from .harness import pack, unpack

SHAPE = (3, 4, 5)


def _words(rng, n):
    out = []
    for _ in range(n):
        kind = rng.choice([SPIKE] * 6 + [END_STEP, END_SAMPLE])
        out.append((kind, rng.randrange(3), rng.randrange(4), rng.randrange(5))
                   if kind == SPIKE else (kind, 0, 0, 0))
    return out


def run_fork(n, seed, *, words=60, gap=0.3, ready=(0.2, 0.9)):
    rng = random.Random(seed)
    dut = Fork(n, SHAPE)
    model = ForkModel(n)
    layout = dut.inp.payload.shape()
    items = _words(rng, words)
    p_ready = [rng.uniform(*ready) for _ in range(n)]
    got = [[] for _ in range(n)]
    stats = {"cycles": 0, "held": 0}

    async def bench(ctx):
        j, presenting = 0, False
        for t in range(words * 40):
            if not presenting and j < len(items) and rng.random() >= gap:
                presenting = True
                k, c, y, x = items[j]
                ctx.set(dut.inp.payload.as_value(), pack(layout, kind=k, c=c, y=y, x=x))
            ctx.set(dut.inp.valid, presenting)
            rdy = [rng.random() < p for p in p_ready]
            for o, r in zip(dut.out, rdy):
                ctx.set(o.ready, r)
            vals = (await ctx.tick().sample(
                dut.inp.ready, *(o.valid for o in dut.out),
                *(o.payload.as_value() for o in dut.out)))[2:]
            in_ready, ovalid, opay = vals[0], vals[1:1 + n], vals[1 + n:]
            # monitor against the model (values of the cycle, before the edge)
            assert in_ready == model.inp_ready(rdy), f"cycle {t}: inp.ready"
            assert list(map(bool, ovalid)) == model.out_valid(presenting), f"cycle {t}: valid"
            if presenting and not in_ready and any(rdy):
                stats["held"] += 1
            took = model.clock(presenting, rdy)
            for i in range(n):
                if ovalid[i] and rdy[i]:
                    assert took[i]
                    got[i].append(unpack(layout, opay[i], "kind", "c", "y", "x"))
            if presenting and in_ready:
                presenting = False
                j += 1
            if j == len(items) and not presenting:
                stats["cycles"] = t
                return
        raise AssertionError("fork: words left after the time limit")

    top = Module()                  # a 1-output fork is a wire: give the bench a clock
    top.domains.sync = ClockDomain()
    top.submodules.fork = dut
    sim = Simulator(top)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    for i in range(n):
        assert got[i] == items, f"output {i}: words lost, duplicated or reordered"
    return stats


@pytest.mark.parametrize("n, seed", [(1, 0), (2, 1), (2, 2), (3, 3), (4, 4)])
def test_fork_matches_model(n, seed):
    stats = run_fork(n, seed)
    if n > 1:
        # some consumer was ahead of another: the sent flags were exercised
        assert stats["held"] > 0


def test_fork_full_rate():
    """Every output ready and no gap: one word per cycle."""
    stats = run_fork(3, 9, words=40, gap=0.0, ready=(1.0, 1.0))
    assert stats["cycles"] == 39


def test_one_output_is_a_wire():
    from amaranth.hdl import Fragment
    dut = Fork(1, SHAPE)
    assert dut.sent == []
    Fragment.get(dut, None)


@pytest.mark.parametrize("n", [0, -1, 1.0, True])
def test_bad_n(n):
    with pytest.raises(ValueError, match="n = .* must be an integer >= 1"):
        Fork(n, SHAPE)
