"""The quiet rule of the sparse sweep (sim.liveness): its ranges are the fixed points of
the contract's no-input step, and skipping quiet neurons that get no input changes no
spike, state or overflow flag (checked with the plain oracle, step by step)."""

import numpy as np
import pytest

from sim.liveness import quiet_u_range, quiet_v_range, quiet_words, sparse_ok
from sim.model import Layer
from sim.randmodel import random_binned, random_model
from sim.reference import run as ref_run

from .oracle import _flatten, _Params, _unflatten, frames_to_steps, step_layer


def _layer(num, frac, state_bits=6, v_min=None):
    return Layer(name="l", type="linear", in_shape=(1,), out_shape=(1,),
                 weights=np.ones((1, 1), dtype=np.int64), bias=None, weight_bits=2,
                 state_bits=state_bits, acc_bits=state_bits + 2, beta_num=num,
                 beta_frac_bits=frac, threshold=np.array([5]), reset="subtract",
                 v_min=v_min)


def _leak(v, num, frac):
    return (v * num) >> frac


@pytest.mark.parametrize("frac", range(0, 6))
@pytest.mark.parametrize("v_min", [None, -3, 0])
def test_ranges_are_the_fixed_points(frac, v_min):
    """Brute force over every ``num`` and every state: a non-firing ``v`` is in
    :func:`quiet_v_range` iff the no-input step keeps it; ``u`` is in
    :func:`quiet_u_range` iff ``leak(u)`` is in the ``v`` range."""
    for num in range(0, (1 << frac) + 1):
        layer = _layer(num, frac, v_min=v_min)
        thr = int(layer.threshold[0])
        lo, hi = quiet_v_range(layer)
        u_lo, u_hi = quiet_u_range(layer)
        floor = layer.state_min if v_min is None else v_min
        for v in range(layer.state_min, layer.state_max + 1):
            u = max(v, floor)                              # no input: acc = v, clamp, v_min
            fixed = u == v and u < thr and _leak(u, num, frac) == v
            quiet = lo <= v and (hi is None or v <= hi) and v < thr
            assert quiet == fixed, (num, frac, v)
        for u in range(floor, thr):                        # every u of a non-firing lane
            v = _leak(u, num, frac)
            want = lo <= v and (hi is None or v <= hi)
            got = (u_lo is None or u >= u_lo) and (u_hi is None or u <= u_hi)
            assert got == want, (num, frac, u)


def _touched(p, inputs):
    """Output neurons that an input event reaches (the contract's receptive field)."""
    if p.type == "linear":
        return set(range(p.n_out)) if inputs else set()
    out = set()
    C_out, H_out, W_out = p.out_shape
    for index, _ in inputs:
        c, y, x = _unflatten(index, p.in_shape)
        for co in range(C_out):
            if p.type == "sumpool2d" and co != c:
                continue
            for ky in range(p.K):
                for kx in range(p.K):
                    ny, nx = y + p.P - ky, x + p.P - kx
                    if ny % p.S or nx % p.S:
                        continue
                    oy, ox = ny // p.S, nx // p.S
                    if 0 <= oy < H_out and 0 <= ox < W_out:
                        out.add(_flatten((co, oy, ox), p.out_shape))
    return out


