"""The compiled backend (sim.kernels) against the NumPy backend, bit for bit.

Every comparison checks every spike and every stored state of every step of every
layer, the overflow flags, the scores, the prediction, the synaptic operation counts
and the spike counts. The NumPy backend itself is checked against the plain oracle in
test_reference.py.
"""

import zlib

import numpy as np
import pytest

from sim.events import BinnedEvents, bin_events, make_events
from sim.model import InputSpec, Model, validate_model
from sim.randmodel import model_from_spec, random_binned, random_layer, random_model
from sim.reference import available_backends, run

kernels = pytest.importorskip("sim.kernels")


def assert_same(ref, got, model, record=True):
    """Every integer of two results is equal."""
    names = [layer.name for layer in model.layers]
    assert got.scores.dtype.kind == "i"
    np.testing.assert_array_equal(got.scores, ref.scores)
    assert got.prediction == ref.prediction
    assert got.synops == ref.synops
    assert got.spike_count == ref.spike_count
    assert got.input_spikes == ref.input_spikes
    assert list(got.overflow) == names
    for name in names:
        np.testing.assert_array_equal(got.overflow[name], ref.overflow[name], err_msg=name)
    if record:
        for layer in model.layers:
            name = layer.name
            T = model.input.timesteps
            assert got.spikes[name].shape == (T, *layer.out_shape)
            assert got.states[name].shape == (T, *layer.out_shape)
            assert got.spikes[name].dtype == ref.spikes[name].dtype
            for k in range(T):
                np.testing.assert_array_equal(got.spikes[name][k], ref.spikes[name][k],
                                              err_msg=f"spikes {name} step {k}")
                np.testing.assert_array_equal(got.states[name][k], ref.states[name][k],
                                              err_msg=f"states {name} step {k}")
            assert (name in got.currents) == (layer.current is not None)
            if layer.current is not None:
                np.testing.assert_array_equal(got.currents[name], ref.currents[name],
                                              err_msg=f"currents {name}")
    else:
        assert got.spikes == {} and got.states == {} and got.currents == {}


def narrow_ok(model):
    return all(lay.acc_bits <= 30 and lay.state_bits <= 29 and
               (lay.current is None or lay.current.state_bits <= 29) for lay in model.layers)


def compare(model, binned):
    """numba (automatic dtype, int64, and int32 where allowed; with and without traces)
    against numpy."""
    ref = run(model, binned, backend="numpy")
    got = run(model, binned, backend="numba")
    assert_same(ref, got, model)
    wide = kernels.run_numba(model, binned, dtype=np.int64)
    assert_same(ref, wide, model)
    fast = kernels.run_numba(model, binned, record=False)
    assert_same(ref, fast, model, record=False)
    if narrow_ok(model):
        assert kernels.NumbaNetwork(model).dtype == np.int32
        narrow = kernels.run_numba(model, binned, dtype=np.int32)
        assert_same(ref, narrow, model)
    else:
        assert kernels.NumbaNetwork(model).dtype == np.int64
    return ref


def test_numba_is_available():
    assert "numba" in available_backends()


@pytest.mark.parametrize("block", range(6))
def test_random_models(block):
    """Random models covering every feature of the contract (200 in all)."""
    stats = dict(overflow=0, spikes=0, membrane=0, counts=0, narrow=0)
    for seed in range(block * 34, block * 34 + 34):
        rng = np.random.default_rng(seed)
        # every fifth model with wide states (the int64 kernel)
        wide = dict(state_bits=int(rng.integers(28, 33))) if seed % 5 == 0 else {}
        model = random_model(rng, **wide)
        binned = random_binned(rng, model.input.shape, model.input.timesteps,
                               model.input.count_clip)
        ref = compare(model, binned)
        stats["overflow"] += any(f.any() for f in ref.overflow.values())
        stats["spikes"] += sum(ref.spike_count.values()) > 0
        stats["membrane"] += model.readout == "membrane"
        stats["counts"] += bool((binned.count > 1).any())
        stats["narrow"] += narrow_ok(model)
    # the draw really exercises what the test claims to check
    assert stats["spikes"] > 10 and stats["membrane"] > 0 and stats["counts"] > 0
    assert 0 < stats["narrow"] < 34


@pytest.mark.parametrize("seed", range(12))
def test_clamping(seed):
    """Narrow states clamp often: overflow flags and clamped states must match."""
    rng = np.random.default_rng(1000 + seed)
    model = random_model(rng, state_bits=int(rng.integers(4, 8)), weight_bits=4,
                         timesteps=6, count_clip=3)
    binned = random_binned(rng, model.input.shape, 6, 3, density=0.6)
    compare(model, binned)


def test_clamping_happens():
    rng = np.random.default_rng(7)
    model = random_model(rng, kinds=("conv2d", "linear"), state_bits=4, weight_bits=4,
                         timesteps=5, count_clip=3, fire_scale=3.0, reset="none")
    binned = random_binned(rng, model.input.shape, 5, 3, density=0.7)
    ref = compare(model, binned)
    assert any(f.any() for f in ref.overflow.values())


@pytest.mark.parametrize("kinds", [
    ("conv2d",), ("linear",), ("sumpool2d",),
    ("conv2d", "conv2d"), ("conv2d", "sumpool2d", "conv2d"), ("sumpool2d", "linear"),
    ("conv2d", "linear", "linear"), ("linear", "linear"), ("sumpool2d", "sumpool2d"),
])
@pytest.mark.parametrize("readout", ["spike_count", "membrane"])
@pytest.mark.parametrize("reset", ["subtract", "zero", "none"])
def test_layer_kinds(kinds, readout, reset):
    for seed in range(3):
        rng = np.random.default_rng(zlib.crc32(repr((kinds, readout, reset, seed)).encode()))
        model = random_model(rng, kinds=kinds, readout=readout, reset=reset,
                             count_clip=int(rng.integers(1, 4)))
        binned = random_binned(rng, model.input.shape, model.input.timesteps,
                               model.input.count_clip)
        compare(model, binned)


