"""Layer engines of every type with random parameters and lane counts, random stalls on
the input and the output, against the reference (every spike, state and flag)."""

import random

import numpy as np
import pytest

from hw.layer import lane_rom
from sim.model import rom_words
from sim.randmodel import random_binned, random_layer

from .harness import items_from_binned, reference_layer, run_layer


def test_lane_rom_full_width_is_the_exported_image():
    """With L = C_out the per-lane ROM is the model directory's exchange image."""
    rng = np.random.default_rng(0)
    layer = random_layer(rng, "c", "conv2d", (2, 5, 5), kernel=3, out_channels=3)
    words, wbits = lane_rom(layer, 3)
    exported, width = rom_words(layer)
    assert width == 3 * wbits
    mask = (1 << wbits) - 1
    packed = [sum((v & mask) << (j * wbits) for j, v in enumerate(w)) for w in words]
    assert packed == exported


@pytest.mark.parametrize("seed", range(10))
def test_random_layer(seed):
    rng = np.random.default_rng(1000 + seed)
    kind = ("conv2d", "conv2d", "linear", "sumpool2d")[seed % 4]
    clip = 1 + seed % 3
    shape = (int(rng.integers(1, 3)), int(rng.integers(3, 8)), int(rng.integers(3, 8)))
    if kind == "linear":
        shape = (int(np.prod(shape)), 1, 1)
        layer = random_layer(rng, "l", kind, (shape[0],), count_clip=clip)
    else:
        layer = random_layer(rng, "l", kind, shape, count_clip=clip)
    C = layer.out_shape[0]
    lanes = int(rng.integers(1, C + 1))
    T = int(rng.integers(2, 5))
    binned = random_binned(rng, shape, T, count_clip=clip)
    items = items_from_binned(binned, shape, random.Random(seed))
    res, _ = run_layer(layer, lanes, items, seed=seed, gap=0.4, ready=0.5)
    spikes, states, ovf, _ = reference_layer(layer, binned, clip)
    for k in range(T):
        assert len(res["spikes"][k]) == len(set(res["spikes"][k]))
        assert set(res["spikes"][k]) == spikes[k], f"step {k}"
        np.testing.assert_array_equal(res["states"][k], states[k], err_msg=f"step {k}")
        assert res["ovf"][k] == ovf[k]
