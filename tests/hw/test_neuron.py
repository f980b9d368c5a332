"""Neuron core (through its layer): every reset mode, leak and no leak, clamping with the
overflow flag, per-channel thresholds and bias across lane groups, same-address hazards,
output back-pressure, and the documented sweep cycle counts."""

import random
from collections import Counter

import numpy as np
import pytest
from amaranth.hdl import Fragment
from amaranth.sim import Simulator

from hw.layer import LayerEngine
from hw.neuron import NeuronCore
from hw.stream import END_SAMPLE, END_STEP, SPIKE
from sim.cycles import CoreModel, fired_words
from sim.events import BinnedEvents
from sim.geometry import shape3
from sim.liveness import quiet_words
from sim.model import RESETS, Current
from sim.randmodel import random_binned, random_layer
from sim.reference import run as ref_run

from .harness import (items_from_binned, pack, reference_layer, run_layer,
                      single_layer_model, unpack)


def check(layer, binned, lanes, *, seed=0, count_clip=1, **kw):
    items = items_from_binned(binned, layer.in_shape, random.Random(seed))
    res, dut = run_layer(layer, lanes, items, seed=seed, **kw)
    spikes, states, ovf, _ = reference_layer(layer, binned, count_clip, kw.get("fire", True))
    T = binned.timesteps
    assert len(res["spikes"]) == T
    for k in range(T):
        assert len(res["spikes"][k]) == len(set(res["spikes"][k])), f"step {k}: duplicate"
        assert set(res["spikes"][k]) == spikes[k], f"step {k}: spikes"
        np.testing.assert_array_equal(res["states"][k], states[k], err_msg=f"step {k}")
        assert res["ovf"][k] == ovf[k], f"step {k}: overflow"
    return res, ovf, spikes


@pytest.mark.parametrize("reset", ["subtract", "zero", "none"])
@pytest.mark.parametrize("leak", [False, True])
def test_reset_and_leak(reset, leak):
    seed = ["subtract", "zero", "none"].index(reset) * 2 + leak
    rng = np.random.default_rng(100 + seed)
    layer = random_layer(rng, "c", "conv2d", (2, 5, 6), kernel=3, stride=1, padding=1,
                         out_channels=3, reset=reset, leak=leak, fire_scale=0.8)
    binned = random_binned(rng, (2, 5, 6), 4, density=0.4)
    _, _, spikes = check(layer, binned, 2, seed=seed)
    assert any(spikes), "the case must fire to test the reset"


@pytest.mark.parametrize("seed", range(3))
def test_clamp_sets_overflow(seed):
    """Narrow states and big positive weights: the accumulator leaves the state range."""
    rng = np.random.default_rng(200 + seed)
    layer = random_layer(rng, "c", "conv2d", (2, 4, 4), kernel=3, stride=1, padding=1,
                         out_channels=2, weight_bits=8, state_bits=8, fire_scale=3.0,
                         reset="none", leak=False)
    layer.weights = np.abs(layer.weights)
    layer.weights[0] = -layer.weights[0]                       # one channel underflows
    layer.acc_bits = layer.required_acc_bits(1)
    binned = random_binned(rng, (2, 4, 4), 3, density=0.8)
    _, ovf, _ = check(layer, binned, 1 + seed % 2, seed=seed)
    assert ovf.any()


def test_per_channel_threshold_and_bias_across_groups():
    """G > 1 with per-channel thresholds and a bias: the small parameter ROMs."""
    rng = np.random.default_rng(5)
    layer = random_layer(rng, "c", "conv2d", (1, 5, 5), kernel=3, stride=1, padding=1,
                         out_channels=7, bias=True, per_channel=True, fire_scale=0.5)
    assert len(set(layer.threshold.tolist())) > 1
    binned = random_binned(rng, (1, 5, 5), 4, density=0.5)
    check(layer, binned, 3, seed=5)


