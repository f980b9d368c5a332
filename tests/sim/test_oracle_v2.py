"""The plain oracle on contract v2, against numbers worked out by hand.

Each example is small enough to follow on paper; the derivation is in the comments,
from /work/shared/CONTRACT.md (docs/semantics.md, version 2), step by step. The model
directories are written with plain json + numpy (tests/sim/modeldir.py), so these tests
depend neither on :mod:`sim.model` nor on the reference. Every spike count, stored state,
stored current and overflow flag of every step is checked.

The worked v2 tables of docs/semantics.md (section 9.5) are read from the page and run
through the oracle, with the models built here from the page's prose, so the page, the
oracle and (in tests/sim/test_reference.py) the reference must all agree.

Also the oracle's self-consistency: the v2 engine against the kept v1 chain runner,
taps against separate delayed synapses, and the neutral settings of the v2 fields.
"""

import copy
import json
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sim.model import save_model
from sim.randmodel import random_model

from . import oracle
from .modeldir import layer, model_doc, random_doc, synapse, write_model


def scaled(n):
    """``n`` examples under the ``ci`` profile, scaled with the loaded profile."""
    return max(5, n * settings().max_examples // 100)


def steps_of(frames):
    return oracle.frames_to_steps(np.asarray(frames).tolist())


def check(got, name, spikes=None, states=None, overflow=None, currents=None, u=None):
    if spikes is not None:
        assert got["spikes"][name] == spikes, f"{name} spikes"
    if states is not None:
        assert got["states"][name] == states, f"{name} states"
    if overflow is not None:
        assert got["overflow"][name] == overflow, f"{name} overflow"
    if currents is not None:
        assert got["currents"][name] == currents, f"{name} currents"
    if u is not None:
        assert got["u"][name] == u, f"{name} u"


# -- a residual block ------------------------------------------------------------------------

def residual_doc(acc_c=9):
    """input (1,1,2) -> a (identity) -> b (identity) -> c (linear), plus a skip a -> c."""
    a = layer("a", (1, 1, 2), [synapse("input", "identity", np.array([3], np.int8))],
              threshold=2, state_bits=8, acc_bits=9, reset="subtract")
    b = layer("b", (1, 1, 2), [synapse("a", "identity", np.array([2], np.int8))],
              threshold=3, state_bits=8, acc_bits=9, reset="zero", beta=(1, 1))
    c = layer("c", (2,), [synapse("b", "linear", np.array([[1, 2], [0, 1]], np.int8)),
                          synapse("a", "linear", np.array([[1, 0], [-1, 1]], np.int8))],
              threshold=2, state_bits=8, acc_bits=acc_c, reset="subtract", beta=(1, 1),
              bias=np.array([0, 1], np.int16))
    return model_doc((1, 1, 2), 3, [a, b, c])


RESIDUAL_FRAMES = [[[[1, 0]]], [[[1, 1]]], [[[0, 1]]]]


def test_residual_block(tmp_path):
    got = oracle.run_dir(write_model(tmp_path, residual_doc()), steps_of(RESIDUAL_FRAMES))
    # a: x = 3 * input; IF, subtract 2, one spike at most
    #   k0: acc (3, 0) -> s (1, 0), v (1, 0); k1: acc (4, 3) -> s (1, 1), v (2, 1)
    #   k2: acc (2, 4) -> s (1, 1), v (0, 2)
    check(got, "a", spikes=[[1, 0], [1, 1], [1, 1]], states=[[1, 0], [2, 1], [0, 2]],
          overflow=[False] * 3)
    # b: x = 2 * s_a; beta 1/2, reset zero, threshold 3
    #   k0: acc (2, 0) -> s (0, 0), v (1, 0); k1: acc (3, 2) -> s (1, 0), v (0, 1)
    #   k2: acc (2, 3) -> s (0, 1), v (1, 0)
    check(got, "b", spikes=[[0, 0], [1, 0], [0, 1]], states=[[1, 0], [0, 1], [1, 0]],
          overflow=[False] * 3)
    # c: x = W1 s_b + W2 s_a + (0, 1); beta 1/2, subtract 2
    #   k0: x = (0 + 1 + 0, 0 - 1 + 1) = (1, 0): acc (1, 0) -> s (0, 0), v (0, 0)
    #   k1: x = (1 + 1, 0 + 0 + 1) = (2, 1): acc (2, 1) -> s (1, 0), v (1 - 2, 0) = (-1, 0)
    #   k2: x = (2 + 1, 1 + 0 + 1) = (3, 2): acc (2, 2) -> s (1, 1), v (-1, -1)
    check(got, "c", spikes=[[0, 0], [1, 0], [1, 1]], states=[[0, 0], [-1, 0], [-1, -1]],
          u=[[1, 0], [2, 1], [2, 2]], overflow=[False] * 3)
    assert got["currents"] == {}
    assert (got["scores"], got["prediction"]) == ([2, 1], 0)


def test_residual_acc_bits(tmp_path):
    # a: 3 + 2**7 = 131 -> 9; b: 2 + 2**7 -> 9
    # c: neuron 0: |1| + |2| (from b) + |1| (from a) = 4; neuron 1: 1 + 1 + 1 + |bias 1| = 4
    # B = 4 + 2**7 = 132: 8 bits + sign = 9
    with pytest.raises(oracle.OracleError, match="c: acc_bits 8 is too small, the bound needs 9"):
        oracle.load_dir(write_model(tmp_path, residual_doc(acc_c=8)))
    net = oracle.load_dir(write_model(tmp_path / "ok", residual_doc(acc_c=9)))
    assert [oracle.required_acc_bits(net, i) for i in range(3)] == [9, 9, 9]


# -- a delayed synapse -----------------------------------------------------------------------

def delayed_doc():
    """d: 1 * input now + 3 * input two steps ago; e reads d one step late."""
    d = layer("d", (1,), [synapse("input", "linear", np.array([[1]], np.int8)),
                          synapse("input", "linear", np.array([[3]], np.int8), delay=2)],
              threshold=4, state_bits=8, acc_bits=9, beta=(3, 2), reset="subtract")
    e = layer("e", (1,), [synapse("d", "identity", np.array([5], np.int8), delay=1)],
              threshold=5, state_bits=8, acc_bits=9, reset="zero")
    return model_doc((1, 1, 1), 5, [d, e], count_clip=2)


def test_delayed_synapse(tmp_path):
    frames = [[[[2]]], [[[1]]], [[[0]]], [[[1]]], [[[0]]]]
    got = oracle.run_dir(write_model(tmp_path, delayed_doc()), steps_of(frames))
    # d: x_k = c_k + 3 c_(k-2) = 2, 1, 0 + 6, 1 + 3, 0 + 0; beta 3/4, subtract 4
    #   k0: acc 2 -> s 0, v 6 >> 2 = 1;  k1: acc 2 -> s 0, v 1
    #   k2: acc 7 -> s 1, v 21 >> 2 - 4 = 1;  k3: acc 5 -> s 1, v 15 >> 2 - 4 = -1
    #   k4: acc -1 -> s 0, v -3 >> 2 = -1 (floor)
    check(got, "d", spikes=[[0], [0], [1], [1], [0]], states=[[1], [1], [1], [-1], [-1]],
          u=[[2], [2], [7], [5], [-1]], overflow=[False] * 5)
    # e: x_k = 5 s_d(k-1): the spikes of d at k2, k3 arrive at k3, k4
    check(got, "e", spikes=[[0], [0], [0], [1], [1]], states=[[0]] * 5, overflow=[False] * 5)
    assert (got["scores"], got["prediction"]) == ([2], 0)
    # acc_bits of d: m = count_clip = 2: 2 * (1 + 3) + 2**7 = 136: 8 bits + sign = 9
    assert oracle.required_acc_bits(oracle.load_dir(tmp_path), 0) == 9


# -- heterogeneous delays as taps ------------------------------------------------------------

def taps_doc(readout="spike_count"):
    """One neuron: input 0 arrives 1 step late with weight 2, input 1 3 steps late with 5."""
    w = np.zeros((3, 1, 2), np.int8)        # taps j = 0, 1, 2 are delays 1, 2, 3
    w[0, 0, 0] = 2
    w[2, 0, 1] = 5
    h = layer("h", (1,), [synapse("input", "linear", w, delay=1, taps=3)],
              threshold=6, state_bits=6, acc_bits=7, beta=(1, 1), reset="none")
    return model_doc((1, 1, 2), 5, [h], readout=readout)


TAPS_FRAMES = [[[[1, 1]]], [[[0, 1]]], [[[1, 0]]], [[[0, 0]]], [[[1, 1]]]]


def test_heterogeneous_delays_as_taps(tmp_path):
    got = oracle.run_dir(write_model(tmp_path, taps_doc()), steps_of(TAPS_FRAMES))
    # x_k = 2 in0(k-1) + 5 in1(k-3) = 0, 2, 0, 2 + 5, 0 + 5; reset none, beta 1/2
    #   k0: acc 0 -> v 0; k1: acc 2 -> v 1; k2: acc 1 -> v 0; k3: acc 7 -> s 1, v 3
    #   k4: acc 3 + 5 = 8 -> s 1, v 4
    check(got, "h", spikes=[[0], [0], [0], [1], [1]], states=[[0], [1], [0], [3], [4]],
          u=[[0], [2], [1], [7], [8]], overflow=[False] * 5)
    assert got["scores"] == [2]
    # B = 2 + 0 + 5 + 2**5 = 39: 6 bits + sign = 7
    assert oracle.required_acc_bits(oracle.load_dir(tmp_path), 0) == 7


def test_taps_membrane_readout(tmp_path):
    # the output never fires; reset none stores leak(u) either way; score: u at k4 = 8
    got = oracle.run_dir(write_model(tmp_path, taps_doc("membrane")), steps_of(TAPS_FRAMES))
    check(got, "h", spikes=[[0]] * 5, states=[[0], [1], [0], [3], [4]])
    assert (got["scores"], got["prediction"]) == ([8], 0)


# -- a recurrent current-based layer ---------------------------------------------------------

def recurrent_doc():
    """Two CubaLIF neurons: n0 <- 4 * input + bias 1 - 2 * s1(k-1), n1 <- 3 * s0(k-1)."""
    r = layer("r", (2,), [synapse("input", "linear", np.array([[4], [0]], np.int8)),
                          synapse("r", "linear", np.array([[0, -2], [3, 0]], np.int8),
                                  delay=1)],
              threshold=3, state_bits=6, acc_bits=7, beta=(3, 2), reset="subtract",
              bias=np.array([1, 0], np.int8), current=(1, 1, 3))
    return model_doc((1, 1, 1), 5, [r])


def test_recurrent_current_based(tmp_path):
    got = oracle.run_dir(write_model(tmp_path, recurrent_doc()), steps_of(
        [[[[1]]], [[[1]]], [[[0]]], [[[1]]], [[[0]]]]))
    # current 3 bits (-4..3), beta_c 1/2; state beta 3/4, subtract 3
    # k0: x (5, 0). n0: a 5 -> i' 3 (clamped), acc 3, s 1, v 9 >> 2 - 3 = -1, i 1.
    #     n1: all 0.
    # k1: x (4 + 1, 3 * s0) = (5, 3). n0: a 6 -> 3 (clamped), acc -1 + 3 = 2, s 0,
    #     v 6 >> 2 = 1, i 1. n1: a 3, acc 3, s 1, v 2 - 3 = -1, i 1.
    # k2: x (0 - 2 * s1 + 1, 0) = (-1, 0). n0: a 0, acc 1, s 0, v 0, i 0.
    #     n1: a 1, acc 0, s 0, v 0, i 0.
    # k3: x (5, 0). n0 as at k0: s 1, v -1, i 1 (clamped). n1: 0.
    # k4: x (1, 3). n0: a 2, acc 1, s 0, v 0, i 1. n1: a 3, acc 3, s 1, v -1, i 1.
    check(got, "r", spikes=[[1, 0], [0, 1], [0, 0], [1, 0], [0, 1]],
          states=[[-1, 0], [1, -1], [0, 0], [-1, 0], [0, -1]],
          currents=[[1, 0], [1, 1], [0, 0], [1, 0], [1, 1]],
          u=[[3, 0], [2, 3], [1, 0], [3, 0], [1, 3]],
          overflow=[True, True, False, True, False])
    assert (got["scores"], got["prediction"]) == ([2, 2], 0)     # a tie: the lowest index
    # B = 4 + 2 + |1| + 2**5 + 2**2 = 43: 6 bits + sign = 7
    assert oracle.required_acc_bits(oracle.load_dir(tmp_path), 0) == 7


# -- a multi-spike layer with v_min ----------------------------------------------------------

def multi_doc():
    """m: up to 2 spikes, v_min -3, 5-bit state; n counts m's spikes (2 each)."""
    m = layer("m", (1,), [synapse("input", "linear", np.array([[5, -4]], np.int8))],
              threshold=3, state_bits=5, acc_bits=7, reset="subtract",
              bias=np.array([-2], np.int8), spike_limit=2, v_min=-3)
    n = layer("n", (1,), [synapse("m", "identity", np.array([2], np.int8))],
              threshold=3, state_bits=5, acc_bits=6, reset="zero")
    return model_doc((1, 1, 2), 7, [m, n], count_clip=3)


def test_multi_spike_with_v_min(tmp_path):
    frames = [[[[3, 0]]], [[[0, 3]]], [[[0, 0]]], [[[3, 0]]], [[[3, 0]]], [[[0, 3]]],
              [[[2, 0]]]]
    got = oracle.run_dir(write_model(tmp_path, multi_doc()), steps_of(frames))
    # m: x = 5 c0 - 4 c1 - 2 = 13, -14, -2, 13, 13, -14, 8; IF, subtract s * 3
    #   k0: acc 13 -> s min(2, 4) = 2, v 7
    #   k1: acc -7 -> u max(-7, -3) = -3 (no overflow: v_min is not a state clamp), v -3
    #   k2: acc -5 -> -3, v -3;  k3: acc 10 -> s 2, v 4
    #   k4: acc 17 -> 15 (clamped: overflow), s 2, v 9;  k5: acc -5 -> -3, v -3
    #   k6: acc 5 -> s min(2, 1) = 1, v 2
    check(got, "m", spikes=[[2], [0], [0], [2], [2], [0], [1]],
          states=[[7], [-3], [-3], [4], [9], [-3], [2]],
          u=[[13], [-3], [-3], [10], [15], [-3], [5]],
          overflow=[False, False, False, False, True, False, False])
    # n: x = 2 * count of m = 4, 0, 0, 4, 4, 0, 2; reset zero, threshold 3
    check(got, "n", spikes=[[1], [0], [0], [1], [1], [0], [0]],
          states=[[0], [0], [0], [0], [0], [0], [2]], overflow=[False] * 7)
    assert got["scores"] == [3]
    net = oracle.load_dir(tmp_path)
    # m: 3 * (5 + 4) + 2 + 16 = 45 -> 7; n: m_src = spike_limit 2: 2 * 2 + 16 = 20 -> 6
    assert [oracle.required_acc_bits(net, i) for i in range(2)] == [7, 6]


# -- what the oracle refuses -----------------------------------------------------------------

def _broken(tmp_path, edit):
    doc = recurrent_doc()
    edit(doc)
    return oracle.load_dir(write_model(tmp_path, doc))


@pytest.mark.parametrize("edit, message", [
    (lambda d: d["layers"][0]["synapses"][1].update(delay=0),
     "source r is not earlier, so delay must be >= 1"),
    (lambda d: d["layers"][0]["synapses"][1].pop("delay"),
     "source r is not earlier, so delay must be >= 1"),
    (lambda d: d["layers"][0]["synapses"][0].update(source="nope"), "unknown source 'nope'"),
    (lambda d: d["layers"][0].update(spike_limit=0), "spike_limit 0 < 1"),
    (lambda d: d["layers"][0].update(v_min=1), "v_min 1 outside -32..0"),
    (lambda d: d["layers"][0].update(v_min=-33), "v_min -33 outside -32..0"),
    (lambda d: d["layers"][0]["synapses"][0].update(taps=2),
     r"weights have shape \(2, 1\), 2 taps need \(2, 2, 1\)"),
    (lambda d: d["layers"][0].update(acc_bits=6), "acc_bits 6 is too small, the bound needs 7"),
])
def test_refused(tmp_path, edit, message):
    with pytest.raises(oracle.OracleError, match=message):
        _broken(tmp_path, edit)


# -- self-consistency ------------------------------------------------------------------------

def _v1_as_v2_doc(model):
    """A v1 :class:`sim.model.Model` written as a v2 document (one synapse per layer)."""
    layers = []
    source = "input"
    for lay in model.layers:
        thr = [int(t) for t in lay.threshold]
        layers.append(layer(
            lay.name, lay.out_shape,
            [synapse(source, lay.type, lay.weights, kernel=lay.kernel, stride=lay.stride,
                     padding=lay.padding, weight_bits=lay.weight_bits)],
            threshold=thr, state_bits=lay.state_bits, acc_bits=lay.acc_bits,
            beta=(lay.beta_num, lay.beta_frac_bits), reset=lay.reset, bias=lay.bias))
        source = lay.name
    inp = model.input
    return model_doc(inp.shape, inp.timesteps, layers, count_clip=inp.count_clip,
                     readout=model.readout)


@settings(max_examples=scaled(100))
@given(st.integers(0, 2**32 - 1))
def test_v2_engine_matches_v1_chain(tmp_path_factory, seed):
    """A v1 chain: the kept v1 runner, the v2 engine on the objects, on the saved
    directories (version 1 and the default version 2, read by the oracle itself) and on
    the chain rewritten as a v2 graph by plain json all agree."""
    rng = np.random.default_rng(seed)
    model = random_model(rng)
    frames = (rng.random((model.input.timesteps, *model.input.shape)) < 0.4).astype(np.int64)
    frames *= rng.integers(1, model.input.count_clip + 1, size=frames.shape)
    steps = steps_of(frames)
    want = oracle.run_chain(model, steps)
    root = tmp_path_factory.mktemp("chain")
    save_model(model, root / "v1", version=1)
    save_model(model, root / "saved")
    write_model(root / "v2", _v1_as_v2_doc(model))
    assert json.loads((root / "v1" / "model.json").read_text())["version"] == 1
    for got in (oracle.run(model, steps), oracle.run_dir(root / "v1", steps),
                oracle.run_dir(root / "saved", steps), oracle.run_dir(root / "v2", steps)):
        for key in ("spikes", "states", "u", "overflow"):
            assert got[key] == want[key], key
        assert (got["scores"], got["prediction"]) == (want["scores"], want["prediction"])


def _random_frames(rng, doc):
    inp = doc["input"]
    frames = (rng.random((inp["timesteps"], *inp["shape"])) < 0.4).astype(np.int64)
    return frames * rng.integers(1, inp["count_clip"] + 1, size=frames.shape)


def _run(tmp_path_factory, doc, frames):
    return oracle.run_dir(write_model(tmp_path_factory.mktemp("m"), doc), steps_of(frames))


def _same(got, want):
    for key in ("spikes", "states", "u", "overflow", "currents"):
        assert got[key] == want[key], key
    assert (got["scores"], got["prediction"]) == (want["scores"], want["prediction"])


@settings(max_examples=scaled(100))
@given(st.integers(0, 2**32 - 1))
def test_taps_are_delayed_synapses(tmp_path_factory, seed):
    """A synapse with D taps equals D one-tap synapses with delays d, d+1, ..., d+D-1."""
    rng = np.random.default_rng(seed)
    doc = random_doc(rng, max_taps=4)
    split = copy.deepcopy(doc)
    n_taps = 0
    for ld in split["layers"]:
        new = []
        for sd in ld["synapses"]:
            taps = sd.pop("taps", 1)
            d = sd.pop("delay", 0)
            if taps == 1:
                new.append(dict(sd, delay=d))
                continue
            n_taps += 1
            for j in range(taps):
                w = None if sd["weights"] is None else sd["weights"][j]
                new.append(dict(sd, weights=w, delay=d + j))
        ld["synapses"] = new
    frames = _random_frames(rng, doc)
    _same(_run(tmp_path_factory, split, frames), _run(tmp_path_factory, doc, frames))


@settings(max_examples=scaled(100))
@given(st.integers(0, 2**32 - 1))
def test_neutral_v2_fields(tmp_path_factory, seed):
    """``v_min`` at the state minimum, ``spike_limit`` 1 and a current that forgets
    (beta_c 0) and is wide enough never to clamp all change nothing."""
    rng = np.random.default_rng(seed)
    doc = random_doc(rng, multi_spike=False, v_min=False, current=False)
    neutral = copy.deepcopy(doc)
    for ld in neutral["layers"]:
        ld["v_min"] = -(2 ** (ld["state_bits"] - 1))
        ld["spike_limit"] = 1
        ld["current"] = {"beta": {"num": 0, "frac_bits": 3}, "state_bits": ld["acc_bits"]}
        ld["acc_bits"] += 1                      # room for the current's range in B
    frames = _random_frames(rng, doc)
    got = _run(tmp_path_factory, neutral, frames)
    want = _run(tmp_path_factory, doc, frames)
    for name in got["currents"]:
        assert all(i == 0 for step in got["currents"][name] for i in step)
    got["currents"] = {}
    _same(got, want)


@settings(max_examples=scaled(100))
@given(st.integers(0, 2**32 - 1))
def test_random_graphs_run(tmp_path_factory, seed):
    """The oracle's own random v2 graphs load and run; spike counts respect spike_limit,
    u respects v_min and the state range, stored currents their range."""
    rng = np.random.default_rng(seed)
    doc = random_doc(rng)
    got = _run(tmp_path_factory, doc, _random_frames(rng, doc))
    for ld in doc["layers"]:
        name = ld["name"]
        lo, hi = -(2 ** (ld["state_bits"] - 1)), 2 ** (ld["state_bits"] - 1) - 1
        assert all(0 <= s <= ld.get("spike_limit", 1) for k in got["spikes"][name] for s in k)
        floor = lo if ld.get("v_min") is None else ld["v_min"]
        assert all(floor <= u <= hi for k in got["u"][name] for u in k)
        if ld.get("current") is not None:
            bits = ld["current"]["state_bits"]
            assert all(abs(i) <= 2 ** (bits - 1) for k in got["currents"][name] for i in k)


# -- the version-2 worked examples of docs/semantics.md (section 9.5), read from the page ---

DOC = Path(__file__).resolve().parents[2] / "docs" / "semantics.md"


def _page_table(marker):
    """The table after ``<!-- worked: marker -->``: a list of {column: value} rows."""
    lines = DOC.read_text().splitlines()
    start = lines.index(f"<!-- worked: {marker} -->")
    table = []
    for line in lines[start + 1:]:
        if not line.strip():
            break
        table.append([c.strip() for c in line.strip().strip("|").split("|")])
    head, rows = table[0], table[2:]                     # skip the rule under the header
    return [{h: (c == "yes") if h == "overflow" else int(c) for h, c in zip(head, row)}
            for row in rows]


def _page_run(tmp_path, layers, frames, **doc):
    """The oracle on a model that this test builds from the page's prose."""
    frames = np.asarray(frames)
    root = write_model(tmp_path, model_doc(frames.shape[1:], len(frames), layers, **doc))
    return oracle.run_dir(root, steps_of(frames)), oracle.load_dir(root)


def _conv1x1(source, w):
    return synapse(source, "conv2d", np.full((1, 1, 1, 1), w, np.int8), kernel=1, stride=1,
                   padding=0, weight_bits=3)


def test_page_v2_residual(tmp_path):
    rows = _page_table("v2-residual")
    a = layer("a", (1, 1, 2), [_conv1x1("input", 2)], threshold=2, reset="zero",
              state_bits=6, acc_bits=7, beta=(1, 1))
    b = layer("b", (1, 1, 2), [_conv1x1("a", 3),
                               synapse("input", "identity", np.array([1], np.int8),
                                       weight_bits=2)],
              threshold=5, reset="subtract", state_bits=6, acc_bits=7)
    got, net = _page_run(tmp_path, [a, b], [[[[1, 0]]], [[[1, 1]]], [[[0, 1]]]])
    assert [oracle.required_acc_bits(net, i) for i in range(2)] == [7, 7]
    for row in rows:
        k, p = row["k"], row["pixel"]
        assert got["spikes"]["a"][k][p] == row["s_a"]
        assert got["u"]["b"][k][p] == row["acc"]         # no clamp in this example
        assert got["spikes"]["b"][k][p] == row["s"]
        assert got["states"]["b"][k][p] == row["v"]
    assert len(rows) == 6


def _single_page(tmp_path, marker, syns, frames, count_clip=1, **neuron):
    rows = _page_table(marker)
    lay = layer("n", (1,), syns, acc_bits=7, **neuron)
    got, net = _page_run(tmp_path, [lay], frames, count_clip=count_clip)
    assert [row["k"] for row in rows] == list(range(len(frames)))
    assert [s[0] for s in got["spikes"]["n"]] == [row["s"] for row in rows]
    assert [v[0] for v in got["states"]["n"]] == [row["v"] for row in rows]
    for key, column in (("u", "u"), ("currents", "i")):
        if column in rows[0]:
            assert [x[0] for x in got[key]["n"]] == [row[column] for row in rows]
    if "overflow" in rows[0]:
        assert got["overflow"]["n"] == [row["overflow"] for row in rows]
    else:
        assert not any(got["overflow"]["n"])
    return got, net, rows


def test_page_v2_delay(tmp_path):
    syn = synapse("input", "linear", np.array([[5]], np.int8), weight_bits=4, delay=2)
    _, net, _ = _single_page(tmp_path, "v2-delay", [syn],
                             [[[[1]]], [[[0]]], [[[1]]], [[[0]]], [[[0]]]],
                             threshold=4, reset="zero", state_bits=5)
    assert oracle.required_acc_bits(net, 0) == 6         # 5 + 2**4 = 21: 5 bits + sign


def test_page_v2_taps(tmp_path):
    w = np.array([[[0, 0]], [[4, 0]], [[0, 3]]], np.int8)
    syn = synapse("input", "linear", w, weight_bits=4, taps=3, delay=0)
    _single_page(tmp_path, "v2-taps", [syn], [[[[1, 1]]], [[[0, 0]]], [[[0, 0]]], [[[0, 0]]]],
                 threshold=6, reset="subtract", state_bits=6)


def test_page_v2_recurrent_current(tmp_path):
    syns = [synapse("input", "linear", np.array([[7]], np.int8), weight_bits=4),
            synapse("n", "identity", np.array([-2], np.int8), weight_bits=3, delay=1)]
    got, net, rows = _single_page(tmp_path, "v2-recurrent", syns,
                                  [[[[1]]], [[[1]]], [[[0]]], [[[0]]]],
                                  threshold=5, reset="subtract", state_bits=6, beta=(3, 2),
                                  current=(1, 1, 4))
    # the page's u is acc here (no state clamp): the column 'acc'
    assert [u[0] for u in got["u"]["n"]] == [row["acc"] for row in rows]
    assert oracle.required_acc_bits(net, 0) == 7


def test_page_v2_multispike_vmin(tmp_path):
    syn = synapse("input", "linear", np.array([[5]], np.int8), weight_bits=4)
    _, net, _ = _single_page(tmp_path, "v2-multispike", [syn],
                             [[[[3]]], [[[0]]], [[[0]]], [[[0]]], [[[3]]]], count_clip=3,
                             threshold=3, reset="subtract", state_bits=6,
                             bias=np.array([-4], np.int8), spike_limit=2, v_min=-6)
    assert oracle.required_acc_bits(net, 0) == 7
