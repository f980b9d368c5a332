"""hw.join.Join against sim.cycles.JoinModel under random valid/ready stalls.

Drivers: per live input the update stream of every step (spikes, then END_STEP; after
the last step END_SAMPLE), per replay input one step's updates (spikes, END_STEP) made
available at every ``go`` pulse, each item after a random gap and held until its
transfer; the input's "ROM" shows the weight word of the item offered in the previous
cycle (a registered read). Sink: the core's ``upd.ready`` at random. Monitor and
scoreboard: every cycle ``out``, every ``inp[i].ready``, ``go``, ``sample_end`` and
``busy`` as the model says; every spike reaches the core once, in the step it belongs
to, with its own ``sa`` and (one cycle later) its own weight word sign-extended to the
widest input; one token per step, of the right kind; ``go`` once per step."""

import random
from collections import deque

import pytest
from amaranth.hdl import ClockDomain, Module
from amaranth.sim import Simulator

from hw.join import Join
from sim.cycles import JoinModel
from sim.geometry import END_SAMPLE, END_STEP, SPIKE

DEPTH = 11


def _lanes_of(word, w, L):
    """Signed lanes of a packed word."""
    out = []
    for j in range(L):
        v = (word >> (j * w)) & ((1 << w) - 1)
        out.append(v - (1 << w) if v >> (w - 1) else v)
    return out


def _step(rng, i, s, k, n_max):
    """Spikes of input ``i`` in step ``k`` of sample ``s``: (kind, sa, tag)."""
    return [(SPIKE, rng.randrange(DEPTH), (i, s, k, j)) for j in range(rng.randrange(n_max + 1))]


