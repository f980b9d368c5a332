"""Identity synapses and taps: the identity engine's addresses (one update per event)
against a plain oracle with stalls, tap offsets in every engine, the tap-major ROM, and
single v2 layers with an identity or a multi-tap synapse fed with tap-tagged events
against the reference (every spike count, state, current and flag)."""

import random

import numpy as np
import pytest

from hw.identity import IdentityEngine
from hw.stream import END_SAMPLE, END_STEP, SPIKE
from hw.synapse import SynapseEngine
from hw.synapse_unit import engine_class
from sim.geometry import lane_groups, shape3
from sim.model import Current, Layer, Synapse
from sim.randmodel import random_binned, random_layer
from sim.registry import KINDS

from .harness import events_of_step
from .test_conv import ConvEngine, drive_engine, oracle
from .test_neuron import check_v2


@pytest.mark.parametrize("shape,L,taps", [((3, 4, 5), 3, 1), ((5, 2, 3), 2, 1), ((7,), 3, 2),
                                          ((2, 3, 3), 1, 3), ((4, 1, 2), 4, 2)])
def test_identity_engine_addresses(shape, L, taps):
    C, H, W = shape3(shape)
    G = lane_groups(C, L)
    rng = random.Random(C * 100 + L * 10 + taps)
    events = [(rng.randrange(C), rng.randrange(H), rng.randrange(W), rng.randrange(taps))
              for _ in range(40)]
    events += [(C - 1, H - 1, W - 1, taps - 1), (0, 0, 0, 0), (0, 0, 0, 0)]
    items, want = [], []
    for n, (c, y, x, t) in enumerate(events):
        items.append((SPIKE, c, y, x, t) if taps > 1 else (SPIKE, c, y, x))
        want.append((SPIKE, (y * W + x) * G + c // L, t * C + c))
        if n % 11 == 10:
            items.append((END_STEP, 0, 0, 0, 0) if taps > 1 else (END_STEP, 0, 0, 0))
            want.append((END_STEP,))
    items += [(END_STEP, 0, 0, 0), (END_SAMPLE, 0, 0, 0)]
    want += [(END_STEP,), (END_SAMPLE,)]
    eng = IdentityEngine(shape, G, L, taps=taps)
    assert eng.wa_depth == taps * C
    got, valid = drive_engine(eng, items, seed=taps, gap=0.3, ready=0.6)
    assert got == want
    # one update per event, no bubbles with a full queue and a ready sink
    got, valid = drive_engine(eng, items[:20], seed=1, gap=0.0, ready=1.0)
    assert valid == list(range(valid[0], valid[0] + len(got)))


def test_conv_engine_tap_offset():
    """A conv engine with 3 taps: an event of tap ``t`` has the single-tap addresses with
    ``t * tap_depth`` added to every weight address."""
    C, H, W, K, S, P, G, taps = 2, 5, 5, 3, 1, 1, 2, 3
    eng = ConvEngine((C, H, W), (3, H, W), K, S, P, G, taps=taps)
    depth = C * K * K * G
    assert (eng.tap_depth, eng.wa_depth) == (depth, taps * depth)
    rng = random.Random(5)
    items, want = [], []
    for _ in range(25):
        e = (rng.randrange(C), rng.randrange(H), rng.randrange(W))
        t = rng.randrange(taps)
        items.append((SPIKE, *e, t))
        want += [(SPIKE, sa, wa + t * depth)
                 for sa, wa in oracle(e, (C, H, W), (3, H, W), K, S, P, G)]
    items.append((END_STEP, 0, 0, 0, 0))
    want.append((END_STEP,))
    got, _ = drive_engine(eng, items, seed=3, gap=0.3, ready=0.7)
    assert got == want


def test_every_kind_has_an_engine():
    for name in KINDS:
        assert issubclass(KINDS[name].part("hw.engine"), SynapseEngine), name


def synapse_rom(syn, out_shape, lanes):
    return engine_class(syn).lane_rom(syn, syn.in_shape, out_shape, lanes)


def test_tap_major_rom():
    """Tap ``t`` of the ROM is the image of tap ``t``'s weights alone, at ``t*tap_depth``;
    the identity image has ``w[c]`` in lane ``c % L`` of word ``c``."""
    rng = np.random.default_rng(3)
    w = rng.integers(-7, 8, size=(3, 5))
    syn = Synapse("input", "identity", weights=w, weight_bits=4, taps=3, in_shape=(5, 2, 2))
    words, wbits = synapse_rom(syn, (5, 2, 2), 2)
    assert wbits == 4 and len(words) == 15
    for t in range(3):
        for c in range(5):
            assert words[t * 5 + c] == [int(w[t, c]) if j == c % 2 else 0 for j in range(2)]
    layer = random_layer(rng, "c", "conv2d", (2, 4, 4), kernel=3, out_channels=3)
    one, _ = synapse_rom(layer.synapse, layer.out_shape, 2)
    w2 = np.stack([layer.weights, -layer.weights])
    syn2 = Synapse("input", "conv2d", kernel=layer.kernel, stride=layer.stride,
                   padding=layer.padding, weights=w2, weight_bits=layer.weight_bits, taps=2,
                   in_shape=(2, 4, 4))
    two, _ = synapse_rom(syn2, layer.out_shape, 2)
    assert two == one + [[-x for x in word] for word in one]


def neuron_fields(rng, state_bits, out_channels, *, spike_limit=1, v_min=None, current=None,
                  reset=None, per_channel=True):
    """Random neuron fields of a v2 layer (thresholds low enough to fire)."""
    smax = (1 << (state_bits - 1)) - 1
    frac = int(rng.integers(0, 4))
    thr = rng.integers(1, 4, size=out_channels) if per_channel else \
        np.full(out_channels, int(rng.integers(1, 4)))
    return dict(bias=rng.integers(-3, 4, size=out_channels) if rng.random() < 0.5 else None,
                state_bits=state_bits, acc_bits=62,
                beta_num=int(rng.integers(0, (1 << frac) + 1)), beta_frac_bits=frac,
                threshold=np.minimum(thr, smax).astype(np.int64),
                threshold_per_channel=per_channel, reset=reset or ("subtract", "zero",
                                                                    "none")[int(rng.integers(3))],
                spike_limit=spike_limit, v_min=v_min, current=current)


def tap_items(binned, shape, taps, rng, delay=0):
    """Per step ``k``: the input events of step ``k - delay - j`` tagged with tap ``j``
    (what a delay line replays), shuffled, then the end of step."""
    items = []
    for k in range(binned.timesteps):
        evs = []
        for j in range(taps):
            if k - delay - j >= 0:
                evs += [(*e, j) for e in events_of_step(binned, k - delay - j, rng, shape)]
        rng.shuffle(evs)
        items += [("s", *e) for e in evs] + [("t",)]
    return items + [("e",)]


@pytest.mark.parametrize("seed", range(6))
def test_identity_layer(seed):
    """An identity synapse (one weight per channel) into a v2 layer, 1-3 taps."""
    rng = np.random.default_rng(600 + seed)
    shape = ((2, 3, 4), (5,), (3, 2, 2))[seed % 3]
    taps = 1 + seed % 3
    C = shape[0]
    wb = int(rng.integers(4, 7))
    lim = (1 << (wb - 1)) - 1
    w = rng.integers(-2, lim + 1, size=(taps, C) if taps > 1 else (C,))
    syn = Synapse("input", "identity", weights=w, weight_bits=wb, taps=taps, in_shape=shape)
    current = Current(beta_num=3, beta_frac_bits=2, state_bits=6) if seed in (2, 3) else None
    layer = Layer("v2", out_shape=shape, synapses=[syn],
                  **neuron_fields(rng, 8, C, spike_limit=1 + seed % 4,
                                  v_min=-4 if seed % 2 else None, current=current))
    clip = 1 + seed % 2
    layer.acc_bits = layer.required_acc_bits(clip)
    binned = random_binned(rng, shape3(shape), 5, count_clip=clip, density=0.6)
    items = tap_items(binned, shape, taps, random.Random(seed)) if taps > 1 else None
    r, res, _ = check_v2(layer, binned, max(1, C - 1), seed=seed, count_clip=clip,
                         items=items)
    assert any(res["spikes"]), "the case must fire"


@pytest.mark.parametrize("kind,taps,delay", [("conv2d", 2, 0), ("linear", 3, 0),
                                             ("sumpool2d", 2, 1), ("conv2d", 1, 2)])
def test_multi_tap_layer(kind, taps, delay):
    """A dense synapse with 1-3 taps (tap-major ROM) and a delay, fed with tap-tagged
    events as its delay line replays them (a delayed single-tap synapse has the field
    too, always 0)."""
    seed = taps * 7 + len(kind) + delay
    rng = np.random.default_rng(700 + seed)
    shape = (2, 5, 4) if kind != "linear" else (10,)
    kw = dict(kernel=3, out_channels=3, padding=1, stride=1) if kind == "conv2d" else \
        dict(n_out=5) if kind == "linear" else dict(kernel=2)
    base = random_layer(rng, "v2", kind, shape, fire_scale=0.5, state_bits=10,
                        weight_bits=None if kind == "sumpool2d" else 5, **kw)
    syn = base.synapse
    syn.taps, syn.delay = taps, delay
    if syn.weights is not None and taps > 1:
        syn.weights = np.stack([syn.weights] + [
            rng.integers(-15, 16, size=syn.weights.shape) for _ in range(taps - 1)])
    base.spike_limit = 2
    base.acc_bits = base.required_acc_bits(1)
    binned = random_binned(rng, shape3(shape), 5, density=0.5)
    items = tap_items(binned, shape3(shape) if kind != "linear" else (10, 1, 1), taps,
                      random.Random(seed), delay)
    lanes = max(1, shape3(base.out_shape)[0] - 1)
    _, res, dut = check_v2(base, binned, lanes, seed=seed, items=items)
    assert "tap" in dut.inp.payload.shape().members
    assert any(res["spikes"])
