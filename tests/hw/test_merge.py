"""hw.merge.Merge against sim.cycles.MergeModel under random valid/ready stalls.

Drivers: per input the spike stream of a layer's bank over one sample: every step a
random number of spikes (random coordinates, repeats allowed), then the step's token
(END_STEP; END_SAMPLE after the last step), each item after a random gap and held until
its transfer; every input sends the same token sequence. Sink: ``out.ready`` at random
(random backpressure). Monitor: every cycle ``out.valid``, ``out.payload`` and every
``inp[i].ready`` are what the model says (``settle``/``inp_ready``/``clock`` fed with
:class:`sim.cycles.Event` tuples). Scoreboard: the spikes on ``out`` between two tokens
are, as a multiset, the spikes of that step of every input; one token per step, of the
step's kind."""

import random
from collections import Counter

import pytest
from amaranth.hdl import ClockDomain, Fragment, Module
from amaranth.sim import Simulator

from hw.merge import Merge
from sim.cycles import Event, MergeModel
from sim.geometry import END_SAMPLE, END_STEP, SPIKE

from .harness import pack, unpack

SHAPE = (3, 2, 5)


def _streams(rng, n, steps, n_max):
    """Per input the items of one sample (:class:`Event`), and per step the spikes of
    every input (a Counter)."""
    streams = [[] for _ in range(n)]
    per_step = [Counter() for _ in range(steps)]
    for k in range(steps):
        tok = END_SAMPLE if k == steps - 1 else END_STEP
        for i in range(n):
            for _ in range(rng.randrange(n_max + 1)):
                ev = Event(SPIKE, rng.randrange(SHAPE[0]), rng.randrange(SHAPE[1]),
                           rng.randrange(SHAPE[2]))
                streams[i].append(ev)
                per_step[k][ev] += 1
            streams[i].append(Event(tok, 0, 0, 0))
    return streams, per_step


def run_merge(n, seed, *, steps=12, n_max=6, gap=(0.2, 0.7), ready=(0.2, 0.7)):
    rng = random.Random(seed)
    dut = Merge(n, SHAPE)
    model = MergeModel(n)
    layout = dut.out.payload.shape()
    streams, per_step = _streams(rng, n, steps, n_max)
    p_gap = [rng.uniform(*gap) for _ in range(n)]
    p_ready = rng.uniform(*ready)
    got = []
    stats = {"cycles": 0, "locked": 0, "tok_wait": 0, "spikes": 0}
    limit = 40 * sum(len(s) for s in streams) + 100

    async def bench(ctx):
        pos = [0] * n
        offer = [None] * n
        for t in range(limit):
            for i in range(n):
                if offer[i] is None and pos[i] < len(streams[i]) and rng.random() >= p_gap[i]:
                    offer[i] = streams[i][pos[i]]
                    ctx.set(dut.inp[i].payload.as_value(), pack(layout, **offer[i]._asdict()))
                ctx.set(dut.inp[i].valid, offer[i] is not None)
            out_ready = rng.random() < p_ready
            ctx.set(dut.out.ready, out_ready)
            vals = (await ctx.tick().sample(
                dut.out.valid, dut.out.payload.as_value(),
                *(p.ready for p in dut.inp)))[2:]
            ovalid, opay, iready = bool(vals[0]), vals[1], [bool(r) for r in vals[2:]]
            # monitor against the model (values of the cycle, before the edge)
            if model.lock is not None and any(o is not None and o.kind == SPIKE
                                              for o in offer[:model.lock]):
                stats["locked"] += 1        # the lock kept a higher input's spike
            toks = [o is not None and o.kind != SPIKE for o in offer]
            if any(toks) and not all(toks):
                stats["tok_wait"] += 1      # a token waits for the other inputs
            pick, tok, ev = model.settle(offer)
            assert ovalid == (ev is not None), f"cycle {t}: out.valid"
            if ovalid:
                assert Event(*unpack(layout, opay, "kind", "c", "y", "x")) == ev, \
                    f"cycle {t}: out.payload"
            want = model.inp_ready(pick, tok, out_ready)
            if n == 1:
                # a wire: ready follows out.ready; the model agrees whenever it matters
                assert iready == [out_ready], f"cycle {t}: inp[0].ready"
                assert offer[0] is None or want == iready
            else:
                assert iready == want, f"cycle {t}: inp.ready"
            model.clock(pick, out_ready)
            if ovalid and out_ready:
                got.append(ev)
            for i in range(n):
                if offer[i] is not None and iready[i]:
                    offer[i] = None
                    pos[i] += 1
            if all(p == len(s) for p, s in zip(pos, streams)):
                stats["cycles"] = t
                return
        raise AssertionError("merge: items left after the time limit")

    top = Module()                  # a 1-input merge is a wire: give the bench a clock
    top.domains.sync = ClockDomain()
    top.submodules.merge = dut
    sim = Simulator(top)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()

    # scoreboard: per step the multiset of spikes, then one token of the step's kind
    tokens = [e.kind for e in got if e.kind != SPIKE]
    assert tokens == [END_STEP] * (steps - 1) + [END_SAMPLE], "token sequence"
    k, seen = 0, Counter()
    for e in got:
        if e.kind == SPIKE:
            seen[e] += 1
            stats["spikes"] += 1
        else:
            assert seen == per_step[k], f"step {k}: spikes lost, duplicated or changed"
            k, seen = k + 1, Counter()
    assert not seen
    assert sum(sum(c.values()) for c in per_step) == stats["spikes"]
    return stats