@pytest.mark.parametrize("co", [1, 3, 4, 5, 8, 11, 12, 16, 17])
@pytest.mark.parametrize("geometry", [(5, 2, 2), (3, 1, 1), (1, 3, 0), (2, 3, 1), (7, 3, 3),
                                      (4, 2, 0), (3, 2, 1)])
def test_conv_widths(co, geometry):
    """Every channel count (vector chunks of 8 and 4 plus a tail) and every
    kernel/stride/padding relation, including strides larger than the kernel."""
    K, S, P = geometry
    rng = np.random.default_rng(co * 100 + K * 10 + S)
    shape = (3, 13, 11)
    conv = random_layer(rng, "c", "conv2d", shape, count_clip=2, out_channels=co, kernel=K,
                        stride=S, padding=P, weight_bits=6, state_bits=14)
    lin = random_layer(rng, "l", "linear", conv.out_shape, n_out=co + 2, weight_bits=6,
                       state_bits=14)
    model = validate_model(Model(InputSpec(shape, 1000, 4, 2), [conv, lin],
                                 readout="spike_count"))
    binned = random_binned(rng, shape, 4, 2, density=0.3)
    ref = compare(model, binned)
    assert ref.synops["c"] > 0


def test_empty_input_and_one_step():
    rng = np.random.default_rng(3)
    model = random_model(rng, input_shape=(2, 9, 9), kinds=("conv2d", "linear"),
                         timesteps=1, bias=True)
    empty = BinnedEvents((2, 9, 9), 1, np.zeros(2, np.int64), np.zeros(0, np.int64),
                         np.zeros(0, np.int64))
    ref = compare(model, empty)
    assert ref.synops[model.layers[0].name] == 0


def test_events_through_binning():
    """A stream through sim.events (sorted sources, clipped counts) on a seed-like net."""
    rng = np.random.default_rng(11)
    spec = [("conv2d", 4, 5, 2, 2), ("conv2d", 8, 5, 2, 2), ("conv2d", 8, 3, 2, 1),
            ("conv2d", 16, 3, 2, 1), ("linear", 11)]
    model = model_from_spec(spec, rng, input_shape=(2, 32, 32), timesteps=12, count_clip=2,
                            dt_us=1000, thresholds=[800, 2000, 2000, 2000, 8000])
    ev = make_events((2, 32, 32), 4000, 12000, rng)
    binned = bin_events(ev, (2, 32, 32), 12, 1000, count_clip=2)
    ref = compare(model, binned)
    for layer in model.layers[:-1]:
        assert 0 < ref.spike_count[layer.name] < 12 * layer.n_out


def test_wide_states_use_int64():
    """A 32-bit state whose accumulator passes 2**31 and clamps: the int64 kernel."""
    rng = np.random.default_rng(21)
    shape = (2, 16, 16)
    lin = random_layer(rng, "big", "linear", shape, count_clip=3, n_out=3, weight_bits=16,
                       state_bits=32, reset="subtract", leak=False, bias=False,
                       per_channel=True)
    lin.weights = np.where(rng.random(lin.weights.shape) < 0.97, 32767, -32767)
    lin.threshold = np.array([2**30, 2**31 - 1, 2**29], dtype=np.int64)
    lin.acc_bits = lin.required_acc_bits(3)
    model = validate_model(Model(InputSpec(shape, 1000, 100, 3), [lin], readout="spike_count"))
    assert not narrow_ok(model)
    binned = random_binned(rng, shape, 100, 3, density=0.9)
    ref = compare(model, binned)
    assert ref.overflow["big"].any() and ref.spike_count["big"] > 0


def test_network_reuse():
    """One packed network runs many samples; a new sample starts from zero state."""
    rng = np.random.default_rng(5)
    model = random_model(rng, input_shape=(2, 10, 10), kinds=("conv2d", "sumpool2d", "linear"))
    net = kernels.NumbaNetwork(model)
    for _ in range(3):
        binned = random_binned(rng, model.input.shape, model.input.timesteps,
                               model.input.count_clip)
        ref = run(model, binned, backend="numpy")
        assert_same(ref, kernels.run_numba(model, binned, network=net), model)


@pytest.mark.parametrize("block", range(3))
def test_random_graphs(block):
    """v2 graphs (residual joins, forks, recurrence, delays and taps, multi-spike, v_min,
    current-based layers): every dtype and with and without traces."""
    from sim.randmodel import random_graph
    for seed in range(block * 30, block * 30 + 30):
        rng = np.random.default_rng(10_000 + seed)
        wide = dict(input_shape=(2, 9, 9)) if seed % 3 == 0 else {}
        model = random_graph(rng, **wide)
        binned = random_binned(rng, model.input.shape, model.input.timesteps,
                               model.input.count_clip)
        compare(model, binned)


def test_bad_input_is_refused():
    rng = np.random.default_rng(9)
    model = random_model(rng, input_shape=(2, 6, 6), timesteps=3)
    with pytest.raises(ValueError, match="shape"):
        kernels.run_numba(model, random_binned(rng, (2, 6, 7), 3))
    with pytest.raises(ValueError, match="steps"):
        kernels.run_numba(model, random_binned(rng, (2, 6, 6), 4))
    with pytest.raises(ValueError, match="int32 or int64"):
        kernels.NumbaNetwork(model, dtype=np.int16)