def _run_skipping(model, frames, widen=0):
    """The oracle's steps, each neuron either stepped or skipped: skipped when it is not
    listed (quiet after its last step) and no input reaches it. Returns ``(skipped,
    violations)``: how many neuron-steps were skipped, and how many of them the full
    step would have changed (``u != v``, a spike or a new ``v``). ``widen`` widens the
    quiet range upwards (a wrong rule: the check must see violations then)."""
    params = [_Params(layer) for layer in model.layers]
    in_shape = tuple(int(s) for s in model.input.shape)
    v = [[0] * p.n_out for p in params]
    listed = [set() for _ in params]
    skipped = violations = 0
    for step in frames_to_steps(frames):
        inputs = [(_flatten(key, in_shape), c) for key, c in sorted(step.items())]
        for i, (p, layer) in enumerate(zip(params, model.layers)):
            u, s, vn, _ = step_layer(p, v[i], inputs)
            active = listed[i] | _touched(p, inputs)
            lo, hi = quiet_v_range(layer)
            hi = None if hi is None else hi + widen
            per_channel = p.n_out // p.out_shape[0]
            for n in range(p.n_out):
                if n in active:
                    continue
                skipped += 1
                violations += u[n] != v[i][n] or s[n] != 0 or vn[n] != v[i][n]
            listed[i] = {n for n in active
                         if s[n] or vn[n] < lo or (hi is not None and vn[n] > hi)
                         or (hi is None and vn[n] >= p.threshold[n // per_channel])}
            v[i] = vn
            inputs = [(n, 1) for n in range(p.n_out) if s[n]]
    return skipped, violations


def _bias_free_model(seed):
    rng = np.random.default_rng(seed)
    model = random_model(rng, input_shape=(2, 6, 6), timesteps=6, readout="spike_count",
                         kinds=("conv2d", "conv2d", "linear")[:1 + seed % 3])
    for layer in model.layers:
        layer.bias = None
    frames = np.zeros((6, 2, 6, 6), dtype=np.int64)
    frames[rng.random(frames.shape) < 0.15] = 1
    return model, frames


def test_skipping_quiet_neurons_is_exact():
    """Random bias-free chains: every skipped neuron-step is one the contract leaves
    unchanged (``u == v``, no spike, ``v' == v``; hence no overflow), and many are
    skipped. A rule that also skips positive states (``widen``) is caught."""
    skipped = wrong = 0
    for seed in range(12):
        model, frames = _bias_free_model(seed)
        assert all(sparse_ok(layer) for layer in model.layers)
        n, bad = _run_skipping(model, frames)
        assert bad == 0, f"seed {seed}: {bad} skipped neuron-steps change"
        skipped += n
        wrong += _run_skipping(model, frames, widen=20)[1]
    assert skipped > 300
    assert wrong > 0, "a too wide quiet rule must break exactness"


def test_quiet_words_follow_the_reference():
    """:func:`quiet_words` (what the cycle model uses) lists a word iff some lane of it
    fired or left the quiet range, from the reference's own dump."""
    from sim.events import BinnedEvents
    model, frames = _bias_free_model(1)
    res = ref_run(model, BinnedEvents.from_frames(frames), record=True, backend="numpy")
    layer = model.layers[0]
    C = layer.out_shape[0]
    L = 2
    G = -(-C // L)
    loud = quiet_words(layer, res.spikes[layer.name], res.states[layer.name], G, L)
    lo, hi = quiet_v_range(layer)
    for k, words in enumerate(loud):
        s, v = res.spikes[layer.name][k], res.states[layer.name][k]
        for c, y, x in np.ndindex(*s.shape):
            bad = s[c, y, x] or v[c, y, x] < lo or (hi is not None and v[c, y, x] > hi)
            a = (y * s.shape[2] + x) * G + c // L
            if bad:
                assert a in words
    assert any(loud)


def test_sparse_ok_refuses_bias_current_and_membrane_output():
    layer = _layer(1, 1)
    assert sparse_ok(layer)
    assert not sparse_ok(layer, fire=False)
    layer.bias = np.array([0])
    assert sparse_ok(layer)                 # an all-zero bias is none
    layer.bias = np.array([2])
    assert not sparse_ok(layer)


def test_sweep_counts_are_the_cycle_models():
    """:func:`sweep_counts` (energy) counts the words the cycle model's sparse and dense
    cores sweep, on random models with and without bias, one sample."""
    from sim.cycles import HwParams, predict
    from sim.geometry import lanes_of
    from sim.liveness import sweep_counts
    for seed in range(8):
        rng = np.random.default_rng(50 + seed)
        model = random_model(rng, input_shape=(2, 6, 7), timesteps=4)
        if seed % 2:
            for layer in model.layers:
                layer.bias = None
        binned = random_binned(rng, model.input.shape, 4, model.input.count_clip,
                               density=0.2)
        lanes = [int(rng.integers(1, 4)) for _ in model.layers]
        res = ref_run(model, binned, record=True, backend="numpy")
        for sweep in ("sparse", "dense"):
            got = sweep_counts(model, binned, res, lanes_of(model, lanes), sweep)
            rep = predict(model, binned, HwParams(lanes=lanes, sweep=sweep), backend="numpy")
            assert [g["words"] for g in got] == rep.swept, (seed, sweep)
            assert [g["sparse"] for g in got] == rep.sparse
            for g in got:
                assert g["neurons"] <= g["dense_neurons"]


def test_sweep_counts_are_the_cycle_models_on_graphs():
    """The same on random version-2 graphs (residual joins, delays, taps, recurrence):
    every synapse's updates list words, a delayed one from the steps it replays."""
    from sim.cycles import HwParams, predict
    from sim.geometry import lanes_of
    from sim.liveness import sweep_counts
    from sim.randmodel import random_graph
    checked = 0
    for seed in range(12):
        rng = np.random.default_rng(400 + seed)
        model = random_graph(rng)
        for layer in model.layers:
            layer.bias = None
        binned = random_binned(rng, model.input.shape, model.input.timesteps,
                               model.input.count_clip, density=0.2)
        res = ref_run(model, binned, record=True, backend="numpy")
        got = sweep_counts(model, binned, res, lanes_of(model), "sparse")
        rep = predict(model, binned, HwParams(), backend="numpy")
        assert [g["words"] for g in got] == rep.swept, seed
        checked += sum(g["sparse"] and len(layer.synapses) > 1
                       for g, layer in zip(got, model.layers))
    assert checked, "no sparse layer with several synapses was drawn"
