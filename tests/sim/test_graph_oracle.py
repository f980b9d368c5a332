"""The reference (every backend) against the plain oracle on random version-2 graphs.

Each example is a random graph from :func:`sim.randmodel.random_graph` (residual joins,
forks, self and backward recurrence, delays and taps, multi-spike, ``v_min``,
current-based layers, every synapse kind), saved with :func:`sim.model.save_model`; the
oracle reads that directory itself (:func:`tests.sim.oracle.run_dir`, no shared parsing
code) and every backend of :func:`sim.reference.run` runs the in-memory model. Compared:
every spike count, stored state, stored current and overflow flag of every step of every
layer, the spike counts, the dump arrays, the scores and the prediction.

A second source of graphs, written without :mod:`sim.model` (tests/sim/modeldir.py), is
loaded with :func:`sim.model.load_model` and compared the same way, so that neither the
project's generator nor its writer decides alone what is tested.

The number of examples follows the hypothesis profile (tests/conftest.py): 300 random
graphs per run under ``ci``. ``pytest --hypothesis-seed=N`` fixes the run; each example
is a seed, so a failure is reproduced by the seed hypothesis prints.
"""

import tempfile
from collections import Counter
from pathlib import Path

import numpy as np
from hypothesis import assume, event, given, settings
from hypothesis import strategies as st

from sim import reference
from sim.events import BinnedEvents
from sim.model import MAX_ACC_BITS, load_model, save_model
from sim.randmodel import random_graph
from sim.run import write_dump

from . import oracle
from .modeldir import layer, model_doc, random_doc, synapse, write_model

BACKENDS = [b for b in ("numpy", "numba") if b in reference.available_backends()]
DENSITIES = [0.0, 0.1, 0.3, 0.6, 1.0]


