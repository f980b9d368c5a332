"""The torch LIF layers against the NumPy reference, spike for spike and state for state."""

import numpy as np
import pytest
import torch

from quant.lif import SURROGATES, SpikingNet, spike
from quant.ptq import floatnet_from_model, quantize
from sim.randmodel import random_binned, random_model
from sim.reference import run


def _batch(rng, model, n):
    binned = [random_binned(rng, model.input.shape, model.input.timesteps,
                            model.input.count_clip) for _ in range(n)]
    x = torch.as_tensor(np.stack([b.to_frames() for b in binned], axis=1))
    return binned, x


def _compare(model, net, binned, x):
    scores, tr = net(x, record=True)
    for j, b in enumerate(binned):
        ref = run(model, b, record=True, backend="numpy")
        for layer in model.layers:
            got_s = tr["spikes"][layer.name][:, j].numpy()
            got_v = tr["states"][layer.name][:, j].numpy()
            assert np.array_equal(got_s, ref.spikes[layer.name]), layer.name
            assert np.array_equal(got_v, ref.states[layer.name]), layer.name
            assert np.array_equal(tr["overflow"][layer.name][:, j].numpy(),
                                  ref.overflow[layer.name]), layer.name
        assert np.array_equal(scores[j].detach().numpy(), ref.scores)


@pytest.mark.parametrize("seed", range(40))
def test_integer_mode_matches_reference(seed):
    """Random models cover every layer type, reset, leak, bias, width and readout."""
    rng = np.random.default_rng(seed)
    model = random_model(rng)
    net = SpikingNet.from_model(model)
    binned, x = _batch(rng, model, 3)
    _compare(model, net, binned, x)


@pytest.mark.parametrize("seed", range(6))
def test_integer_mode_overflow_and_float64(seed):
    """Narrow states force clamping; wide states force the float64 path."""
    rng = np.random.default_rng(100 + seed)
    sb = 6 if seed % 2 else 30
    model = random_model(rng, state_bits=sb, weight_bits=5 if sb == 6 else 14, count_clip=2)
    net = SpikingNet.from_model(model)
    assert net.compute_dtype() == (torch.float32 if sb == 6 else torch.float64)
    binned, x = _batch(rng, model, 2)
    _compare(model, net, binned, x)


@pytest.mark.parametrize("per_channel", [False, True])
@pytest.mark.parametrize("readout", ["spike_count", "membrane"])
def test_fake_quant_forward_is_the_exported_model(per_channel, readout):
    """fake_quant quantizes like quant.ptq and computes exactly like the reference."""
    rng = np.random.default_rng(7)
    base = random_model(rng, input_shape=(2, 10, 10), kinds=["conv2d", "sumpool2d", "linear"],
                        weight_bits=8, state_bits=16, timesteps=6, readout=readout)
    fnet = floatnet_from_model(base)
    for fl in fnet.layers:          # make the parameters real-valued
        if fl.weight is not None:
            fl.weight = fl.weight * 0.013 + rng.normal(size=fl.weight.shape) * 0.001
        if fl.bias is not None:
            fl.bias = fl.bias * 0.013
        fl.threshold = np.asarray(fl.threshold) * 0.013 if fl.type != "sumpool2d" \
            else fl.threshold
    net = SpikingNet.from_floatnet(fnet).set_mode("fake_quant", weight_bits=8, state_bits=16,
                                                  per_channel=per_channel)
    model = quantize(net.to_floatnet(), weight_bits=8, state_bits=16, per_channel=per_channel)
    binned, x = _batch(rng, model, 4)
    _compare(model, net, binned, x)
    # gradients reach the float weights through the straight-through estimators
    net.zero_grad()
    net(x).sum().backward()
    for layer in net.layers:
        if layer.weight is not None:
            assert layer.weight.grad is not None and torch.isfinite(layer.weight.grad).all()


def test_float_mode_is_the_floatnet_semantics():
    """Float mode follows quant.ir's update equations (written out here with numpy)."""
    rng = np.random.default_rng(3)
    base = random_model(rng, input_shape=(1, 6, 6), kinds=["linear", "linear"], timesteps=5,
                        readout="spike_count")
    fnet = floatnet_from_model(base)
    for fl, reset in zip(fnet.layers, ["zero", "subtract"]):
        fl.weight = rng.normal(size=fl.weight.shape)
        fl.bias = None
        fl.beta, fl.threshold, fl.reset = 0.8, 1.0, reset
    net = SpikingNet.from_floatnet(fnet)
    x = (rng.random((5, 1, 1, 6, 6)) < 0.4).astype(np.float32)
    _, tr = net(torch.as_tensor(x), record=True)
    s_in = x.reshape(5, -1)
    for fl in fnet.layers:
        v = np.zeros(fl.out_shape[0])
        out = []
        for k in range(5):
            acc = v + fl.weight @ s_in[k]
            s = (acc >= fl.threshold).astype(float)
            v = fl.beta * acc - s * fl.threshold if fl.reset == "subtract" else \
                np.where(s > 0, 0.0, fl.beta * acc)
            out.append(s)
            assert np.allclose(tr["states"][fl.name][k, 0].numpy(), v, atol=1e-5)
        out = np.array(out)
        assert np.array_equal(tr["spikes"][fl.name][:, 0].numpy(), out)
        s_in = out


@pytest.mark.parametrize("name", list(SURROGATES))
def test_surrogates(name):
    x = torch.linspace(-2, 2, 9, requires_grad=True)
    y = spike(x, name, 2.0)
    assert y.tolist() == [0, 0, 0, 0, 1, 1, 1, 1, 1]     # x >= 0 fires (ties fire)
    y.sum().backward()
    g = x.grad
    assert (g >= 0).all() and g[4] == g.max() and g[4] > 0
    with pytest.raises(ValueError, match="unknown surrogate"):
        spike(x, "nope")