@pytest.mark.parametrize("lanes", [1, 2, 4])
def test_same_address_hazards(lanes):
    """Back-to-back identical events (a count-clipped source) and events whose windows
    overlap hit the same state word in consecutive cycles."""
    rng = np.random.default_rng(7)
    layer = random_layer(rng, "c", "conv2d", (1, 4, 4), kernel=1, stride=1, padding=0,
                         out_channels=4, count_clip=4, leak=False, reset="subtract")
    frames = np.zeros((3, 1, 4, 4), dtype=np.int64)
    frames[0, 0, 1, 1] = 4
    frames[1, 0, 2, 3] = 3
    frames[1, 0, 0, 0] = 4
    frames[2] = rng.integers(0, 5, size=(1, 4, 4))
    binned = BinnedEvents.from_frames(frames)
    check(layer, binned, lanes, seed=lanes, count_clip=4, gap=0.0, ready=1.0)


def test_output_backpressure():
    """The sink refuses everything for a long time, then stalls at random."""
    rng = np.random.default_rng(9)
    layer = random_layer(rng, "c", "conv2d", (2, 5, 5), kernel=3, stride=2, padding=1,
                         out_channels=4, fire_scale=0.3)
    binned = random_binned(rng, (2, 5, 5), 3, density=0.6)
    check(layer, binned, 4, seed=9, hold_ready_low=300, ready=0.3)


def test_membrane_layer_never_fires():
    rng = np.random.default_rng(11)
    layer = random_layer(rng, "fc", "linear", (10,), n_out=5, fire_scale=0.3)
    binned = random_binned(rng, (10, 1, 1), 3, density=0.6)
    res, _, _ = check(layer, binned, 2, fire=False)
    assert not any(res["spikes"])


@pytest.mark.parametrize("lanes,fire_scale", [(2, 100.0), (2, 0.01), (3, 0.01)])
def test_sweep_cycle_counts(lanes, fire_scale):
    """The documented timing: a step token accepted by the core in cycle 0 leaves in cycle
    ``D + 7 + sum(max(0, p - 1))``; a clear takes ``D + 1``; word ``a`` enters the last
    stage (P5) in cycle ``a + 6 + extra(a)``."""
    rng = np.random.default_rng(13)
    layer = random_layer(rng, "c", "conv2d", (1, 4, 5), kernel=3, stride=1, padding=1,
                         out_channels=4, fire_scale=fire_scale, bias=False, leak=False)
    dut = LayerEngine(layer, lanes)
    lay, olay = dut.inp.payload.shape(), dut.out.payload.shape()
    items = [pack(lay, kind=SPIKE, c=0, y=1, x=1), pack(lay, kind=SPIKE, c=0, y=3, x=4),
             pack(lay, kind=END_STEP), pack(lay, kind=END_SAMPLE)]
    log = []

    async def bench(ctx):
        ctx.set(dut.out.ready, 1)
        i = 0
        for cycle in range(400):
            ctx.set(dut.inp.valid, i < len(items))
            if i < len(items):
                ctx.set(dut.inp.payload.as_value(), items[i])
            _, _, iv, ir, uv, ur, uk, ov, op = await ctx.tick().sample(
                dut.inp.valid, dut.inp.ready, dut.core.upd.valid, dut.core.upd.ready,
                dut.core.upd.payload.kind, dut.out.valid, dut.out.payload.as_value())
            i += iv and ir
            if uv and ur and uk != SPIKE:
                log.append(("in", uk, cycle))
            if ov:
                kind, c, y, x = unpack(olay, op, "kind", "c", "y", "x")
                log.append(("out", kind, cycle, (c, y, x)))

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    t_step = next(e[2] for e in log if e[0] == "in" and e[1] == END_STEP)
    t_sample = next(e[2] for e in log if e[0] == "in" and e[1] == END_SAMPLE)
    spikes = [e for e in log if e[0] == "out" and e[1] == SPIKE]
    tok = next(e[2] for e in log if e[0] == "out" and e[1] == END_STEP)
    tok2 = next(e[2] for e in log if e[0] == "out" and e[1] == END_SAMPLE)
    # spikes per word: word a = pos*G + g holds channels g*L .. g*L+L-1 at pos = y*Wo + x
    G = dut.G
    per_word = {}
    for _, _, _, (c, y, x) in spikes:
        a = (y * 5 + x) * G + c // lanes
        per_word[a] = per_word.get(a, 0) + 1
    extra = sum(max(0, p - 1) for p in per_word.values())
    assert tok - t_step == dut.D + 7 + extra
    assert tok2 - t_sample == dut.D + 1
    # every spike: word a enters P5 in cycle a + 6 + extra(a), its lanes follow in order
    rank, last_c = {}, {}
    for _, _, cycle, (c, y, x) in spikes:
        a = (y * 5 + x) * G + c // lanes
        r = rank.get(a, 0)
        rank[a] = r + 1
        assert c > last_c.get(a, -1), "lowest lane first"
        last_c[a] = c
        extra_a = sum(max(0, p - 1) for b, p in per_word.items() if b < a)
        assert cycle - t_step == a + 6 + extra_a + r
    if fire_scale > 1:
        assert not spikes or len(spikes) < 3
    else:
        assert extra > 0


