"""The reference (every backend) against the plain oracle, and hand-computed cases.

Every comparison covers every spike and every stored state of every step of every
layer, the overflow flags, the scores and the prediction.
"""

from pathlib import Path

import numpy as np
import pytest
from hypothesis import event, given, settings
from hypothesis import strategies as st

from sim import reference
from sim.events import EVENT_DTYPE, BinnedEvents, bin_events
from sim.model import Current, InputSpec, Layer, Model, RESETS, Synapse, validate_model
from sim.randmodel import random_layer, random_model

from . import oracle

BACKENDS = [b for b in ("numpy", "numba") if b in reference.available_backends()]


def scaled(n):
    """``n`` examples under the ``ci`` profile, scaled with the loaded profile."""
    return max(5, n * settings().max_examples // 100)


# -- comparison ----------------------------------------------------------------------------

def _first_diff(got, want):
    for k, (g, w) in enumerate(zip(got, want)):
        if list(g) != list(w):
            n = next(i for i, (a, b) in enumerate(zip(g, w)) if a != b)
            return f"step {k}, neuron {n}: got {g[n]}, oracle {w[n]}"
    return "lengths differ"


def assert_matches(model, result, want, record=True):
    """``result`` (a sim.reference.Result) equals the oracle's ``want`` everywhere."""
    T = model.input.timesteps
    for layer in model.layers:
        name = layer.name
        if record:
            spikes = result.spikes[name]
            states = result.states[name]
            assert spikes.shape == (T, *layer.out_shape)
            assert states.shape == (T, *layer.out_shape)
            assert spikes.dtype == np.uint8
            assert np.issubdtype(states.dtype, np.integer)
            got_s = spikes.reshape(T, -1).tolist()
            got_v = states.reshape(T, -1).tolist()
            assert got_s == want["spikes"][name], f"{name} spikes: " + \
                _first_diff(got_s, want["spikes"][name])
            assert got_v == want["states"][name], f"{name} states: " + \
                _first_diff(got_v, want["states"][name])
        assert result.overflow[name].shape == (T,)
        assert result.overflow[name].tolist() == want["overflow"][name], f"{name} overflow"
        assert result.spike_count[name] == sum(map(sum, want["spikes"][name])), \
            f"{name} spike_count"
    assert result.scores.tolist() == want["scores"]
    assert result.prediction == want["prediction"]


def check_all_backends(model, frames):
    """Run the oracle once and every backend (recording and not) against it."""
    want = oracle.run(model, oracle.frames_to_steps(frames.tolist()))
    binned = BinnedEvents.from_frames(frames)
    for backend in BACKENDS:
        for record in (True, False):
            result = reference.run(model, binned, record=record, backend=backend)
            assert_matches(model, result, want, record=record)
    return want


# -- random models with explicitly drawn parameters ---------------------------------------

@st.composite
def layer_params(draw, kind, shape):
    """Per-layer choices for ``random_layer`` on input ``shape`` (all legal)."""
    kw = dict(
        weight_bits=draw(st.integers(2, 16)),
        state_bits=draw(st.integers(2, 32)),
        reset=draw(st.sampled_from(RESETS)),
        leak=draw(st.booleans()),
        bias=draw(st.booleans()),
        per_channel=draw(st.booleans()),
        fire_scale=draw(st.sampled_from([0.05, 0.3, 0.7, 1.0, 2.0, 4.0])),
    )
    if kind == "conv2d":
        _, H, W = shape
        P = draw(st.integers(0, 3))
        K = draw(st.integers(P + 1, min(7, min(H, W) + 2 * P)))
        kw.update(kernel=K, padding=P, stride=draw(st.integers(1, 3)),
                  out_channels=draw(st.integers(1, 4)))
    elif kind == "sumpool2d":
        _, H, W = shape
        kw.update(kernel=draw(st.integers(1, min(7, H, W))))
    else:
        kw.update(n_out=draw(st.integers(1, 6)))
    return kw


@st.composite
def cases(draw):
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    in_shape = (draw(st.integers(1, 2)), draw(st.integers(1, 10)), draw(st.integers(1, 10)))
    T = draw(st.integers(1, 6))
    clip = draw(st.integers(1, 4))
    readout = draw(st.sampled_from(["spike_count", "membrane"]))
    n_layers = draw(st.integers(1, 3))
    layers = []
    shape = in_shape
    spatial = True
    for i in range(n_layers):
        kind = draw(st.sampled_from(("conv2d", "sumpool2d", "linear") if spatial
                                    else ("linear",)))
        kw = draw(layer_params(kind, shape))
        layer = random_layer(rng, f"l{i}_{kind}", kind, shape,
                             count_clip=clip if i == 0 else 1, **kw)
        # the generator must honour every explicit choice
        if kind != "linear":
            assert layer.kernel == kw["kernel"]
        if kind == "conv2d":
            assert (layer.stride, layer.padding) == (kw["stride"], kw["padding"])
        assert layer.reset == kw["reset"]
        assert layer.state_bits == kw["state_bits"]
        assert layer.has_leak == kw["leak"]
        layers.append(layer)
        shape = layer.out_shape
        spatial = kind != "linear"
    model = validate_model(Model(
        input=InputSpec(shape=in_shape, dt_us=1000, timesteps=T, count_clip=clip),
        layers=layers, readout=readout))
    density = draw(st.sampled_from([0.0, 0.05, 0.2, 0.5, 1.0]))
    frames = (rng.random((T, *in_shape)) < density).astype(np.int64)
    frames *= rng.integers(1, clip + 1, size=frames.shape)
    return model, frames


@settings(max_examples=scaled(200))
@given(cases())
def test_reference_matches_oracle(case):
    model, frames = case
    want = check_all_backends(model, frames)
    # statistics (pytest --hypothesis-show-statistics): how much of the space was hit
    for layer in model.layers:
        event(f"type={layer.type}")
        event(f"reset={layer.reset}")
        if layer.type == "conv2d":
            event(f"conv K={layer.kernel} S={layer.stride} P={layer.padding}"[:11])
            event(f"conv S={layer.stride} P={layer.padding}")
        if layer.weight_bits is not None:
            event(f"weight_bits={layer.weight_bits}")
        if any(want["overflow"][layer.name]):
            event("clamped")
        if any(map(any, want["spikes"][layer.name])):
            event("spikes")
    if frames.max(initial=0) > 1:
        event("counts > 1")


@settings(max_examples=scaled(40))
@given(st.integers(0, 2**32 - 1))
def test_random_model_defaults_match_oracle(seed):
    """``random_model`` with its own choices (what other tests and benches use)."""
    rng = np.random.default_rng(seed)
    model = random_model(rng)
    clip = model.input.count_clip
    frames = (rng.random((model.input.timesteps, *model.input.shape)) < 0.3).astype(np.int64)
    frames *= rng.integers(1, clip + 1, size=frames.shape)
    check_all_backends(model, frames)


# -- targeted cases that must exercise a feature (so the comparison is not vacuous) --------

def _spatial_model(rng, reset, state_bits, readout="spike_count", clip=3, leak=True):
    l0 = random_layer(rng, "conv", "conv2d", (2, 7, 7), count_clip=clip, kernel=3, stride=2,
                      padding=1, out_channels=3, weight_bits=6, state_bits=state_bits,
                      reset=reset, leak=leak, bias=True, per_channel=True, fire_scale=0.5)
    l1 = random_layer(rng, "pool", "sumpool2d", l0.out_shape, kernel=2,
                      state_bits=state_bits, reset=reset, leak=leak, per_channel=False,
                      fire_scale=0.3)
    l2 = random_layer(rng, "fc", "linear", l1.out_shape, n_out=4, weight_bits=5,
                      state_bits=state_bits, reset=reset, leak=leak, bias=True,
                      per_channel=True, fire_scale=0.2)
    return validate_model(Model(InputSpec((2, 7, 7), 1000, 5, clip), [l0, l1, l2], readout))


@pytest.mark.parametrize("reset", RESETS)
@pytest.mark.parametrize("readout", ["spike_count", "membrane"])
def test_clamping_and_every_layer_fires(reset, readout):
    rng = np.random.default_rng(7)
    model = _spatial_model(rng, reset, state_bits=5, readout=readout)
    frames = (rng.random((5, 2, 7, 7)) < 0.6) * rng.integers(1, 4, size=(5, 2, 7, 7))
    want = check_all_backends(model, frames)
    assert any(want["overflow"]["conv"]), "the case must clamp"
    assert any(map(any, want["spikes"]["conv"]))
    assert any(map(any, want["spikes"]["pool"]))
    if readout == "spike_count":
        assert any(map(any, want["spikes"]["fc"]))
    else:
        assert not any(map(any, want["spikes"]["fc"])), "membrane output never fires"
    # negative states under leak exercise the floor shift
    assert min(min(v) for v in want["states"]["conv"]) < 0


def test_empty_input_and_bias_only():
    rng = np.random.default_rng(3)
    model = _spatial_model(rng, "subtract", state_bits=12)
    frames = np.zeros((5, 2, 7, 7), dtype=np.int64)
    check_all_backends(model, frames)


# -- hand-computed cases (numbers worked out from the contract, not from the code) ---------

def _linear_model(weights, *, bias, threshold, reset, state_bits, num, frac, clip, T,
                  readout="spike_count", acc_bits=None):
    w = np.array(weights, dtype=np.int8)
    layer = Layer(name="out", type="linear", in_shape=(w.shape[1],), out_shape=(w.shape[0],),
                  kernel=None, stride=None, padding=None, weights=w,
                  bias=None if bias is None else np.array(bias, dtype=np.int16),
                  weight_bits=4, state_bits=state_bits, acc_bits=acc_bits or 62,
                  beta_num=num, beta_frac_bits=frac,
                  threshold=np.array(threshold, dtype=np.int64),
                  threshold_per_channel=len(set(threshold)) > 1, reset=reset)
    if acc_bits is None:
        layer.acc_bits = layer.required_acc_bits(clip)
    return validate_model(Model(InputSpec((1, 1, w.shape[1]), 1000, T, clip), [layer],
                                readout))


#: docs/semantics.md, "A worked example": one neuron, weights (6, -3, 4), bias 1,
#: threshold 8, 5-bit state (-16..15), beta = 3/4, count_clip 2, three steps.
WORKED_FRAMES = np.array([[[[2, 0, 1]]], [[[0, 2, 0]]], [[[1, 0, 2]]]])
WORKED = {
    # reset: (u per step, spikes, stored v, overflow)
    "subtract": ([15, -2, 13], [1, 0, 1], [3, -2, 1], [True, False, False]),
    "zero": ([15, -5, 11], [1, 0, 1], [0, -4, 0], [True, False, False]),
    "none": ([15, 6, 15], [1, 0, 1], [11, 4, 11], [True, False, True]),
}


def worked_model(reset, readout="spike_count"):
    return _linear_model([[6, -3, 4]], bias=[1], threshold=[8], reset=reset, state_bits=5,
                         num=3, frac=2, clip=2, T=3, readout=readout)


def test_worked_example_acc_bits():
    # B = (6 + 3 + 4) * 2 + 1 + 2**4 = 43, 43 has 6 bits, plus a sign bit: 7
    assert worked_model("none").layers[0].acc_bits == 7


@pytest.mark.parametrize("reset", RESETS)
def test_worked_example(reset):
    model = worked_model(reset)
    u, s, v, ovf = WORKED[reset]
    want = {"spikes": {"out": [[x] for x in s]}, "states": {"out": [[x] for x in v]},
            "overflow": {"out": ovf}, "scores": [sum(s)], "prediction": 0}
    # the oracle agrees with the hand computation ...
    got = oracle.run(model, oracle.frames_to_steps(WORKED_FRAMES))
    assert got["u"]["out"] == [[x] for x in u]
    assert {key: got[key] for key in want} == want
    # ... and so does every backend
    for backend in BACKENDS:
        result = reference.run(model, BinnedEvents.from_frames(WORKED_FRAMES), backend=backend)
        assert_matches(model, result, want)


def test_worked_example_membrane():
    # the output never fires, so every reset mode stores leak(u): u = 15, 6, 19 -> 15
    for reset in RESETS:
        model = worked_model(reset, readout="membrane")
        want = {"spikes": {"out": [[0]] * 3}, "states": {"out": [[11], [4], [11]]},
                "overflow": {"out": [True, False, True]}, "scores": [15], "prediction": 0}
        for backend in BACKENDS:
            result = reference.run(model, BinnedEvents.from_frames(WORKED_FRAMES),
                                   backend=backend)
            assert_matches(model, result, want)


def test_worked_conv_receptive_field():
    """docs/semantics.md: a 3x3 conv, stride 2, padding 1 on a 1x1x4 input.

    Output (oy, ox) sees input x when ox*2 - 1 + kx == x: x=1 reaches ox=0 through kx=2
    and ox=1 through kx=0; x=2 reaches only ox=1 through kx=1. Only ky=1 meets y=0.
    """
    w = np.zeros((1, 1, 3, 3), dtype=np.int64)
    w[0, 0, 1] = [1, 10, 100]           # kx = 0, 1, 2 on the middle row
    w[0, 0, 0] = w[0, 0, 2] = 7         # rows that never meet the input (padding rows)
    layer = Layer(name="c", type="conv2d", in_shape=(1, 1, 4), out_shape=(1, 1, 2),
                  kernel=3, stride=2, padding=1, weights=w, bias=None, weight_bits=8,
                  state_bits=16, acc_bits=62, beta_num=0, beta_frac_bits=0,
                  threshold=np.array([1000]), reset="none")
    layer.acc_bits = layer.required_acc_bits(1)
    model = validate_model(Model(InputSpec((1, 1, 4), 1000, 2, 1), [layer], "membrane"))
    frames = np.zeros((2, 1, 1, 4), dtype=np.int64)
    frames[0, 0, 0, 1] = 1               # step 0: x=1 -> (100, 1)
    frames[1, 0, 0, 2] = 1               # step 1: x=2 -> (0, 10); beta 0 forgets step 0
    want = {"spikes": {"c": [[0, 0], [0, 0]]}, "states": {"c": [[0, 0], [0, 0]]},
            "overflow": {"c": [False, False]}, "scores": [0, 10], "prediction": 1}
    got = oracle.run(model, oracle.frames_to_steps(frames))
    assert got["u"]["c"] == [[100, 1], [0, 10]]
    for backend in BACKENDS:
        assert_matches(model, reference.run(model, BinnedEvents.from_frames(frames),
                                            backend=backend), want)


def test_ties_go_to_lowest_index_and_negative_leak_floors():
    # two identical neurons: equal scores, prediction 0; IF is num == 2**frac
    model = _linear_model([[3], [3]], bias=None, threshold=[3, 3], reset="subtract",
                          state_bits=8, num=4, frac=2, clip=1, T=2)
    frames = np.ones((2, 1, 1, 1), dtype=np.int64)
    want = {"spikes": {"out": [[1, 1], [1, 1]]}, "states": {"out": [[0, 0], [0, 0]]},
            "overflow": {"out": [False, False]}, "scores": [2, 2], "prediction": 0}
    for backend in BACKENDS:
        assert_matches(model, reference.run(model, BinnedEvents.from_frames(frames),
                                            backend=backend), want)
    # (-5 * 1) >> 1 == -3 (floor), not -2 (truncation); then (-3 * 1) >> 1 == -2
    model = _linear_model([[-5]], bias=None, threshold=[1], reset="none", state_bits=8,
                          num=1, frac=1, clip=1, T=2, readout="membrane")
    frames = np.array([[[[1]]], [[[0]]]])
    want = {"spikes": {"out": [[0], [0]]}, "states": {"out": [[-3], [-2]]},
            "overflow": {"out": [False, False]}, "scores": [-3], "prediction": 0}
    for backend in BACKENDS:
        assert_matches(model, reference.run(model, BinnedEvents.from_frames(frames),
                                            backend=backend), want)


def test_saturating_negative_clamp_sets_overflow():
    # u clamps at -2**(state_bits-1); threshold 1 never reached
    model = _linear_model([[-7, -7]], bias=[-3], threshold=[1], reset="zero", state_bits=4,
                          num=1, frac=0, clip=3, T=2)
    frames = np.array([[[[3, 3]]], [[[0, 0]]]])
    # step 0: acc = 0 - 42 - 3 = -45 -> u = -8 (overflow), v = -8 (IF)
    # step 1: acc = -8 - 3 = -11 -> u = -8 (overflow), v = -8
    want = {"spikes": {"out": [[0], [0]]}, "states": {"out": [[-8], [-8]]},
            "overflow": {"out": [True, True]}, "scores": [0], "prediction": 0}
    for backend in BACKENDS:
        assert_matches(model, reference.run(model, BinnedEvents.from_frames(frames),
                                            backend=backend), want)
    got = oracle.run(model, oracle.frames_to_steps(frames))
    assert got["u"]["out"] == [[-8], [-8]]


# -- the worked example of docs/semantics.md, read from the page itself ---------------------

DOC = Path(__file__).resolve().parents[2] / "docs" / "semantics.md"


def _doc_block(marker):
    """Lines following ``<!-- worked: marker -->`` up to the next blank line."""
    lines = DOC.read_text().splitlines()
    start = next(i for i, line in enumerate(lines) if line.strip() == f"<!-- worked: {marker} -->")
    out = []
    for line in lines[start + 1:]:
        if not line.strip():
            break
        out.append(line)
    return out


def _doc_table(reset):
    rows = []
    for line in _doc_block(reset)[2:]:                   # skip header and rule
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        k, counts, wsum, acc, u, ovf, s, v = cells
        rows.append(dict(k=int(k), counts=[int(c) for c in counts.split(",")],
                         wsum=int(wsum), acc=int(acc), u=int(u), overflow=ovf == "yes",
                         s=int(s), v=int(v)))
    return rows


def test_docs_worked_example_events():
    rows = [line.split() for line in _doc_block("events x y p t")
            if line.strip() and not line.startswith("```")]
    ev = np.zeros(len(rows), dtype=EVENT_DTYPE)
    for i, (x, y, p, t) in enumerate(rows):
        ev[i] = (int(x), int(y), int(p), int(t))
    binned = bin_events(ev, (1, 1, 3), timesteps=3, dt_us=1000, count_clip=2)
    assert (binned.to_frames() == WORKED_FRAMES).all()
    assert (binned.n_dropped, binned.n_clipped) == (1, 1)
    steps, dropped, clipped = oracle.bin_events(ev, (1, 1, 3), 3, 1000, 2)
    assert steps == oracle.frames_to_steps(WORKED_FRAMES)
    # the tables' count column is this binning
    for reset in RESETS:
        assert [r["counts"] for r in _doc_table(reset)] == WORKED_FRAMES[:, 0, 0].tolist()


@pytest.mark.parametrize("reset", RESETS)
def test_docs_worked_example_tables(reset):
    rows = _doc_table(reset)
    assert [r["k"] for r in rows] == [0, 1, 2]
    weights, bias = [6, -3, 4], 1
    v_prev = 0
    for r in rows:                                       # the page's own arithmetic
        assert r["wsum"] == sum(c * w for c, w in zip(r["counts"], weights))
        assert r["acc"] == v_prev + r["wsum"] + bias
        v_prev = r["v"]
    u, s, v, ovf = WORKED[reset]
    assert [r["u"] for r in rows] == u
    assert [r["s"] for r in rows] == s
    assert [r["v"] for r in rows] == v
    assert [r["overflow"] for r in rows] == ovf
    model = worked_model(reset)
    got = oracle.run(model, oracle.frames_to_steps(WORKED_FRAMES))
    assert got["u"]["out"] == [[x] for x in u]
    assert got["states"]["out"] == [[x] for x in v]
    for backend in BACKENDS:
        result = reference.run(model, BinnedEvents.from_frames(WORKED_FRAMES), backend=backend)
        assert result.states["out"].ravel().tolist() == v
        assert result.spikes["out"].ravel().tolist() == s
        assert result.overflow["out"].tolist() == ovf


# -- version 2: the worked examples of docs/semantics.md section 9.5 ------------------------

def _v2_table(marker):
    """The table after ``<!-- worked: marker -->`` as a list of {column: int} rows."""
    lines = _doc_block(marker)
    head = [c.strip() for c in lines[0].strip().strip("|").split("|")]
    rows = []
    for line in lines[2:]:
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        rows.append({h: (c == "yes") if h == "overflow" else int(c) for h, c in zip(head, cells)})
    return rows


def _v2_layer(name, out_shape, synapses, *, threshold, reset, state_bits, beta=(1, 0),
              bias=None, **neuron):
    co = out_shape[0]
    return Layer(name=name, out_shape=out_shape, synapses=synapses,
                 bias=None if bias is None else np.full(co, bias, dtype=np.int64),
                 state_bits=state_bits, acc_bits=62, beta_num=beta[0], beta_frac_bits=beta[1],
                 threshold=np.full(co, threshold, dtype=np.int64), reset=reset, **neuron)


def _v2_model(input_shape, frames, layers, count_clip=1, acc_bits=None):
    model = Model(InputSpec(input_shape, 1000, len(frames), count_clip), layers, "spike_count")
    for i, layer in enumerate(layers):
        layer.acc_bits = model.required_acc_bits(i)
    if acc_bits is not None:
        assert [layer.acc_bits for layer in layers] == acc_bits
    return validate_model(model), BinnedEvents.from_frames(np.asarray(frames))


def _v2_runs(model, binned):
    results = [reference.run(model, binned, backend=b) for b in BACKENDS]
    ref = results[0]
    for other in results[1:]:                            # every backend, every array
        a, b = ref.arrays(), other.arrays()
        assert a.keys() == b.keys()
        for key in a:
            np.testing.assert_array_equal(a[key], b[key], err_msg=key)
    return results


def _conv1x1(source, w, bits):
    return Synapse(source, "conv2d", kernel=1, stride=1, padding=0,
                   weights=np.full((1, 1, 1, 1), w, dtype=np.int64), weight_bits=bits)


def test_docs_v2_residual():
    rows = _v2_table("v2-residual")
    frames = [[[[1, 0]]], [[[1, 1]]], [[[0, 1]]]]
    a = _v2_layer("a", (1, 1, 2), [_conv1x1("input", 2, 3)], threshold=2, reset="zero",
                  state_bits=6, beta=(1, 1))
    b = _v2_layer("b", (1, 1, 2), [_conv1x1("a", 3, 3),
                                   Synapse("input", "identity", weights=np.array([1]),
                                           weight_bits=2)],
                  threshold=5, reset="subtract", state_bits=6)
    model, binned = _v2_model((1, 1, 2), frames, [a, b], acc_bits=[7, 7])
    for r in _v2_runs(model, binned):
        for row in rows:
            k, p = row["k"], row["pixel"]
            assert row["input"] == frames[k][0][0][p]
            assert r.spikes["a"][k, 0, 0, p] == row["s_a"]
            assert row["x"] == 3 * row["s_a"] + row["input"]          # the page's arithmetic
            prev = 0 if k == 0 else r.states["b"][k - 1, 0, 0, p]
            assert row["acc"] == prev + row["x"]
            assert r.spikes["b"][k, 0, 0, p] == row["s"]
            assert r.states["b"][k, 0, 0, p] == row["v"]


def _single(name, syn, rows, frames, *, check_x, count_clip=1, acc_bits=None, **neuron):
    layer = _v2_layer(name, (1,), [syn] if isinstance(syn, Synapse) else syn, **neuron)
    model, binned = _v2_model(tuple(np.asarray(frames).shape[1:]), frames, [layer],
                              count_clip=count_clip, acc_bits=acc_bits)
    assert [row["k"] for row in rows] == list(range(len(frames)))
    v_prev = 0
    for row in rows:                                     # the page's own arithmetic
        assert row["x"] == check_x(row)
        if "acc" in row and "a" not in row:
            assert row["acc"] == v_prev + row["x"]
        v_prev = row["v"]
    for r in _v2_runs(model, binned):
        assert r.spikes[name][:, 0].tolist() == [row["s"] for row in rows]
        assert r.states[name][:, 0].tolist() == [row["v"] for row in rows]
        if "overflow" in rows[0]:
            assert r.overflow[name].tolist() == [row["overflow"] for row in rows]
        if "i" in rows[0]:
            assert r.currents[name][:, 0].tolist() == [row["i"] for row in rows]
        assert r.scores.tolist() == [sum(row["s"] for row in rows)]
    return model


def test_docs_v2_delay():
    rows = _v2_table("v2-delay")
    frames = [[[[1]]], [[[0]]], [[[1]]], [[[0]]], [[[0]]]]
    assert [row["in"] for row in rows] == [0, 0] + [f[0][0][0] for f in frames[:3]]
    syn = Synapse("input", "linear", weights=np.array([[5]]), weight_bits=4, delay=2)
    _single("d", syn, rows, frames, check_x=lambda r: 5 * r["in"], threshold=4, reset="zero",
            state_bits=5, acc_bits=[6])


def test_docs_v2_taps():
    rows = _v2_table("v2-taps")
    frames = [[[[1, 1]]], [[[0, 0]]], [[[0, 0]]], [[[0, 0]]]]
    w = np.array([[[0, 0]], [[4, 0]], [[0, 3]]])
    syn = Synapse("input", "linear", weights=w, weight_bits=4, taps=3)
    # x at step k: tap j reads step k - j; only step 0 has input
    _single("h", syn, rows, frames,
            check_x=lambda r: int(w[r["k"]].sum()) if r["k"] < 3 else 0,
            threshold=6, reset="subtract", state_bits=6, acc_bits=[7])


def test_docs_v2_recurrent_current():
    rows = _v2_table("v2-recurrent")
    frames = [[[[1]]], [[[1]]], [[[0]]], [[[0]]]]
    syns = [Synapse("input", "linear", weights=np.array([[7]]), weight_bits=4),
            Synapse("r", "identity", weights=np.array([-2]), weight_bits=3, delay=1)]
    assert [row["self"] for row in rows] == [0] + [row["s"] for row in rows[:-1]]
    for row, prev_i in zip(rows, [0] + [row["i"] for row in rows]):
        assert row["a"] == prev_i + row["x"]
        assert row["i'"] == min(max(row["a"], -8), 7)
    v_prev = [0] + [row["v"] for row in rows]
    assert [row["acc"] for row in rows] == [v + row["i'"] for v, row in zip(v_prev, rows)]
    _single("r", syns, rows, frames, check_x=lambda r: 7 * r["in"] - 2 * r["self"],
            threshold=5, reset="subtract", state_bits=6, beta=(3, 2), acc_bits=[7],
            current=Current(beta_num=1, beta_frac_bits=1, state_bits=4))


def test_docs_v2_multispike_vmin():
    rows = _v2_table("v2-multispike")
    frames = [[[[3]]], [[[0]]], [[[0]]], [[[0]]], [[[3]]]]
    syn = Synapse("input", "linear", weights=np.array([[5]]), weight_bits=4)
    for row in rows:
        assert row["u"] == max(min(row["acc"], 31), -6)
    model = _single("m", syn, rows, frames, check_x=lambda r: 5 * r["in"] - 4, count_clip=3,
                    threshold=3, reset="subtract", state_bits=6, bias=-4, spike_limit=2,
                    v_min=-6, acc_bits=[7])
    # the bound is not an overflow
    r = reference.run(model, BinnedEvents.from_frames(np.asarray(frames)), backend="numpy")
    assert not r.overflow["m"].any()


# -- version 2: random graphs, every backend ------------------------------------------------

@pytest.mark.parametrize("block", range(4))
def test_random_graphs_backends_agree(block):
    """numpy and numba on random v2 graphs: every spike count, state, current and flag."""
    from sim.randmodel import random_binned, random_graph
    seen = dict(spikes=0, multi=0, current=0, delayed=0, recurrent=0, counts=0)
    for seed in range(block * 40, block * 40 + 40):
        rng = np.random.default_rng(seed)
        model = random_graph(rng)
        binned = random_binned(rng, model.input.shape, model.input.timesteps,
                               model.input.count_clip)
        results = _v2_runs(model, binned)
        assert results[0].synops == results[-1].synops
        assert results[0].spike_count == results[-1].spike_count
        r = results[0]
        seen["spikes"] += sum(r.spike_count.values()) > 0
        seen["counts"] += any((s > 1).any() for s in r.spikes.values())
        for i, layer in enumerate(model.layers):
            seen["multi"] += len(layer.synapses) > 1
            seen["current"] += layer.current is not None
            seen["delayed"] += any(s.delay or s.taps > 1 for s in layer.synapses)
            seen["recurrent"] += any(model.index(s.source) >= i for s in layer.synapses
                                     if s.source != "input")
    assert all(n > 3 for n in seen.values()), seen


def test_spike_counts_above_255_are_uint16():
    """u = 3 * 97 = 291 with threshold 1 and spike_limit 300: 291 spikes in one step,
    delivered as one count to the next layer (weight 2: 582 into a membrane output)."""
    syn = Synapse("input", "linear", weights=np.array([[97]]), weight_bits=8)
    many = _v2_layer("many", (1,), [syn], threshold=1, reset="zero", state_bits=12,
                     spike_limit=300)
    out = _v2_layer("out", (1,), [Synapse("many", "linear", weights=np.array([[2]]),
                                          weight_bits=3)],
                    threshold=1, reset="none", state_bits=12)
    model, binned = _v2_model((1, 1, 1), [[[[3]]]], [many, out], count_clip=3)
    model.readout = "membrane"
    for r in _v2_runs(model, binned):
        assert r.spikes["many"].dtype == np.uint16 and r.spikes["out"].dtype == np.uint8
        assert r.spikes["many"].ravel().tolist() == [291]
        assert r.scores.tolist() == [582]
