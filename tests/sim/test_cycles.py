"""Tests of the cycle model that need no RTL (tests/hw/test_network_cycles.py compares it
with amaranth.sim of the network, the RTL benches in tests/cocotb with the Verilog, cycle
for cycle)."""

import numpy as np
import pytest

from sim.cycles import HwParams, input_words, layer_work, predict
from sim.events import BinnedEvents
from sim.model import InputSpec, Model
from sim.randmodel import random_binned, random_layer, random_model


def _one_linear():
    rng = np.random.default_rng(0)
    layer = random_layer(rng, "fc", "linear", (1, 1, 2), n_out=2, reset="zero", leak=False,
                         bias=False)
    layer.weights[:] = 5
    layer.threshold[:] = 1
    model = Model(input=InputSpec(shape=(1, 1, 2), dt_us=1000, timesteps=1, count_clip=1),
                  layers=[layer], readout="spike_count")
    return model, BinnedEvents.from_frames(np.array([[[[1, 0]]]]))


def test_hand_timeline():
    """One spike into a 2-output linear layer (G = 1, D = 1, both outputs fire), words
    offered from cycle 0, FIFO depth 4. By hand, from the documented pipeline:
    spike accepted 0, END_STEP 1, END_SAMPLE 2; the token leaves the FIFO output register
    in cycle 3, stage A 4, stage B / iterator job 5, reaches the core in 6 (sweep start);
    sweep: P0 7, P1 8, P2 9, P3 10, P4 11, P5 12-13 (two spikes, one per cycle), pipeline
    empty in 14, token transfers in 15. End of sample: core takes it in 16, clears (D = 1)
    in 17, token in 18; the arg-max over 2 classes strobes ``done`` in 20."""
    model, binned = _one_linear()
    r = predict(model, binned, HwParams(fifo_depth=4, sweep="dense"), backend="numpy")
    assert r.accepted == [0, 1, 2]
    assert r.sweep_start == [[6]]
    assert r.step_done == [[15]]
    assert r.sample_done == [20]
    assert r.latency_cycles() == 20
    assert r.latency_s(100e6) == 20 / 100e6
    assert r.swept == [1] and r.sparse == [False]


def test_hand_timeline_sparse():
    """The same case with the sparse sweep (hw.livelist): the spike's update (taken in
    cycle 5) lists word 0 in its stage C (7); the core takes the token in 6 (cycle 0 of
    the sweep); the ring is read in 8 (R: the entry is there from 8 on, and the list is
    read ahead, so it need not wait for the length taken in 8), Q1 9, Q2 10, P0 11,
    P1 12, P2 13, P3 14, P4 15, P5 16-17 (two spikes), empty in 18, token transfers in
    19; the end of sample follows 5 cycles later, as in the dense case (clear, token,
    arg-max): done in 24."""
    model, binned = _one_linear()
    r = predict(model, binned, HwParams(fifo_depth=4, sweep="sparse"), backend="numpy")
    assert r.sparse == [True]
    assert r.sweep_start == [[6]]
    assert r.step_done == [[19]]
    assert r.sample_done == [24]
    assert r.swept == [1]


def test_gaps_only_delay():
    rng = np.random.default_rng(3)
    for _ in range(5):
        model = random_model(rng, timesteps=3)
        binned = random_binned(rng, model.input.shape, 3, model.input.count_clip)
        base = predict(model, binned, HwParams(fifo_depth=3), backend="numpy")
        n = len(input_words(model, binned))
        gaps = rng.integers(0, 4, size=n).tolist()
        slow = predict(model, binned, HwParams(fifo_depth=3), gaps=gaps, backend="numpy")
        for a, b in zip(base.step_done, slow.step_done):
            assert all(y >= x for x, y in zip(a, b))
            assert all(y > x for x, y in zip(a, a[1:]))
        assert slow.end >= base.end + gaps[0]