@pytest.mark.parametrize("lanes", [1, 2])
def test_core_rmw_hazards_direct(lanes):
    """The core alone, driven with hand-picked address patterns that the layer engine
    rarely produces: the same word 1 and 2 cycles apart (``a a``, ``a b a``), the last
    update of a step on word 0 right before the token (its write-back lands in the cycle
    the sweep reads word 0), and an end-of-sample token right after an update (its write
    lands in the first clear cycle). Membrane core (no firing), no leak, no bias: the
    tapped ``u`` of every word of every step must be the clamped running sum computed here
    from the update list."""
    rng = np.random.default_rng(17 + lanes)
    layer = random_layer(rng, "c", "conv2d", (1, 2, 2), kernel=1, stride=1, padding=0,
                         out_channels=4, weight_bits=5, state_bits=7, leak=False, bias=False)
    wbits = 5
    dut = NeuronCore(layer, lanes, wbits=wbits, fire=False)
    D, L = dut.D, lanes
    smin, smax = layer.state_min, layer.state_max
    pats = [[0, 0, 0], [1, 2, 1, 2, 1], [3, 0, 3, 0, 0], [D - 1, 1, D - 1, 1, 0]]
    items, steps = [], []
    for k in range(8):
        seq = list(pats[k % len(pats)]) + rng.integers(0, min(D, 3), size=6).tolist()
        seq += [0] if k % 2 == 0 else [int(rng.integers(D)), 0]
        ups = [(a, rng.integers(-(1 << (wbits - 1)), 1 << (wbits - 1), size=L).tolist())
               for a in seq]
        items += [("u", a, w) for a, w in ups]
        kind = END_SAMPLE if k in (3, 6) else END_STEP
        items.append(("t", kind))
        steps.append((kind, ups))
    taps, toks = [], []

    async def bench(ctx):
        ctx.set(dut.out.ready, 1)
        i, pend = 0, None
        for _ in range(2000):
            w = pend if pend is not None else rng.integers(-16, 16, size=L).tolist()
            ctx.set(dut.wdata, sum((x & ((1 << wbits) - 1)) << (j * wbits)
                                              for j, x in enumerate(w)))
            it = items[i] if i < len(items) else None
            ctx.set(dut.upd.valid, it is not None)
            if it is not None:
                ctx.set(dut.upd.payload.kind, SPIKE if it[0] == "u" else it[1])
                ctx.set(dut.upd.payload.sa, it[1] if it[0] == "u" else 0)
            _, _, rdy, tv, ta, tu, ov, ok = await ctx.tick().sample(
                dut.upd.ready, dut.tap_valid, dut.tap_addr, dut.tap_u.as_value(),
                dut.out.valid, dut.out.payload.kind)
            pend = None
            if it is not None and rdy:
                i += 1
                pend = it[2] if it[0] == "u" else None
            if tv:
                taps.append((ta, tu))
            if ov:
                toks.append(ok)
            if i == len(items) and len(toks) == len(steps):
                break

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    assert toks == [kind for kind, _ in steps]
    Sb = layer.state_bits
    v = np.zeros((D, L), dtype=np.int64)
    got = iter(taps)
    for kind, ups in steps:
        for a, w in ups:
            v[a] += w
        if kind == END_SAMPLE:
            v[:] = 0
            continue
        u = np.clip(v, smin, smax)
        for a in range(D):
            ta, tu = next(got)
            assert ta == a
            lanes_u = [((tu >> (j * Sb)) & ((1 << Sb) - 1)) for j in range(L)]
            lanes_u = [x - (1 << Sb) if x >> (Sb - 1) else x for x in lanes_u]
            assert lanes_u == u[a].tolist(), f"word {a}"
        v = u
    assert next(got, None) is None


