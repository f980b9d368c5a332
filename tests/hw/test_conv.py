"""ConvEngine: the addresses of every input event against a brute-force oracle, with
random stalls, kernel/stride/padding corners, border and corner events, tokens; and
the no-bubble throughput with a full input queue."""

import random

import pytest
from amaranth.sim import Simulator

from hw.conv import ConvEngine, axis_table
from hw.stream import END_SAMPLE, END_STEP, SPIKE
from sim.model import conv_out_size

from .harness import pack, unpack


def oracle(event, in_shape, out_shape, K, S, P, G):
    """Updates ``(sa, wa)`` of one event, straight from ``oy*S - P + ky == y``."""
    c, y, x = event
    _, Ho, Wo = out_shape
    out = []
    for oy in range(Ho):
        ky = y + P - oy * S
        if not 0 <= ky < K:
            continue
        for ox in range(Wo):
            kx = x + P - ox * S
            if not 0 <= kx < K:
                continue
            for g in range(G):
                out.append(((oy * Wo + ox) * G + g, ((c * K + ky) * K + kx) * G + g))
    return out


@pytest.mark.parametrize("size,K,S,P", [(n, k, s, p) for n in (1, 4, 7) for k in (1, 2, 3, 5)
                                        for s in (1, 2, 3) for p in range(k)
                                        if conv_out_size(n, k, s, p) >= 1])
def test_axis_table(size, K, S, P):
    out = conv_out_size(size, K, S, P)
    for v, (o0, k0, n) in enumerate(axis_table(size, out, K, S, P)):
        want = [(o, v + P - o * S) for o in range(out) if 0 <= v + P - o * S < K]
        assert [(o0 + t, k0 - t * S) for t in range(n)] == want


def drive_engine(eng, items, *, seed, gap, ready, max_cycles=20000):
    """Feed ``items`` (tuples ``(kind, c, y, x)``, or ``(kind, c, y, x, tap)`` for an
    engine with taps), collect ``(kind, sa, wa)`` updates and the cycles in which
    ``out.valid`` was high."""
    prng = random.Random(seed)
    lay = eng.inp.payload.shape()
    olay = eng.out.payload.shape()
    words = [pack(lay, kind=it[0], c=it[1], y=it[2], x=it[3],
                  **({"tap": it[4]} if len(it) > 4 else {})) for it in items]
    got, valid_cycles = [], []

    async def bench(ctx):
        i, presenting, cycle = 0, False, 0
        n_tok = sum(1 for it in items if it[0] != SPIKE)
        seen = 0
        while seen < n_tok:
            if not presenting and i < len(words) and prng.random() >= gap:
                ctx.set(eng.inp.payload.as_value(), words[i])
                ctx.set(eng.inp.valid, 1)
                presenting = True
            ctx.set(eng.out.ready, prng.random() < ready)
            _, _, iv, ir, ov, orr, op = await ctx.tick().sample(
                eng.inp.valid, eng.inp.ready, eng.out.valid, eng.out.ready,
                eng.out.payload.as_value())
            if ov:
                valid_cycles.append(cycle)
            cycle += 1
            assert cycle < max_cycles
            if iv and ir:
                i += 1
                presenting = False
                ctx.set(eng.inp.valid, 0)
            if ov and orr:
                k, sa, wa = unpack(olay, op, "kind", "sa", "wa")
                got.append((k, sa, wa) if k == SPIKE else (k,))
                seen += k != SPIKE

    sim = Simulator(eng)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    return got, valid_cycles


CORNERS = [  # (C, H, W, K, S, P, G)
    (1, 5, 6, 1, 1, 0, 1), (2, 6, 5, 3, 1, 1, 1), (2, 7, 7, 3, 2, 1, 2), (1, 9, 8, 5, 2, 2, 1),
    (2, 6, 6, 2, 3, 0, 1), (1, 8, 7, 4, 3, 3, 3), (1, 6, 6, 7, 1, 3, 1), (2, 5, 5, 1, 2, 0, 2),
    (1, 3, 4, 5, 1, 4, 1),
]


@pytest.mark.parametrize("C,H,W,K,S,P,G", CORNERS)
def test_conv_engine_addresses(C, H, W, K, S, P, G):
    Ho, Wo = conv_out_size(H, K, S, P), conv_out_size(W, K, S, P)
    rng = random.Random(C * 1000 + H * 100 + K * 10 + S + P)
    events = [(c, y, x) for c in range(C) for y in (0, H - 1) for x in (0, W - 1)]   # corners
    events += [(0, y, 0) for y in range(H)] + [(C - 1, H - 1, x) for x in range(W)]   # borders
    events += [(rng.randrange(C), rng.randrange(H), rng.randrange(W)) for _ in range(20)]
    events += [events[-1]] * 3                                                      # repeats
    items, want = [], []
    for n, e in enumerate(events):
        items.append((SPIKE, *e))
        want += [(SPIKE, sa, wa) for sa, wa in oracle(e, (C, H, W), (C, Ho, Wo), K, S, P, G)]
        if n % 9 == 8:
            items.append((END_STEP, 0, 0, 0))
            want.append((END_STEP,))
    items += [(END_STEP, 0, 0, 0), (END_SAMPLE, 0, 0, 0)]
    want += [(END_STEP,), (END_SAMPLE,)]
    eng = ConvEngine((C, H, W), (4, Ho, Wo), K, S, P, G)
    got, _ = drive_engine(eng, items, seed=K * S + P, gap=0.4, ready=0.6)
    assert got == want


@pytest.mark.parametrize("K,S,P,G", [(3, 1, 1, 1), (5, 2, 2, 1), (3, 2, 1, 2), (1, 1, 0, 1)])
def test_conv_engine_no_bubbles(K, S, P, G):
    """With a full input queue and a ready sink, an event costs exactly its number of
    valid positions (times G): ``out.valid`` stays high from the first to the last update."""
    C, H, W = 2, 9, 9
    Ho, Wo = conv_out_size(H, K, S, P), conv_out_size(W, K, S, P)
    rng = random.Random(7)
    events = []
    while len(events) < 40:
        e = (rng.randrange(C), rng.randrange(H), rng.randrange(W))
        if oracle(e, (C, H, W), (C, Ho, Wo), K, S, P, G):
            events.append(e)
    items = [(SPIKE, *e) for e in events] + [(END_STEP, 0, 0, 0)]
    n_updates = sum(len(oracle(e, (C, H, W), (C, Ho, Wo), K, S, P, G)) for e in events)
    eng = ConvEngine((C, H, W), (C, Ho, Wo), K, S, P, G)
    got, valid_cycles = drive_engine(eng, items, seed=1, gap=0.0, ready=1.0)
    assert len(got) == n_updates + 1
    assert valid_cycles == list(range(valid_cycles[0], valid_cycles[0] + n_updates + 1))
