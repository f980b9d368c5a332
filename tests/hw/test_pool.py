"""Sum pooling: identity weight ROM, dropped edge rows/columns (H, W not multiples of K),
lane groups, against the reference."""

import random

import numpy as np
import pytest

from hw.pool import pool_weights
from sim.randmodel import random_binned, random_layer

from .harness import items_from_binned, reference_layer, run_layer


def test_pool_weights_identity():
    w = pool_weights(3, 2)
    assert w.shape == (3, 3, 2, 2)
    for co in range(3):
        for ci in range(3):
            assert (w[co, ci] == (1 if co == ci else 0)).all()


@pytest.mark.parametrize("shape,K,lanes", [((2, 7, 8), 2, None), ((3, 6, 7), 3, 2),
                                           ((1, 5, 5), 1, None), ((4, 9, 9), 4, 3)])
def test_pool_layer_matches_reference(shape, K, lanes):
    rng = np.random.default_rng(K * 10 + shape[0])
    layer = random_layer(rng, "pool", "sumpool2d", shape, kernel=K, fire_scale=0.4)
    binned = random_binned(rng, shape, 3, density=0.5)
    items = items_from_binned(binned, shape, random.Random(K))
    # the far rows/columns (no output) must be among the events
    res, _ = run_layer(layer, lanes, items, seed=K)
    spikes, states, ovf, _ = reference_layer(layer, binned)
    for k in range(3):
        assert sorted(res["spikes"][k]) == sorted(spikes[k])
        np.testing.assert_array_equal(res["states"][k], states[k])
        assert res["ovf"][k] == ovf[k]