# -- contract v2 neurons: spike_limit, v_min, current-based ---------------------------------

def v2_layer(rng, kind, in_shape, *, spike_limit=1, v_min=None, current=None,
             count_clip=1, **kw):
    """A random single-synapse layer with the v2 neuron fields; ``acc_bits`` is the
    contract's worst case (the current's range included)."""
    layer = random_layer(rng, "v2", kind, in_shape, count_clip=count_clip, **kw)
    layer.spike_limit = spike_limit
    if v_min == "random":
        v_min = -int(rng.integers(0, layer.state_max + 2))
    layer.v_min = v_min
    layer.current = current
    layer.acc_bits = layer.required_acc_bits(count_clip)
    return layer


def check_v2(layer, binned, lanes, *, seed=0, count_clip=1, fire=True, items=None, **kw):
    """Run one layer in hardware and compare with sim.reference every step: the spike
    count of every neuron (a count ``s`` is ``s`` identical events back to back), every
    stored state and current, and the overflow flag. Returns the reference result."""
    in_shape = layer.in_shape if items is None else None
    if items is None:
        items = items_from_binned(binned, in_shape, random.Random(seed))
    res, dut = run_layer(layer, lanes, items, seed=seed, fire=fire, **kw)
    model = single_layer_model(layer, binned.timesteps, count_clip,
                               "spike_count" if fire else "membrane")
    r = ref_run(model, binned, backend="numpy")
    T = binned.timesteps
    assert len(res["spikes"]) == T
    shape = shape3(layer.out_shape)
    for k in range(T):
        got = res["spikes"][k]
        runs = [e for i, e in enumerate(got) if i == 0 or got[i - 1] != e]
        assert len(runs) == len(set(runs)), f"step {k}: a neuron's spikes are not consecutive"
        counts = r.spikes[layer.name][k].reshape(shape)
        want = {tuple(int(v) for v in idx): int(counts[tuple(idx)])
                for idx in np.argwhere(counts)}
        assert dict(Counter(got)) == want, f"step {k}: spike counts"
        np.testing.assert_array_equal(res["states"][k], r.states[layer.name][k].reshape(-1),
                                      err_msg=f"step {k}: states")
        if layer.current is not None:
            np.testing.assert_array_equal(res["currents"][k],
                                          r.currents[layer.name][k].reshape(-1),
                                          err_msg=f"step {k}: currents")
        assert res["ovf"][k] == bool(r.overflow[layer.name][k]), f"step {k}: overflow"
    return r, res, dut


@pytest.mark.parametrize("limit", [2, 3, 4])
@pytest.mark.parametrize("reset", ["subtract", "zero", "none"])
def test_spike_limit(limit, reset):
    """Counts up to ``spike_limit`` (restoring division, saturation where ``M + 1`` is not
    a power of two), per-channel thresholds across lane groups, every reset mode."""
    seed = limit * 3 + ["subtract", "zero", "none"].index(reset)
    rng = np.random.default_rng(300 + seed)
    layer = v2_layer(rng, "conv2d", (2, 5, 5), kernel=3, stride=1, padding=1, out_channels=5,
                     spike_limit=limit, reset=reset, fire_scale=0.15, count_clip=2,
                     per_channel=seed % 2 == 0, weight_bits=6, state_bits=10)
    binned = random_binned(rng, (2, 5, 5), 4, count_clip=2, density=0.5)
    r, _, _ = check_v2(layer, binned, 2, seed=seed, count_clip=2)
    counts = r.spikes["v2"]
    assert (counts == limit).any(), "the case must saturate the count"
    assert ((counts > 1) & (counts < limit)).any() or limit == 2