def run_join(seed, n_live, n_replay, *, lanes=2, steps=3, samples=2, gap=0.3, ready=0.6,
             n_max=4):
    rng = random.Random(seed)
    n = n_live + n_replay
    wbits = [rng.randint(2, 6) for _ in range(n)]
    dut = Join(n_live, n_replay, depth=DEPTH, wbits=wbits, lanes=lanes)
    model = JoinModel(n_live, n_replay)
    wmax = max(wbits)
    rom = {}                                  # tag -> packed weight word of its input

    def word(i, tag):
        if tag not in rom:
            rom[tag] = rng.getrandbits(wbits[i] * lanes)
        return rom[tag]

    # what each input will offer; replay inputs get one step's batch per go
    queue = [deque() for _ in range(n)]
    batches = [deque() for _ in range(n)]
    expect = []                               # per step: (token kind, set of tags)
    for s in range(samples):
        for k in range(steps):
            tags = set()
            for i in range(n):
                items = _step(rng, i, s, k, n_max) + [(END_STEP, 0, None)]
                tags |= {it[2] for it in items if it[0] == SPIKE}
                if i < n_live:
                    queue[i].extend(items)
                else:
                    batches[i].append(items)
            expect.append((END_STEP, tags))
        for i in range(n_live):
            queue[i].append((END_SAMPLE, 0, None))
        expect.append((END_SAMPLE, set()))

    got = []                                  # per step: (token kind, list of tags)
    cur = []
    stats = {"gos": 0, "sample_ends": 0, "locks": 0}
    top = Module()
    top.domains.sync = ClockDomain()
    top.submodules.join = dut

    async def bench(ctx):
        offer = [None] * n                    # the item each input offers (held)
        last = [None] * n                     # the item offered in the previous cycle
        pending_w = None                      # tag taken by the core last cycle
        for t in range(4000):
            for i in range(n):
                if offer[i] is None and queue[i] and rng.random() >= gap:
                    offer[i] = queue[i].popleft()
                it = offer[i]
                ctx.set(dut.inp[i].valid, it is not None)
                if it is not None:
                    ctx.set(dut.inp[i].payload.kind, it[0])
                    ctx.set(dut.inp[i].payload.sa, it[1])
                ctx.set(dut.rom_data[i], word(i, last[i][2]) if last[i] and last[i][2] else
                        rng.getrandbits(wbits[i] * lanes))
            o_ready = rng.random() < ready
            ctx.set(dut.out.ready, o_ready)
            vals = (await ctx.tick().sample(
                dut.out.valid, dut.out.payload.kind, dut.out.payload.sa, dut.go,
                dut.sample_end, dut.busy, dut.wdata, *(p.ready for p in dut.inp)))[2:]
            ov, ok, osa, go, se, busy, wdata = vals[:7]
            irdy = list(map(bool, vals[7:]))
            offers = [it[0] if it is not None else None for it in offer]
            w = model.settle(offers, o_ready)
            # monitor: every handshake of the cycle as the model says
            assert bool(ov) == (w.out_kind is not None), f"cycle {t}: out.valid"
            if ov:
                assert ok == w.out_kind, f"cycle {t}: out.kind"
            assert irdy == w.inp_ready, f"cycle {t}: inp.ready"
            assert (bool(go), bool(se)) == (w.go, w.sample_end), f"cycle {t}: go/sample_end"
            assert bool(busy) == model.busy, f"cycle {t}: busy"
            # scoreboard: the weight word of the spike taken in the previous cycle
            if pending_w is not None:
                i, tag = pending_w
                want = _lanes_of(word(i, tag), wbits[i], lanes)
                assert _lanes_of(wdata, wmax, lanes) == want, f"cycle {t}: wdata"
            pending_w = None
            if ov and not o_ready and ok == SPIKE:
                stats["locks"] += 1
            if ov and o_ready:
                if ok == SPIKE:
                    i = w.pick
                    assert irdy[i] and offer[i][0] == SPIKE and osa == offer[i][1]
                    cur.append(offer[i][2])
                    pending_w = (i, offer[i][2])
                else:
                    got.append((ok, list(cur)))
                    cur.clear()
            if go:
                stats["gos"] += 1
                for i in range(n_live, n):
                    queue[i].extend(batches[i].popleft())
            stats["sample_ends"] += bool(se)
            model.clock(w, offers, o_ready)
            last = list(offer)
            for i in range(n):
                if offer[i] is not None and irdy[i]:
                    offer[i] = None
            if len(got) == len(expect):
                return
        raise AssertionError(f"join: {len(got)} of {len(expect)} steps after the limit")

    sim = Simulator(top)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    for k, ((wk, wtags), (gk, gtags)) in enumerate(zip(expect, got)):
        assert gk == wk, f"step {k}: token kind"
        assert len(gtags) == len(set(gtags)) and set(gtags) == wtags, f"step {k}: spikes"
    assert stats["sample_ends"] == samples
    return stats


@pytest.mark.parametrize("seed, n_live, n_replay", [
    (0, 1, 0), (1, 2, 0), (2, 3, 0), (3, 1, 1), (4, 2, 2), (5, 1, 3), (6, 4, 1)])
def test_join_matches_model(seed, n_live, n_replay):
    stats = run_join(seed, n_live, n_replay)
    assert stats["locks"] > 0
    if n_live + n_replay > 1:
        assert stats["gos"] == 2 * 3        # one per step, none for the END_SAMPLE "steps"


def test_full_rate_spikes_pass_in_their_cycle():
    """Core always ready, no gaps: the join never holds a spike back (it only
    serialises inputs offering in the same cycle)."""
    run_join(11, 2, 1, gap=0.0, ready=1.0, steps=2, samples=1)


@pytest.mark.parametrize("args, message", [
    ((0, 0), "n_live = 0 must be an integer >= 1"),
    ((1, -1), "n_replay = -1"),
    ((2, 0), "wbits = .* needs 2 integer widths"),
])
def test_bad_parameters(args, message):
    with pytest.raises(ValueError, match=message):
        Join(*args, depth=4, wbits=[3], lanes=1)
