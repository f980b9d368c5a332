"""Post-training quantization: valid models, exact acc_bits, exact mode, errors."""

import numpy as np
import pytest

from quant.ir import FloatLayer, FloatNet, NetImportError
from quant.ptq import floatnet_from_model, quantize, quantize_beta
from sim.model import ModelError, load_model, save_model, validate_model
from sim.randmodel import random_model


def _float_net(rng, readout="spike_count", count_clip=1, bias=True):
    return FloatNet(input_shape=(2, 9, 9), timesteps=5, count_clip=count_clip, readout=readout,
                    layers=[
        FloatLayer("conv1", "conv2d", (2, 9, 9), (4, 5, 5), 3, 2, 1,
                   rng.normal(size=(4, 2, 3, 3)) * 0.3, None, 0.9, 1.0, "subtract"),
        FloatLayer("pool", "sumpool2d", (4, 5, 5), (4, 2, 2), 2, 2, 0, None, None, 1.0, 2.0,
                   "zero"),
        FloatLayer("fc", "linear", (16,), (6,), None, None, None,
                   rng.normal(size=(6, 16)) * np.linspace(0.05, 1, 6)[:, None],
                   rng.normal(size=6) * 0.01 if bias else None, 0.875, 1.5, "none")])


def _worst_case(layer, m):
    """The contract's acc_bits, written out independently of sim.model."""
    if layer.type == "sumpool2d":
        fan = np.full(layer.c_out, layer.kernel ** 2)
    else:
        fan = np.abs(layer.weights.astype(np.int64)).reshape(layer.c_out, -1).sum(1)
    b = fan * m + (0 if layer.bias is None else np.abs(layer.bias.astype(np.int64)))
    return int(int(b.max()) + 2 ** (layer.state_bits - 1)).bit_length() + 1


@pytest.mark.parametrize("per_channel", [False, True])
@pytest.mark.parametrize("bits", [(8, 16), (4, 12), (2, 6)])
@pytest.mark.parametrize("count_clip", [1, 3])
def test_valid_model_exact_acc_bits(per_channel, bits, count_clip, tmp_path):
    rng = np.random.default_rng(1)
    wb, sb = bits
    net = _float_net(rng, count_clip=count_clip)
    model = quantize(net, weight_bits=wb, state_bits=sb, per_channel=per_channel)
    validate_model(model)
    for i, layer in enumerate(model.layers):
        m = count_clip if i == 0 else 1
        assert layer.acc_bits == _worst_case(layer, m)
        if layer.weights is not None:
            lim = 2 ** (wb - 1) - 1
            assert np.abs(layer.weights.astype(int)).max() == lim   # full range used
            assert layer.weight_bits == wb
        assert layer.state_bits == sb
        assert 1 <= layer.threshold.min() and layer.threshold.max() < 2 ** (sb - 1)
        # one smaller accumulator is rejected by the format
        layer.acc_bits -= 1
        with pytest.raises(ModelError, match="acc_bits"):
            validate_model(model)
        layer.acc_bits += 1
    fc = model.layer("fc")
    if per_channel and wb > 2:
        # rows of very different magnitude: per-channel thresholds absorb the scales
        assert len(set(fc.threshold.tolist())) > 1
        assert np.abs(fc.weights.astype(int)).max(axis=1).min() == 2 ** (wb - 1) - 1
    elif not per_channel:
        assert len(set(fc.threshold.tolist())) == 1
    # the integers follow the float parameters: W_int * scale ~= W (within half a step)
    conv = model.layer("conv1")
    w = net.layers[0].weight
    scales = np.asarray(model.meta["quantization"]["scales"]["conv1"], dtype=float)
    s = scales.reshape(-1, 1, 1, 1) if scales.ndim else scales
    assert np.all(np.abs(conv.weights * s - w) <= s / 2 + 1e-12)
    assert model.layer("pool").threshold.tolist() == [2, 2, 2, 2]
    assert (conv.beta_num, conv.beta_frac_bits) == (230, 8)          # 0.9 -> 230/256
    assert (fc.beta_num, fc.beta_frac_bits) == (7, 3)                 # 0.875 exactly
    # saving and loading gives the same integers
    save_model(model, tmp_path / "m")
    back = load_model(tmp_path / "m")
    for a, b in zip(model.layers, back.layers):
        assert a.acc_bits == b.acc_bits and np.array_equal(a.threshold, b.threshold)
        if a.weights is not None:
            assert np.array_equal(a.weights, b.weights)