@pytest.mark.parametrize("seed", range(3))
def test_v_min(seed):
    """A lower bound on ``u``: inhibitory weights, the flag only for the state clamp."""
    rng = np.random.default_rng(400 + seed)
    layer = v2_layer(rng, "linear", (12,), n_out=5, v_min=(0, -3, -int(rng.integers(1, 9)))[seed], leak=False,
                     weight_bits=6, state_bits=8, reset="subtract", fire_scale=1.0)
    layer.weights = -np.abs(layer.weights)
    layer.weights[:, :3] = np.abs(layer.weights[:, :3])
    binned = random_binned(rng, (12, 1, 1), 5, density=0.6)
    r, _, _ = check_v2(layer, binned, 1 + seed, seed=seed)
    layer.v_min = None
    unbounded = ref_run(single_layer_model(layer, 5), binned, backend="numpy")
    assert (unbounded.states["v2"] != r.states["v2"]).any(), "the bound must matter"


@pytest.mark.parametrize("seed", range(6))
def test_current_based(seed):
    """Current-based layers: the current's own width (narrow: it clamps, and the flag
    follows it) and leak, bias into the current, every reset, spike_limit and v_min."""
    rng = np.random.default_rng(500 + seed)
    cfrac = int(rng.integers(0, 4))
    current = Current(beta_num=int(rng.integers(1, (1 << cfrac) + 1)), beta_frac_bits=cfrac,
                      state_bits=int(rng.integers(4, 9)))
    kind = ("conv2d", "linear", "sumpool2d")[seed % 3]
    shape = (2, 4, 5) if kind != "linear" else (9,)
    kw = dict(kernel=2, out_channels=3) if kind == "conv2d" else \
        dict(n_out=6) if kind == "linear" else dict(kernel=2)
    layer = v2_layer(rng, kind, shape, current=current, spike_limit=1 + seed % 3,
                     v_min="random" if seed % 2 else None, bias=seed < 4,
                     reset=RESETS[seed % 3], fire_scale=0.4, state_bits=9,
                     weight_bits=5 if kind != "sumpool2d" else None, **kw)
    binned = random_binned(rng, shape3(shape), 5, density=0.5)
    lanes = max(1, shape3(layer.out_shape)[0] - seed % 2)
    r, res, _ = check_v2(layer, binned, lanes, seed=seed)
    assert (r.currents["v2"] != 0).any()


def test_current_clamp_sets_overflow():
    """A narrow current: clamping it alone sets the layer's overflow flag."""
    rng = np.random.default_rng(77)
    layer = v2_layer(rng, "linear", (8,), n_out=3, weight_bits=6, state_bits=12,
                     current=Current(beta_num=1, beta_frac_bits=0, state_bits=4),
                     fire_scale=30.0, bias=False)
    layer.weights = np.abs(layer.weights) + 1
    binned = random_binned(rng, (8, 1, 1), 3, density=0.8)
    r, _, _ = check_v2(layer, binned, 3)
    assert r.overflow["v2"].any()


def test_v2_membrane_core():
    """A current-based membrane core (never fires, ``spike_limit`` ignored)."""
    rng = np.random.default_rng(81)
    layer = v2_layer(rng, "linear", (10,), n_out=4, spike_limit=3, v_min=-5,
                     current=Current(beta_num=3, beta_frac_bits=2, state_bits=7),
                     fire_scale=0.3)
    binned = random_binned(rng, (10, 1, 1), 3, density=0.6)
    _, res, _ = check_v2(layer, binned, 2, fire=False)
    assert not any(res["spikes"])


