"""The torch graph (quant.graph) against the reference: every spike count, state, current
and overflow flag of every layer and step, on random version-2 graphs."""

from dataclasses import replace

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from quant.graph import (FloatGraph, FloatGraphLayer, FloatSynapse, GraphNet,
                         floatgraph_from_dict, floatgraph_from_model, floatgraph_to_dict,
                         quantize_graph)
from quant.ir import NetImportError
from quant.kinds import torch_op
from sim.model import validate_model
from sim.randmodel import random_binned, random_graph
from sim.reference import run
from sim.registry import KINDS


def scaled(n):
    return max(5, n * settings().max_examples // 100)


def _batch(rng, model, n):
    binned = [random_binned(rng, model.input.shape, model.input.timesteps,
                            model.input.count_clip) for _ in range(n)]
    x = torch.as_tensor(np.stack([b.to_frames() for b in binned], axis=1))
    return binned, x


def _compare(model, net, binned, x, order="auto"):
    with torch.no_grad():
        scores, tr = net(x, record=True, order=order)
    for j, b in enumerate(binned):
        ref = run(model, b, record=True, backend="numpy")
        for layer in model.layers:
            name = layer.name
            assert np.array_equal(tr["spikes"][name][:, j].numpy(), ref.spikes[name]), name
            assert np.array_equal(tr["states"][name][:, j].numpy(), ref.states[name]), name
            assert np.array_equal(tr["overflow"][name][:, j].numpy(), ref.overflow[name]), name
            if layer.current is not None:
                assert np.array_equal(tr["currents"][name][:, j].numpy(),
                                      ref.currents[name]), name
            else:
                assert name not in tr["currents"]
        assert np.array_equal(scores[j].numpy(), ref.scores)


def test_every_kind_has_a_torch_operator():
    for name in KINDS:
        assert torch_op(name) is KINDS[name].part("quant.torch")


@settings(max_examples=scaled(60))
@given(st.integers(0, 2**32 - 1))
def test_integer_mode_matches_reference(seed):
    """Random graphs: every kind, delays and taps, self and backward recurrence,
    multi-spike, v_min, current-based layers, both readouts."""
    rng = np.random.default_rng(seed)
    model = random_graph(rng)
    net = GraphNet.from_model(model)
    binned, x = _batch(rng, model, 3)
    _compare(model, net, binned, x, order="step")
    if net._layer_major():
        _compare(model, net, binned, x, order="layer")
    else:
        with pytest.raises(ValueError, match="without synapses from later layers"):
            net(x, order="layer")


@pytest.mark.parametrize("seed", range(3))
def test_integer_mode_wide_states_use_float64(seed):
    """Widths past 24 bits run in float64 and stay exact (clamping included)."""
    rng = np.random.default_rng(1000 + seed)
    model = random_graph(rng, n_layers=3)
    for i, layer in enumerate(model.layers):
        layer.state_bits = 30
        if layer.current is not None:
            layer.current.state_bits = 28
    for i, layer in enumerate(model.layers):
        layer.acc_bits = model.required_acc_bits(i)
    validate_model(model)
    net = GraphNet.from_model(model)
    assert net.compute_dtype() == torch.float64
    binned, x = _batch(rng, model, 2)
    _compare(model, net, binned, x)


def _real_valued(model, rng, gain=0.013):
    """The float graph of ``model`` with real-valued weights, bias and thresholds."""
    g = floatgraph_from_model(model)
    for fl in g.layers:
        scaled_layer = all(torch_op(s.type).weighted for s in fl.synapses)
        f = gain if scaled_layer else 1.0
        for s in fl.synapses:
            if s.weight is not None:
                s.weight = s.weight * f + (rng.normal(size=s.weight.shape) * 0.1 * f
                                           if scaled_layer else 0)
        if fl.bias is not None:
            fl.bias = fl.bias * f
        fl.threshold = np.asarray(fl.threshold) * f
        if fl.v_min is not None:
            fl.v_min = fl.v_min * f
    return g


@pytest.mark.parametrize("per_channel", [False, True])
@pytest.mark.parametrize("seed", range(4))
def test_fake_quant_forward_is_the_exported_model(seed, per_channel):
    """fake_quant quantizes like quantize_graph and computes exactly like the reference;
    gradients reach every weight through the straight-through estimators."""
    rng = np.random.default_rng(50 + seed)
    base = random_graph(rng, n_layers=4, readout="membrane" if seed == 3 else "spike_count")
    g = _real_valued(base, rng)
    net = GraphNet.from_floatnet(g).set_mode("fake_quant", weight_bits=8, state_bits=16,
                                             per_channel=per_channel, current_bits=12)
    model = quantize_graph(net.to_floatnet(), weight_bits=8, state_bits=16,
                           per_channel=per_channel, current_bits=12)
    assert [l.current.state_bits for l in model.layers if l.current] == \
        [12] * sum(l.current is not None for l in model.layers)
    binned, x = _batch(rng, model, 3)
    _compare(model, net, binned, x, order="step")
    if net._layer_major():
        _compare(model, net, binned, x, order="layer")
    net.zero_grad()
    net(x).sum().backward()
    grads = [w.grad for layer in net.layers for w in layer.weights()]
    assert any(g is not None and bool(g.abs().sum() > 0) for g in grads)


def test_exact_round_trip():
    """quantize_graph(floatgraph_from_model(m), exact=True) gives m back."""
    rng = np.random.default_rng(4)
    model = random_graph(rng, n_layers=4)
    # one width for every weight and every current, as quantize_graph writes them
    for layer in model.layers:
        for s in layer.synapses:
            if s.weights is not None:
                s.weight_bits = 8
        if layer.current is not None:
            layer.current.state_bits = 10
        layer.state_bits = 16
    for i, layer in enumerate(model.layers):
        layer.acc_bits = model.required_acc_bits(i)
    validate_model(model)
    g = floatgraph_from_dict(floatgraph_to_dict(floatgraph_from_model(model)))
    back = quantize_graph(g, weight_bits=8, state_bits=16, current_bits=10, exact=True)
    for a, b in zip(model.layers, back.layers):
        for key in ("name", "out_shape", "state_bits", "acc_bits", "reset", "spike_limit",
                    "v_min"):
            assert getattr(a, key) == getattr(b, key), key
        # the same leaks (quantize_beta picks the smallest exact fraction width)
        assert a.beta_num / 2 ** a.beta_frac_bits == b.beta_num / 2 ** b.beta_frac_bits
        assert (a.current is None) == (b.current is None)
        if a.current is not None:
            assert a.current.state_bits == b.current.state_bits
            assert a.current.beta_num / 2 ** a.current.beta_frac_bits == \
                b.current.beta_num / 2 ** b.current.beta_frac_bits
        assert np.array_equal(a.threshold, b.threshold)
        assert (a.bias is None) == (b.bias is None)
        if a.bias is not None:
            assert np.array_equal(a.bias, b.bias)
        for sa, sb in zip(a.synapses, b.synapses):
            for key in ("source", "type", "kernel", "stride", "padding", "delay", "taps"):
                assert getattr(sa, key) == getattr(sb, key), key
            assert (sa.weights is None) == (sb.weights is None)
            if sa.weights is not None:
                assert np.array_equal(sa.weights, sb.weights)


def _tiny_graph():
    """input (1, 4) -> a (linear, 2 taps) -> r (linear + self recurrence, current) -> out."""
    rng = np.random.default_rng(0)
    layers = [
        FloatGraphLayer("a", (3,), [FloatSynapse("input", "linear", weight=rng.normal(
            size=(2, 3, 4)), delay=1, taps=2)], beta=0.5, threshold=0.7),
        FloatGraphLayer("r", (3,), [
            FloatSynapse("a", "linear", weight=rng.normal(size=(3, 3))),
            FloatSynapse("r", "linear", weight=rng.normal(size=(3, 3)) * 0.5, delay=1)],
            beta=0.75, threshold=0.6, reset="zero", current_beta=0.5, v_min=-0.5),
        FloatGraphLayer("out", (2,), [FloatSynapse("r", "linear",
                                                   weight=rng.normal(size=(2, 3)))],
                        beta=1.0, threshold=0.5, spike_limit=2)]
    return FloatGraph((1, 1, 4), layers, timesteps=6)


@pytest.mark.parametrize("order", ["step", "layer"])
def test_float_mode_semantics(order):
    """Float mode follows the graph equations, written out here with numpy."""
    g = _tiny_graph()
    net = GraphNet(g)
    rng = np.random.default_rng(1)
    x = (rng.random((6, 1, 1, 1, 4)) < 0.5).astype(np.float32)
    with torch.no_grad():
        scores, tr = net(torch.as_tensor(x), record=True, order=order)
    a, r, o = g.layers
    xin = x.reshape(6, 4)
    va, vr, ir, vo = np.zeros(3), np.zeros(3), np.zeros(3), np.zeros(2)
    sa_hist, sr_hist, so_hist = [], [], []
    for k in range(6):
        acc = va.copy()
        for j in range(2):
            if k - 1 - j >= 0:
                acc += a.synapses[0].weight[j] @ xin[k - 1 - j]
        sa = (acc >= 0.7).astype(float)
        va = 0.5 * acc - sa * 0.7
        xr = r.synapses[0].weight @ sa + (r.synapses[1].weight @ sr_hist[-1] if k else 0)
        i2 = ir + xr
        ir = 0.5 * i2
        u = np.maximum(vr + i2, -0.5)
        sr = (u >= 0.6).astype(float)
        vr = np.where(sr > 0, 0.0, 0.75 * u)
        uo = vo + o.synapses[0].weight @ sr
        so = np.where(uo >= 0.5, np.minimum(2, np.floor(uo / 0.5)), 0)
        vo = uo - so * 0.5
        for name, s, v in (("a", sa, va), ("r", sr, vr), ("out", so, vo)):
            assert np.array_equal(tr["spikes"][name][k, 0].numpy(), s), (k, name)
            assert np.allclose(tr["states"][name][k, 0].numpy(), v, atol=1e-5), (k, name)
        assert np.allclose(tr["currents"]["r"][k, 0].numpy(), ir, atol=1e-5)
        sa_hist.append(sa)
        sr_hist.append(sr)
        so_hist.append(so)
    assert np.array_equal(scores[0].numpy(), np.sum(so_hist, axis=0))


def test_float_mode_gradients_reach_every_weight():
    net = GraphNet(_tiny_graph())
    x = torch.ones(6, 2, 1, 1, 4)
    net(x).sum().backward()
    for layer in net.layers:
        for w in layer.weights():
            assert w.grad is not None and bool(w.grad.abs().sum() > 0), layer.name


def test_dropout_only_while_training():
    g = _tiny_graph()
    g.layers[0].dropout = 0.9
    net = GraphNet(g)
    x = torch.ones(6, 4, 1, 1, 4)
    net.eval()
    with torch.no_grad():
        a = net(x)
        b = net(x)
    assert torch.equal(a, b)
    net.train()
    torch.manual_seed(0)
    with torch.no_grad():
        _, tr_train = net(x, record=True)
    net.eval()
    with torch.no_grad():
        _, tr_eval = net(x, record=True)
    # the layer itself fires the same; what it passes on differs
    assert torch.equal(tr_train["spikes"]["a"], tr_eval["spikes"]["a"])
    assert not torch.equal(tr_train["spikes"]["r"], tr_eval["spikes"]["r"])


def test_bad_graphs():
    g = _tiny_graph()
    bad = FloatGraph(g.input_shape, [replace(g.layers[0], synapses=[
        replace(g.layers[0].synapses[0], source="nope")])] + g.layers[1:], 6)
    with pytest.raises(ValueError, match="unknown source 'nope'"):
        GraphNet(bad)
    rec = FloatGraph(g.input_shape, g.layers[:1] + [replace(g.layers[1], synapses=[
        g.layers[1].synapses[0], replace(g.layers[1].synapses[1], delay=0)])] + g.layers[2:], 6)
    with pytest.raises(ValueError, match="needs delay >= 1"):
        GraphNet(rec)
    neg = FloatGraph(g.input_shape, g.layers[:2] + [replace(g.layers[2], threshold=-1.0)], 6)
    with pytest.raises(NetImportError, match="layer out: threshold must be positive"):
        quantize_graph(neg)