def test_membrane_output_uses_one_scale():
    net = _float_net(np.random.default_rng(2), readout="membrane")
    model = quantize(net, per_channel=True)
    assert len(set(model.layer("fc").threshold.tolist())) == 1
    assert len(set(model.layer("conv1").threshold.tolist())) > 1


@pytest.mark.parametrize("seed", range(12))
def test_exact_mode_round_trip(seed):
    rng = np.random.default_rng(seed)
    wb, sb = int(rng.integers(2, 12)), int(rng.integers(12, 24))
    model = random_model(rng, weight_bits=wb, state_bits=sb)
    net = floatnet_from_model(model)
    back = quantize(net, weight_bits=wb, state_bits=sb, exact=True)
    for a, b in zip(model.layers, back.layers):
        assert a.name == b.name and a.type == b.type and a.reset == b.reset
        assert a.beta_num / 2 ** a.beta_frac_bits == b.beta_num / 2 ** b.beta_frac_bits
        assert np.array_equal(a.threshold, b.threshold)
        assert a.acc_bits == b.acc_bits and b.scale == 1.0
        for x, y in ((a.weights, b.weights), (a.bias, b.bias)):
            assert (x is None) == (y is None)
            if x is not None:
                assert np.array_equal(x.astype(int), y.astype(int))


def test_exact_mode_errors_name_the_layer():
    rng = np.random.default_rng(3)
    model = random_model(rng, kinds=["conv2d", "linear"], weight_bits=6, state_bits=16)
    net = floatnet_from_model(model)
    name = net.layers[1].name
    net.layers[1].weight = net.layers[1].weight + 0.5
    with pytest.raises(NetImportError, match=f"layer {name}: weight value .* not an integer"):
        quantize(net, weight_bits=6, state_bits=16, exact=True)
    net = floatnet_from_model(model)
    net.layers[0].beta = 0.3
    with pytest.raises(NetImportError, match=f"layer {net.layers[0].name}: beta 0.3 is not"):
        quantize(net, weight_bits=6, state_bits=16, exact=True)
    net = floatnet_from_model(model)
    net.layers[1].weight = net.layers[1].weight * 0 + 40
    with pytest.raises(NetImportError, match=f"layer {name}: weight 40 does not fit 6 bits"):
        quantize(net, weight_bits=6, state_bits=16, exact=True)


def test_unquantizable_nets():
    rng = np.random.default_rng(4)
    net = _float_net(rng)
    net.layers[0].beta = np.array([0.5, 0.5, 0.75, 0.5])
    with pytest.raises(NetImportError, match="layer conv1: per-channel beta values differ"):
        quantize(net)
    net = _float_net(rng)
    net.layers[2].beta = 1.5
    with pytest.raises(NetImportError, match="layer fc: beta 1.5 is outside"):
        quantize(net)
    net = _float_net(rng)
    net.layers[2].threshold = -1.0
    with pytest.raises(NetImportError, match="layer fc: threshold must be positive"):
        quantize(net)
    net = _float_net(rng)
    net.layers[1].threshold = 1e6
    with pytest.raises(NetImportError, match="layer pool: threshold 1000000 does not fit"):
        quantize(net)
    net = _float_net(rng)
    net.layers[0].type = "conv3d"
    with pytest.raises(NetImportError, match="layer conv1: type 'conv3d'"):
        quantize(net)
    net = _float_net(rng)
    net.layers[2].in_shape = (17,)
    net.layers[2].weight = np.ones((6, 17))
    with pytest.raises(NetImportError, match=r"\(fc\).in_shape"):
        quantize(net)


def test_names_and_beta_choice():
    net = _float_net(np.random.default_rng(5))
    net.layers[0].name = "0.conv"
    model = quantize(net, name_prefix="snn_")
    assert [l.name for l in model.layers] == ["snn_0_conv", "snn_pool", "snn_fc"]
    assert quantize_beta(0.5) == (1, 1)
    assert quantize_beta(1.0) == (1, 0)
    assert quantize_beta(0.9, 4) == (14, 4)
    assert quantize_beta(0.0) == (0, 0)