@pytest.mark.parametrize("limit,lanes,ready,sweep", [
    (3, 2, 1.0, "dense"), (4, 3, 0.6, "dense"), (2, 1, 0.8, "dense"), (3, 2, 0.7, "sparse"),
    (2, 3, 1.0, "sparse")])
def test_core_model_counts(limit, lanes, ready, sweep):
    """sim.cycles.CoreModel against the RTL, cycle for cycle, on a multi-spike layer with
    random output stalls (dense and sparse sweeps): every offered event (a neuron with
    count ``s`` is ``s`` identical events back to back) and token in the same cycle, so a
    word with ``p`` spikes in total holds P5 ``max(1, p)`` cycles while ``out.ready``
    stays high."""
    seed = limit * 10 + lanes + (sweep == "sparse")
    rng = np.random.default_rng(800 + seed)
    layer = v2_layer(rng, "conv2d", (2, 4, 4), kernel=3, stride=1, padding=1, out_channels=4,
                     spike_limit=limit, fire_scale=0.1, count_clip=2, weight_bits=6,
                     state_bits=10, bias=False)
    T = 3
    binned = random_binned(rng, (2, 4, 4), T, count_clip=2, density=0.6)
    items = items_from_binned(binned, (2, 4, 4), random.Random(seed))
    dut = LayerEngine(layer, lanes, sweep=sweep)
    assert dut.core.sweep == sweep
    lay, olay = dut.inp.payload.shape(), dut.out.payload.shape()
    words = [pack(lay, kind=SPIKE, c=it[1], y=it[2], x=it[3]) if it[0] == "s" else
             pack(lay, kind=END_STEP if it[0] == "t" else END_SAMPLE) for it in items]
    prng = random.Random(seed)
    log = []                            # per cycle: (upd kind taken, its sa, ready, offer)

    async def bench(ctx):
        i, tokens = 0, 0
        for cycle in range(5000):
            ctx.set(dut.inp.valid, i < len(words))
            if i < len(words):
                ctx.set(dut.inp.payload.as_value(), words[i])
            r = prng.random() < ready
            ctx.set(dut.out.ready, r)
            _, _, iv, ir, uv, ur, uk, usa, ov, op = await ctx.tick().sample(
                dut.inp.valid, dut.inp.ready, dut.core.upd.valid, dut.core.upd.ready,
                dut.core.upd.payload.kind, dut.core.upd.payload.sa, dut.out.valid,
                dut.out.payload.as_value())
            i += iv and ir
            offer = unpack(olay, op, "kind", "c", "y", "x") if ov else None
            log.append((uk if uv and ur else None, usa, r, offer))
            if ov and r and offer[0] != SPIKE:
                tokens += 1
                if tokens == T + 1:
                    break

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    r = ref_run(single_layer_model(layer, T, 2), binned, backend="numpy")
    counts = r.spikes["v2"]
    assert (counts > 1).any(), "the case must emit counts"
    loud = None
    if sweep == "sparse":
        loud = quiet_words(layer, counts, r.states["v2"], dut.G, lanes)
    core = CoreModel(layer.out_shape, lanes, fired_words(counts, layer.out_shape, lanes), loud)
    for t, (upd_kind, upd_sa, rdy, offer) in enumerate(log):
        want = tuple(core.out_event()) if core.out_valid else None
        assert offer == want, f"cycle {t}"
        core.clock(t, upd_kind, rdy, upd_sa)
    assert len(core.step_done) == T