def test_layer_work_counts_receptive_fields():
    """The iterator work of an input spike is the number of output positions whose
    window holds it, times the lane groups (checked against a brute-force count)."""
    rng = np.random.default_rng(1)
    layer = random_layer(rng, "c", "conv2d", (1, 7, 6), kernel=3, stride=2, padding=1,
                         out_channels=5)
    work = layer_work(layer, (1, 7, 6), lanes=2)
    _, Ho, Wo = layer.out_shape
    for y in range(7):
        for x in range(6):
            n = sum(1 for oy in range(Ho) for ox in range(Wo)
                    if 0 <= y - (oy * 2 - 1) < 3 and 0 <= x - (ox * 2 - 1) < 3)
            assert work[0, y, x] == n * 3


def test_banks_of_rules():
    """sim.geometry.banks_of: where banks may go, and one-line refusals naming the layer."""
    from sim.geometry import MAX_BANKS, banks_of
    from sim.randmodel import model_from_spec
    rng = np.random.default_rng(3)
    model = model_from_spec([("conv2d", 4, 3, 1, 1), ("sumpool2d", 2), ("linear", 5)], rng,
                            input_shape=(2, 10, 10), timesteps=2)
    a, b, c = (layer.name for layer in model.layers)
    assert banks_of(model) == [1, 1, 1]
    assert banks_of(model, 3) == [3, 3, 1]              # an int: wherever it is allowed
    assert banks_of(model, {a: 2}) == [2, 1, 1]
    assert banks_of(model, [4, None, 1]) == [4, 1, 1]
    for bad, words in [({c: 2}, [c, "linear"]), ({"nope": 2}, ["nope"]),
                       ({a: 0}, [a, "positive"]), ({a: MAX_BANKS + 1}, [a, "more than"]),
                       ({b: 6}, [b, "5 output columns"]), ([1, 1], ["2 entries"])]:
        with pytest.raises(ValueError) as e:
            banks_of(model, bad)
        assert all(w in str(e.value) for w in words), str(e.value)
    model2 = model_from_spec([("conv2d", 2, 3, 1, 1), ("conv2d", 3, 3, 1, 1)], rng,
                             input_shape=(1, 6, 6), timesteps=2, readout="membrane")
    last = model2.layers[-1].name
    with pytest.raises(ValueError, match="membrane readout"):
        banks_of(model2, {last: 2})
    assert banks_of(model2, 2) == [2, 1]


@pytest.mark.parametrize("spec", [(5, 2, 2), (3, 1, 1), (3, 2, 1), (2, 2, 0), (4, 3, 2)])
def test_bank_words_partition_the_window(spec):
    """Bank b's updates are the window's columns x = b (mod B), each at its local address
    (x // B), in the iterator's order; over the banks they are every update once."""
    from sim.cycles import bank_words, bank_work, synapse_words, synapse_work
    from sim.geometry import bank_width
    from sim.randmodel import model_from_spec
    K, S, P = spec
    rng = np.random.default_rng(K * 10 + S)
    model = model_from_spec([("conv2d", 3, K, S, P)], rng, input_shape=(2, 9, 11),
                            timesteps=1)
    layer = model.layers[0]
    syn, src = layer.synapse, (2, 9, 11)
    C, Ho, Wo = layer.out_shape
    for lanes in (1, 2, 3):
        G = -(-C // lanes)
        full = synapse_words(syn, src, layer.out_shape, lanes)
        work = synapse_work(syn, src, layer.out_shape, lanes)
        for B in (2, 3, 4):
            words = [bank_words(syn, src, layer.out_shape, lanes, b, B) for b in range(B)]
            works = [bank_work(syn, src, layer.out_shape, lanes, b, B) for b in range(B)]
            assert sum(works).tolist() == work.tolist()
            for c, y, x in np.ndindex(*src):
                back = []
                for b in range(B):
                    local = words[b](c, y, x)
                    assert len(local) == works[b][c, y, x]
                    Wb = bank_width(Wo, b, B)
                    for a in local:
                        pos, g = divmod(a, G)
                        oy, ox = divmod(pos, Wb)
                        back.append((oy * Wo + ox * B + b) * G + g)
                assert sorted(back) == sorted(full(c, y, x))
