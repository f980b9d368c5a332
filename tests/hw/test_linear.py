"""LinearEngine addresses (flatten ``i = (c*H + y)*W + x``, ``G`` groups) with stalls,
and linear layers against the reference."""

import random

import numpy as np
import pytest

from hw.linear import LinearEngine
from hw.stream import END_SAMPLE, END_STEP, SPIKE
from sim.randmodel import random_binned, random_layer

from .harness import items_from_binned, reference_layer, run_layer
from .test_conv import drive_engine


@pytest.mark.parametrize("shape,G", [((3, 4, 5), 1), ((2, 3, 3), 3), ((17,), 2), ((5,), 1)])
def test_linear_engine_addresses(shape, G):
    rng = random.Random(len(shape) * 10 + G)
    C, H, W = shape if len(shape) == 3 else (shape[0], 1, 1)
    events = [(rng.randrange(C), rng.randrange(H), rng.randrange(W)) for _ in range(30)]
    events += [(C - 1, H - 1, W - 1), (0, 0, 0), (0, 0, 0)]
    items, want = [], []
    for e in events:
        items.append((SPIKE, *e))
        i = (e[0] * H + e[1]) * W + e[2]
        want += [(SPIKE, g, i * G + g) for g in range(G)]
    items += [(END_STEP, 0, 0, 0), (END_SAMPLE, 0, 0, 0)]
    want += [(END_STEP,), (END_SAMPLE,)]
    got, _ = drive_engine(LinearEngine(shape, G), items, seed=G, gap=0.3, ready=0.6)
    assert got == want


@pytest.mark.parametrize("seed,lanes,in_shape", [(0, None, (12,)), (1, 3, (20,)),
                                                 (2, 1, (9,)), (3, 4, (2, 3, 3))])
def test_linear_layer_matches_reference(seed, lanes, in_shape):
    rng = np.random.default_rng(seed)
    layer = random_layer(rng, "fc", "linear", in_shape, n_out=int(rng.integers(5, 11)))
    if len(in_shape) == 3:
        layer.in_shape = (int(np.prod(in_shape)),)
    T = 3
    binned = random_binned(rng, (int(np.prod(in_shape)), 1, 1), T)
    items = items_from_binned(binned, (int(np.prod(in_shape)), 1, 1), random.Random(seed))
    res, dut = run_layer(layer, lanes, items, seed=seed)
    spikes, states, ovf, _ = reference_layer(layer, binned)
    for k in range(T):
        assert len(res["spikes"][k]) == len(set(res["spikes"][k]))
        assert set(res["spikes"][k]) == spikes[k]
        np.testing.assert_array_equal(res["states"][k], states[k])
        assert res["ovf"][k] == ovf[k]