@pytest.mark.parametrize("per_channel", [False, True])
def test_spike_limit_high_threshold(per_channel):
    """Thresholds above half the state maximum: ``2*threshold`` lies outside the state
    range, so no count reaches 2 although the accumulator does (it clamps)."""
    rng = np.random.default_rng(900 + per_channel)
    layer = v2_layer(rng, "linear", (8,), n_out=5, spike_limit=3, weight_bits=7, state_bits=6,
                     reset="none", fire_scale=1.0, bias=False, per_channel=per_channel)
    smax = layer.state_max
    layer.threshold = np.asarray([smax - 2 * c for c in range(5)] if per_channel
                                 else [smax // 2 + 1] * 5, dtype=np.int64)
    layer.weights = np.abs(layer.weights)
    layer.acc_bits = layer.required_acc_bits(1)
    binned = random_binned(rng, (8, 1, 1), 3, density=0.9)
    r, _, _ = check_v2(layer, binned, 2)
    assert r.overflow["v2"].any() and r.spikes["v2"].max() == 1


def test_layer_info_reads_the_core_word():
    """sim.tb.model.LayerInfo (the cocotb benches' plain copy of the word layout) reads a
    current-based core's words as NeuronCore.split_word does."""
    from sim.tb.model import LayerInfo
    rng = np.random.default_rng(95)
    layer = v2_layer(rng, "conv2d", (1, 3, 3), kernel=1, out_channels=5, state_bits=7,
                     current=Current(beta_num=1, beta_frac_bits=1, state_bits=5))
    core = NeuronCore(layer, 2, wbits=layer.weight_bits)
    Fragment.get(core, None)                        # elaborates (the word layout is real)
    info = LayerInfo(layer, 2)
    assert info.word_bits == core.word.size
    words = [int(rng.integers(0, 1 << 62)) & ((1 << info.word_bits) - 1) for _ in range(core.D)]
    # padding lanes (channel 5 of group 2) must be zero for both readers
    for a in range(2, core.D, 3):
        v, i = core.split_word(words[a])
        v[1], i[1] = 0, 0
        words[a] = sum((x & ((1 << core.v_bits) - 1)) << (j * core.v_bits)
                       for j, x in enumerate(v)) + \
            sum((x & ((1 << layer.acc_bits) - 1)) << (2 * core.v_bits + j * layer.acc_bits)
                for j, x in enumerate(i))
    from .harness import words_to_states
    np.testing.assert_array_equal(info.states_from_words(words), words_to_states(words, core))
    np.testing.assert_array_equal(info.currents_from_words(words),
                                  words_to_states(words, core, current=True))


# ---------------------------------------------------------------- sparse sweep (issue 15)
@pytest.mark.parametrize("seed", range(8))
def test_sparse_sweep_matches_reference(seed):
    """The sparse core (live list) on random layers without bias, under random input
    gaps and output stalls: every spike, state and overflow flag of every step as the
    reference's (spikes as a set: the emission order is the list order)."""
    rng = np.random.default_rng(300 + seed)
    kind = "linear" if seed % 4 == 3 else "conv2d"
    shape = (2, 4, 5) if kind == "conv2d" else (12,)
    kw = dict(n_out=int(rng.integers(2, 9))) if kind == "linear" else {}
    layer = random_layer(rng, "c", kind, shape, bias=False, fire_scale=0.5,
                         leak=seed % 3 != 0, **kw)
    binned = random_binned(rng, (2, 4, 5) if kind == "conv2d" else (12, 1, 1), 5,
                           density=0.3)
    res, _, _ = check(layer, binned, 1 + seed % 3, seed=seed, sweep="sparse",
                      ready=0.6)
    assert res is not None


@pytest.mark.parametrize("seed", range(3))
def test_sparse_sweep_multi_spike(seed):
    """The sparse core with the version-2 options it takes (``spike_limit``, ``v_min``;
    no bias, no current): every spike count, state and flag as the reference's."""
    rng = np.random.default_rng(950 + seed)
    layer = v2_layer(rng, "conv2d", (2, 4, 4), kernel=3, stride=1, padding=1, out_channels=3,
                     spike_limit=2 + seed, v_min=-3 if seed != 1 else None, bias=False,
                     fire_scale=0.15, weight_bits=6, state_bits=10)
    binned = random_binned(rng, (2, 4, 4), 5, density=0.3)
    r, res, dut = check_v2(layer, binned, 2, seed=seed, sweep="sparse", ready=0.6)
    assert dut.core.sweep == "sparse"
    assert (r.spikes["v2"] > 1).any()


@pytest.mark.parametrize("lanes", [1, 3])
def test_sparse_sweep_cycle_counts(lanes):
    """The documented sparse timing (hw.neuron, hw.livelist): a list read ahead (the
    token comes long after the previous sweep) gives the dense rule over the ``N``
    listed words (token offered ``N + 7`` cycles after the core takes the end-of-step
    token, no spikes here); an empty list offers it after 4."""
    rng = np.random.default_rng(21)
    layer = random_layer(rng, "c", "conv2d", (1, 4, 5), kernel=3, stride=1, padding=1,
                         out_channels=4, fire_scale=100.0, bias=False, leak=True,
                         reset="subtract")
    layer.beta_num, layer.beta_frac_bits = 1, 1              # quiet: -1 .. 0
    wmax = (1 << (layer.weight_bits - 1)) - 1
    layer.weights = np.minimum(np.abs(layer.weights) + 1, wmax)   # positive states: loud
    layer.threshold[:] = layer.state_max
    layer.acc_bits = layer.required_acc_bits(1)
    dut = LayerEngine(layer, lanes, sweep="sparse")
    assert dut.core.sweep == "sparse"
    lay = dut.inp.payload.shape()
    step1 = [pack(lay, kind=SPIKE, c=0, y=1, x=1), pack(lay, kind=SPIKE, c=0, y=3, x=4)]
    items = step1 + [pack(lay, kind=END_STEP)] * 12 + [pack(lay, kind=END_SAMPLE)]
    log = []

    async def bench(ctx):
        ctx.set(dut.out.ready, 1)
        i, offer_at = 0, 0
        for cycle in range(3000):
            offering = i < len(items) and cycle >= offer_at
            ctx.set(dut.inp.valid, offering)
            if offering:
                ctx.set(dut.inp.payload.as_value(), items[i])
            _, _, iv, ir, uv, ur, uk, ov, ok = await ctx.tick().sample(
                dut.inp.valid, dut.inp.ready, dut.core.upd.valid, dut.core.upd.ready,
                dut.core.upd.payload.kind, dut.out.valid, dut.out.payload.kind)
            if iv and ir:
                i += 1
                # a token long after the previous sweep: the list is read ahead by then
                offer_at = cycle + (120 if i > len(step1) else 0)
            if uv and ur and uk == END_STEP:
                log.append(["in", cycle, None])
            if ov and ok == END_STEP and log[-1][2] is None:
                log[-1][2] = cycle

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    # the listed words after each step: the reference's states (positive ones are loud)
    from sim.liveness import quiet_words
    from sim.reference import run

    from .harness import single_layer_model
    sizes = []
    frames = np.zeros((12, 1, 4, 5), dtype=np.int64)
    frames[0, 0, 1, 1] = frames[0, 0, 3, 4] = 1
    res = run(single_layer_model(layer, 12), BinnedEvents.from_frames(frames))
    loud = quiet_words(layer, res.spikes["c"], res.states["c"], dut.G, lanes)
    assert len(log) == 12
    for k in range(1, 12):
        n = len(loud[k - 1])
        sizes.append(n)
        assert log[k][2] - log[k][1] == (n + 7 if n else 4), f"step {k}: {n} listed"
    assert sizes[0] > 0 and sizes[-1] == 0, "the case must list words and then none"


@pytest.mark.parametrize("seed", range(3))
def test_sparse_sweep_split_ring(seed, monkeypatch):
    """A live list split into sub-rings (``hw.livelist.SUB_DEPTH``, here 4 words, so a
    ring of 20 words is 5): every spike, state and flag as the reference's."""
    import hw.livelist
    monkeypatch.setattr(hw.livelist, "SUB_DEPTH", 4)
    rng = np.random.default_rng(330 + seed)
    layer = random_layer(rng, "c", "conv2d", (2, 4, 5), kernel=3, stride=1, padding=1,
                         out_channels=2, bias=False, fire_scale=0.5, leak=True)
    binned = random_binned(rng, (2, 4, 5), 6, density=0.3)
    res, _, dut = check(layer, binned, 1 + seed % 2, seed=seed, sweep="sparse", ready=0.6)
    assert res is not None