@pytest.mark.parametrize("n, seed", [(1, 0), (2, 1), (2, 2), (3, 3), (3, 4), (4, 5)])
def test_merge_matches_model(n, seed):
    stats = run_merge(n, seed)
    assert stats["spikes"] > 0
    if n > 1:
        # the lock held a higher input's spike while a lower one offered one, and a token
        # waited for the other inputs' tokens
        assert stats["locked"] > 0
        assert stats["tok_wait"] > 0


def test_merge_full_rate():
    """out.ready always high and no gaps: one spike per cycle, and each token leaves in
    the cycle after the last spike of its step (all inputs offer it then)."""
    stats = run_merge(3, 7, steps=4, gap=(0.0, 0.0), ready=(1.0, 1.0))
    assert stats["cycles"] == stats["spikes"] + 4 - 1


def test_merge_empty_steps():
    """Steps without spikes: the tokens pass one per cycle at full rate."""
    stats = run_merge(2, 8, steps=5, n_max=0, gap=(0.0, 0.0), ready=(1.0, 1.0))
    assert stats == {"cycles": 4, "locked": 0, "tok_wait": 0, "spikes": 0}


def test_one_input_is_a_wire():
    """Merge(1) is a wire: out is inp[0] and inp[0].ready is out.ready, every cycle."""
    dut = Merge(1, SHAPE)
    Fragment.get(dut, None)
    rng = random.Random(11)
    width = len(dut.inp[0].payload.as_value())

    async def bench(ctx):
        for _ in range(200):
            v, r, p = rng.random() < 0.5, rng.random() < 0.5, rng.randrange(1 << width)
            ctx.set(dut.inp[0].valid, v)
            ctx.set(dut.inp[0].payload.as_value(), p)
            ctx.set(dut.out.ready, r)
            assert ctx.get(dut.out.valid) == v
            assert ctx.get(dut.out.payload.as_value()) == p
            assert ctx.get(dut.inp[0].ready) == r
            await ctx.delay(1e-8)

    sim = Simulator(dut)
    sim.add_testbench(bench)
    sim.run()


@pytest.mark.parametrize("n", [0, -1, 1.0, True])
def test_bad_n(n):
    with pytest.raises(ValueError, match="n = .* must be an integer >= 1"):
        Merge(n, SHAPE)