def scaled(n):
    """``n`` examples under the ``ci`` profile, scaled with the loaded profile."""
    return max(5, n * settings().max_examples // 100)


# -- comparison ------------------------------------------------------------------------------

def _first_diff(got, want):
    for k, (g, w) in enumerate(zip(got, want)):
        if list(g) != list(w):
            n = next(i for i, (a, b) in enumerate(zip(g, w)) if a != b)
            return f"step {k}, neuron {n}: reference {g[n]}, oracle {w[n]}"
    return f"{len(got)} steps, oracle {len(want)}"


def _same_trace(what, array, want, T, shape, dtype=None):
    assert array.shape == (T, *shape), f"{what}: shape {array.shape}"
    if dtype is not None:
        assert array.dtype == dtype, f"{what}: dtype {array.dtype}"
    else:
        assert np.issubdtype(array.dtype, np.integer), f"{what}: dtype {array.dtype}"
    got = array.reshape(T, -1).tolist()
    assert got == want, f"{what}: " + _first_diff(got, want)


def assert_matches(model, result, want, record=True):
    """``result`` (a :class:`sim.reference.Result`) equals the oracle's ``want`` everywhere."""
    T = model.input.timesteps
    current_layers = {layer.name for layer in model.layers if layer.current is not None}
    for layer in model.layers:
        name = layer.name
        assert result.overflow[name].shape == (T,)
        assert result.overflow[name].tolist() == want["overflow"][name], f"{name} overflow"
        assert result.spike_count[name] == sum(map(sum, want["spikes"][name])), \
            f"{name} spike_count"
        if not record:
            continue
        dtype = np.uint8 if layer.spike_limit <= 255 else np.uint16
        _same_trace(f"{name} spikes", result.spikes[name], want["spikes"][name], T,
                    layer.out_shape, dtype)
        _same_trace(f"{name} states", result.states[name], want["states"][name], T,
                    layer.out_shape)
        if name in current_layers:
            _same_trace(f"{name} currents", result.currents[name], want["currents"][name], T,
                        layer.out_shape)
    assert result.scores.tolist() == want["scores"], "scores"
    assert result.prediction == want["prediction"], "prediction"
    if record:
        assert set(result.currents) == current_layers == set(want["currents"])
        _assert_dump(model, result.arrays(), want)


def _assert_dump(model, arrays, want):
    """The contract's dump keys, v2: ``spikes_``, ``state_``, ``current_`` (current-based
    layers only), ``overflow_``, ``scores``, ``prediction``."""
    names = {"scores", "prediction"}
    for layer in model.layers:
        n = layer.name
        names |= {f"spikes_{n}", f"state_{n}", f"overflow_{n}"}
        if layer.current is not None:
            names.add(f"current_{n}")
            assert arrays[f"current_{n}"].reshape(model.input.timesteps, -1).tolist() == \
                want["currents"][n]
        assert arrays[f"spikes_{n}"].reshape(model.input.timesteps, -1).tolist() == \
            want["spikes"][n]
        assert arrays[f"state_{n}"].reshape(model.input.timesteps, -1).tolist() == \
            want["states"][n]
        assert arrays[f"overflow_{n}"].dtype == np.bool_
        assert arrays[f"overflow_{n}"].tolist() == want["overflow"][n]
    assert set(arrays) == names
    assert arrays["scores"].tolist() == want["scores"]
    assert int(arrays["prediction"]) == want["prediction"]


def random_frames(rng, model, density):
    clip = model.input.count_clip
    shape = (model.input.timesteps, *model.input.shape)
    frames = (rng.random(shape) < density).astype(np.int64)
    return frames * rng.integers(1, clip + 1, size=shape)


def check_backends(model, frames, want):
    binned = BinnedEvents.from_frames(frames)
    for backend in BACKENDS:
        for record in (True, False):
            result = reference.run(model, binned, record=record, backend=backend)
            assert_matches(model, result, want, record=record)


# -- what a graph exercises (hypothesis statistics, and the coverage test) -------------------

def features(model, want):
    """Names of the v2 features that ``model`` has and that this run exercised."""
    found = set()
    order = {layer.name: i for i, layer in enumerate(model.layers)}
    readers = Counter()
    for i, layer in enumerate(model.layers):
        sources = [model.source_of(i, syn) for syn in layer.synapses]
        readers.update(set(sources))
        if sum(s != "input" and order[s] < i for s in sources) + ("input" in sources) >= 2:
            found.add("join")
        for syn, src in zip(layer.synapses, sources):
            found.add(f"kind {syn.type}")
            if src == layer.name:
                found.add("self recurrence")
            elif src != "input" and order[src] > i:
                found.add("backward recurrence")
            if syn.delay > 0:
                found.add("delay")
            if syn.taps > 1:
                found.add("taps")
        name = layer.name
        counts = [c for step in want["spikes"][name] for c in step]
        if any(c > 1 for c in counts):
            found.add("multi-spike (count > 1)")
        if layer.v_min is not None and any(
                u == layer.v_min > layer.state_min for step in want["u"][name] for u in step):
            found.add("v_min reached")
        if layer.current is not None:
            found.add("current-based")
            if any(want["overflow"][name]):
                found.add("current-based, overflow")
        if any(want["overflow"][name]):
            found.add("overflow")
        if any(counts):
            found.add("spikes")
    if any(n >= 2 for src, n in readers.items() if src != "input"):
        found.add("fork")                   # one layer's spikes read by several layers
    found.add(f"readout {model.readout}")
    return found


# -- the comparison --------------------------------------------------------------------------

@settings(max_examples=scaled(300))
@given(seed=st.integers(0, 2**32 - 1), density=st.sampled_from(DENSITIES))
def test_random_graphs_match_oracle(seed, density):
    rng = np.random.default_rng(seed)
    model = random_graph(rng)
    frames = random_frames(rng, model, density)
    with tempfile.TemporaryDirectory() as tmp:
        save_model(model, Path(tmp) / "model")
        want = oracle.run_dir(Path(tmp) / "model", oracle.frames_to_steps(frames.tolist()))
    check_backends(model, frames, want)
    for name in sorted(features(model, want)):
        event(name)


@settings(max_examples=scaled(100))
@given(seed=st.integers(0, 2**32 - 1), density=st.sampled_from(DENSITIES))
def test_oracle_made_graphs_match_reference(seed, density):
    """Graphs written with plain json + numpy, read by :func:`sim.model.load_model`."""
    rng = np.random.default_rng(seed)
    doc = random_doc(rng)
    with tempfile.TemporaryDirectory() as tmp:
        root = write_model(Path(tmp) / "model", doc)
        model = load_model(root)
        frames = random_frames(rng, model, density)
        want = oracle.run_dir(root, oracle.frames_to_steps(frames.tolist()))
    check_backends(model, frames, want)
    for name in sorted(features(model, want)):
        event(name)


def test_random_graphs_cover_every_feature():
    """The comparison is not vacuous: 300 fixed seeds of ``random_graph`` exercise every
    v2 feature, each in several graphs, with input that makes the layers fire."""
    seen = Counter()
    for seed in range(300):
        rng = np.random.default_rng(seed)
        model = random_graph(rng)
        want = oracle.run(model, oracle.frames_to_steps(random_frames(rng, model, 0.3)))
        seen.update(features(model, want))
    wanted = ["join", "fork", "self recurrence", "backward recurrence", "delay", "taps",
              "multi-spike (count > 1)", "v_min reached", "current-based",
              "current-based, overflow", "overflow", "spikes", "readout spike_count",
              "readout membrane", "kind conv2d", "kind linear", "kind sumpool2d",
              "kind identity"]
    rare = {name: seen[name] for name in wanted if seen[name] < 10}
    assert not rare, f"features seen in fewer than 10 of 300 graphs: {rare}"


def test_counts_above_255_and_the_written_dump(tmp_path):
    """A layer with ``spike_limit`` 300 records uint16 counts; ``sim.run``'s dump writer
    holds the same numbers as the oracle (hand-checked: IF, threshold 1, subtract)."""
    big = layer("big", (1,), [synapse("input", "linear", np.array([[100]], np.int16),
                                      weight_bits=8)],
                threshold=1, state_bits=12, acc_bits=13, spike_limit=300)
    out = layer("out", (1,), [synapse("big", "identity", np.array([1], np.int8))],
                threshold=200, state_bits=12, acc_bits=13, reset="none", beta=(0, 0))
    root = write_model(tmp_path / "model", model_doc((1, 1, 1), 3, [big, out], count_clip=3))
    model = load_model(root)
    frames = np.array([[[[3]]], [[[1]]], [[[0]]]])
    want = oracle.run_dir(root, oracle.frames_to_steps(frames.tolist()))
    # big: u = 300 -> 300 spikes, v 0; u = 100 -> 100, v 0; u = 0 -> 0
    # out: x = 300 -> 1 spike, v 0 (beta 0); x = 100 -> 0; x = 0 -> 0
    assert want["spikes"] == {"big": [[300], [100], [0]], "out": [[1], [0], [0]]}
    assert want["states"] == {"big": [[0], [0], [0]], "out": [[0], [0], [0]]}
    # 12-bit state: 3 * 100 + 2**11 = 2348: 12 bits + sign = 13 (both layers)
    net = oracle.load_dir(root)
    assert [oracle.required_acc_bits(net, i) for i in range(2)] == [13, 13]
    check_backends(model, frames, want)
    for backend in BACKENDS:
        result = reference.run(model, BinnedEvents.from_frames(frames), backend=backend)
        assert result.spikes["big"].dtype == np.uint16
        assert result.spikes["out"].dtype == np.uint8
        write_dump(result, model, tmp_path / f"{backend}.npz")
        with np.load(tmp_path / f"{backend}.npz") as z:
            _assert_dump(model, {key: z[key] for key in z.files}, want)
            assert z["spikes_big"].dtype == np.uint16


@settings(max_examples=scaled(60))
@given(seed=st.integers(0, 2**32 - 1), density=st.sampled_from(DENSITIES))
def test_wide_graphs_match_reference(seed, density):
    """Widths near the format's limits (32-bit state and current, 16-bit weights,
    ``frac_bits`` up to 24, counts and spike limits in the hundreds): no intermediate of
    any backend may wrap."""
    rng = np.random.default_rng(seed)
    doc = random_doc(rng, wide=True)
    assume(all(ld["acc_bits"] <= MAX_ACC_BITS for ld in doc["layers"]))
    with tempfile.TemporaryDirectory() as tmp:
        root = write_model(Path(tmp) / "model", doc)
        model = load_model(root)
        frames = random_frames(rng, model, density)
        want = oracle.run_dir(root, oracle.frames_to_steps(frames.tolist()))
    check_backends(model, frames, want)
    for name in sorted(features(model, want)):
        event(name)
