"""snnTorch import: the imported integer model fires exactly like snnTorch.

Every comparison runs the snnTorch module step by step (its own ``Leaky`` code) and the
reference (``sim.reference.run``) on the imported model and compares every spike and
every stored state of every layer at every step. The setups make the float run exact
by construction (see each test), so equality is a proof, not luck:

* ``beta`` 1 or 0 and integer weights: membranes are integers;
* ``beta = 1/2`` with weights that are multiples of ``2**T``: ``T`` halvings keep the
  membrane an integer;
* reset ``subtract`` with weights that are multiples of ``2**k`` and an odd threshold:
  a membrane can only equal the threshold after ``2**k - 1`` spikes (beta 1) or never
  within ``T <= k - 2`` steps (beta 1/2), so snnTorch's ``>`` and the contract's
  ``>=`` cannot disagree (the test also checks that no tie occurred).
"""

import subprocess
import sys

import numpy as np
import pytest

torch = pytest.importorskip("torch")
snn = pytest.importorskip("snntorch")
nn = torch.nn

from quant.importers import NetImportError, to_model  # noqa: E402
from quant.importers.__main__ import main as cli_main  # noqa: E402
from quant.importers.snntorch import import_snntorch  # noqa: E402
from sim.cli import main_guard  # noqa: E402
from sim.events import BinnedEvents  # noqa: E402
from sim.model import load_model  # noqa: E402
from sim.reference import run  # noqa: E402


def _leaky(beta, thr=1.0, reset="subtract", **kw):
    return snn.Leaky(beta=beta, threshold=thr, reset_mechanism=reset, init_hidden=True, **kw)


def _set_int(net, rng, mult, lo=-3, hi=3, bias=False):
    """Integer weights ``mult * U{lo..hi}`` (and biases) for every Conv2d/Linear."""
    with torch.no_grad():
        for m in net:
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                m.weight.copy_(torch.tensor(rng.integers(lo, hi + 1, m.weight.shape) * mult,
                                            dtype=torch.float32))
                if m.bias is not None:
                    if bias:
                        m.bias.copy_(torch.tensor(rng.integers(-1, 2, m.bias.shape) * mult,
                                                  dtype=torch.float32))
                    else:
                        m.bias.zero_()


def _run_snntorch(net, frames):
    """Step the Sequential: per Leaky, the spikes and membranes of every step."""
    leakies = [m for m in net if isinstance(m, snn.Leaky)]
    for m in leakies:
        m.reset_mem()
    spikes = {id(m): [] for m in leakies}
    mems = {id(m): [] for m in leakies}
    with torch.no_grad():
        for t in range(frames.shape[0]):
            x = torch.tensor(frames[t][None], dtype=torch.float32)
            for m in net:
                x = m(x)
                if isinstance(m, snn.Leaky):
                    spikes[id(m)].append(x[0].numpy().copy())
                    mems[id(m)].append(m.mem[0].double().numpy().copy())
    return [(m, np.array(spikes[id(m)]), np.array(mems[id(m)])) for m in leakies]


def _compare(net, model, frames, units, *, allow_fraction=False):
    """Every spike and every stored state of every layer at every step.

    ``units[i]``: the integer accumulator of contract layer ``i`` is ``units[i]`` times
    the snnTorch membrane (``k**2`` after an average pooling, else 1).
    """
    res = run(model, BinnedEvents.from_frames(frames), backend="numpy")
    traces = _run_snntorch(net, frames)
    assert len(traces) == len(model.layers)
    for (m, spk, mem), layer, unit in zip(traces, model.layers, units):
        T = frames.shape[0]
        thr_src = np.broadcast_to(m.threshold.detach().double().numpy() * unit,
                                  spk.shape[1:]).reshape(layer.out_shape)
        spk = spk.reshape(T, *layer.out_shape)
        mem = mem.reshape(T, *layer.out_shape) * unit
        if layer.reset == "subtract":     # the one documented difference cannot occur
            assert not np.any(mem == thr_src), f"{layer.name}: a membrane equals the threshold"
        if not allow_fraction:
            assert np.all(mem == np.rint(mem)), f"{layer.name}: float membrane not integral"
        np.testing.assert_array_equal(res.spikes[layer.name], spk.astype(np.uint8),
                                      err_msg=f"spikes of {layer.name}")
        # the stored state after step t, from snnTorch's membrane (plain oracle)
        acc = np.floor(mem).astype(np.int64)
        thr = layer.threshold_per_neuron().reshape(layer.out_shape)
        leaked = (acc * layer.beta_num) >> layer.beta_frac_bits
        s = spk.astype(bool)
        want = {"subtract": leaked - s * thr, "zero": np.where(s, 0, leaked),
                "none": leaked}[layer.reset]
        np.testing.assert_array_equal(res.states[layer.name], want,
                                      err_msg=f"states of {layer.name}")
        assert spk.sum() > 0, f"{layer.name} never fired: the test would be weak"
    return res


def _frames(rng, T, shape, density=0.4):
    return (rng.random((T, *shape)) < density).astype(np.int64)


def _import(net, shape, T, **kw):
    fn, integer = import_snntorch(net, shape, timesteps=T, **kw)
    return fn, integer, to_model(fn, integer)


@pytest.mark.parametrize("reset", ["subtract", "zero", "none"])
def test_mlp_beta1_every_reset(reset):
    rng = np.random.default_rng(1)
    T = 7
    net = nn.Sequential(nn.Flatten(), nn.Linear(2 * 4 * 4, 12), _leaky(1.0, 13.0, reset),
                        nn.Linear(12, 5), _leaky(1.0, 9.0, reset))
    _set_int(net, rng, 8, bias=True)       # multiples of 8 > T, odd thresholds: no ties
    fn, integer, model = _import(net, (2, 4, 4), T)
    assert integer
    want = 13 if reset == "subtract" else 14
    assert model.layers[0].threshold.tolist() == [want] * 12
    for seed in range(3):
        _compare(net, model, _frames(np.random.default_rng(seed), T, (2, 4, 4)), [1, 1])


def test_learnable_params_clamped_beta_dropout_and_no_reset_delay():
    """Parameters are read as values; beta is clamped to [0, 1] as snnTorch's forward does;
    Dropout is skipped in eval; reset zero without reset delay fires the same."""
    rng = np.random.default_rng(7)
    T = 6
    net = nn.Sequential(nn.Flatten(), nn.Dropout(0.5), nn.Linear(32, 10),
                        _leaky(1.5, 5.0, "zero", learn_beta=True, learn_threshold=True,
                               reset_delay=False),
                        nn.Linear(10, 4), _leaky(-0.5, 1.0, "zero", learn_beta=True))
    _set_int(net, rng, 1, bias=True)
    net.eval()
    fn, integer, model = _import(net, (2, 4, 4), T)
    assert [(layer.beta_num, layer.beta_frac_bits) for layer in model.layers] == [(1, 0), (0, 0)]
    for seed in range(3):
        _compare(net, model, _frames(np.random.default_rng(seed), T, (2, 4, 4)), [1, 1])


def test_membrane_readout_scores_are_the_last_membrane():
    rng = np.random.default_rng(8)
    T = 5
    net = nn.Sequential(nn.Flatten(), nn.Linear(18, 8), _leaky(1.0, 3.0, "zero"),
                        nn.Linear(8, 4), _leaky(0.5, 1e4, "none"))
    _set_int(net, rng, 1)
    with torch.no_grad():
        net[3].weight.mul_(32.0)               # beta 1/2 over T=5 steps stays integral
    fn, integer, model = _import(net, (2, 3, 3), T, readout="membrane")
    assert model.readout == "membrane"
    for seed in range(3):
        frames = _frames(np.random.default_rng(seed), T, (2, 3, 3), 0.5)
        res = run(model, BinnedEvents.from_frames(frames), backend="numpy")
        (_, spk1, _), (_, _, mem) = _run_snntorch(net, frames)
        np.testing.assert_array_equal(res.spikes["fc1"], spk1)
        np.testing.assert_array_equal(res.scores, mem[-1])
        assert np.any(mem[-1] != 0)


def test_conv_avgpool_flatten_linear_mixed_betas():
    """Conv2d + Leaky(1/2, zero) -> AvgPool2d -> Leaky(0) (sumpool2d) -> Linear + Leaky(1)."""
    rng = np.random.default_rng(2)
    T = 4
    net = nn.Sequential(
        nn.Conv2d(2, 4, 3, stride=1, padding=1), _leaky(0.5, 20.0, "zero"),
        nn.AvgPool2d(2), _leaky(0.0, 0.3, "zero"),             # sum >= 2 of 4
        nn.Flatten(), nn.Linear(4 * 4 * 4, 6), _leaky(1.0, 7.0, "subtract"))
    _set_int(net, rng, 16, bias=True)
    with torch.no_grad():
        net[5].weight.copy_(torch.tensor(rng.integers(-2, 4, (6, 64)) * 8.0))
    fn, integer, model = _import(net, (2, 8, 8), T)
    assert [layer.type for layer in model.layers] == ["conv2d", "sumpool2d", "linear"]
    assert model.layers[1].threshold.tolist() == [2] * 4      # floor(0.3 * 4) + 1
    assert (model.layers[0].beta_num, model.layers[0].beta_frac_bits) == (1, 1)
    for seed in range(3):
        _compare(net, model, _frames(np.random.default_rng(seed), T, (2, 8, 8), 0.5), [1, 4, 1])


def test_pool_folds_into_conv_and_linear_weights():
    """Conv -> AvgPool -> Leaky (fused conv); Leaky -> AvgPool -> Conv / -> Linear (weights)."""
    rng = np.random.default_rng(3)
    T = 6
    net = nn.Sequential(
        nn.Conv2d(2, 3, 3, stride=1, padding=1), nn.AvgPool2d(2), _leaky(1.0, 1.2, "zero"),
        nn.AvgPool2d(2), nn.Conv2d(3, 4, 3, stride=1, padding=1), _leaky(1.0, 0.6, "none"),
        nn.AvgPool2d(2), nn.Flatten(), nn.Linear(16, 5), _leaky(1.0, 0.2, "zero"))
    _set_int(net, rng, 1, bias=False)
    fn, integer, model = _import(net, (2, 16, 16), T)
    assert integer
    kinds = [(layer.type, layer.kernel, layer.stride, layer.padding) for layer in model.layers]
    assert kinds == [("conv2d", 4, 2, 1), ("conv2d", 6, 2, 2), ("linear", None, None, None)]
    assert model.layers[0].threshold.tolist() == [5] * 3      # floor(1.2 * 4) + 1
    assert model.layers[1].threshold.tolist() == [3] * 4      # floor(0.6 * 4) + 1
    for seed in range(3):
        _compare(net, model, _frames(np.random.default_rng(seed), T, (2, 16, 16), 0.5),
                 [4, 4, 4])


def test_pool_fusion_geometry_matches_torch():
    """The fused/folded convolutions compute k**2 x torch's pooled currents, any geometry."""
    F = torch.nn.functional
    rng = np.random.default_rng(11)
    for _ in range(40):
        K, S, k = int(rng.integers(1, 5)), int(rng.integers(1, 3)), int(rng.integers(2, 4))
        P = int(rng.integers(0, K))
        H, W = int(rng.integers(K + k * S, 14)), int(rng.integers(K + k * S, 14))
        conv = nn.Conv2d(2, 3, K, stride=S, padding=P)
        x = torch.tensor((rng.random((1, 2, H, W)) < 0.5).astype(np.float32))
        # conv -> pool -> neuron: one fused conv
        net = nn.Sequential(conv, nn.AvgPool2d(k), _leaky(1.0))
        fn, _ = import_snntorch(net, (2, H, W), timesteps=1, integer=False)
        (layer,) = fn.layers
        with torch.no_grad():
            want = net[1](conv(x))[0] * k * k
            got = F.conv2d(x, torch.tensor(layer.weight, dtype=torch.float32),
                           torch.tensor(layer.bias, dtype=torch.float32),
                           stride=layer.stride, padding=layer.padding)[0]
        assert tuple(got.shape) == tuple(layer.out_shape) == tuple(want.shape)
        np.testing.assert_allclose(got.numpy(), want.numpy(), rtol=1e-5, atol=1e-4)
        # spikes -> pool -> conv: weights repeated over the pooled block
        Hk, Wk = H - H % k, W - W % k
        if (Hk // k) + 2 * P < K or (Wk // k) + 2 * P < K:
            continue
        net = nn.Sequential(nn.AvgPool2d(k), conv, _leaky(1.0))
        xs = x[:, :, :Hk, :Wk]
        fn, _ = import_snntorch(net, (2, Hk, Wk), timesteps=1, integer=False)
        (layer,) = fn.layers
        with torch.no_grad():
            want = conv(net[0](xs))[0] * k * k
            got = F.conv2d(xs, torch.tensor(layer.weight, dtype=torch.float32),
                           torch.tensor(layer.bias, dtype=torch.float32),
                           stride=layer.stride, padding=layer.padding)[0]
        assert tuple(got.shape) == tuple(layer.out_shape) == tuple(want.shape)
        np.testing.assert_allclose(got.numpy(), want.numpy(), rtol=1e-5, atol=1e-4)


def test_beta_half_subtract_fractional_membranes_match():
    """beta 1/2, reset subtract, odd threshold, weights multiples of 32, T = 4.

    Membranes become fractional; the contract floors each leak, and ``floor(mem)`` is
    its accumulator at every step. A tie ``mem == thr`` needs ``2**5`` to divide
    ``2**t + sum 2**j s`` < ``2**(t+2)`` <= ``2**5``: impossible, so the spikes agree.
    """
    rng = np.random.default_rng(4)
    T = 4
    net = nn.Sequential(nn.Conv2d(2, 3, 3, padding=1), _leaky(0.5, 41.0, "subtract"),
                        nn.Flatten(), nn.Linear(3 * 6 * 6, 4), _leaky(0.5, 33.0, "subtract"))
    _set_int(net, rng, 32, lo=-2, hi=3)
    fn, integer, model = _import(net, (2, 6, 6), T)
    fractional = False
    for seed in range(4):
        frames = _frames(np.random.default_rng(seed), T, (2, 6, 6), 0.5)
        _compare(net, model, frames, [1, 1], allow_fraction=True)
        fractional |= any(np.any(mem != np.rint(mem)) for _, _, mem in
                          _run_snntorch(net, frames))
    assert fractional, "the setup never produced a fractional membrane"


def test_per_channel_threshold_and_maxpool_or():
    rng = np.random.default_rng(5)
    T = 5
    thr = torch.tensor([3.0, 5.0, 2.0]).reshape(3, 1, 1)
    net = nn.Sequential(nn.Conv2d(1, 3, 3, padding=1), _leaky(1.0, thr, "zero"),
                        nn.MaxPool2d(2), nn.Flatten(), nn.Linear(3 * 3 * 3, 4),
                        _leaky(1.0, 2.0, "zero"))
    _set_int(net, rng, 1)
    fn, integer, model = _import(net, (1, 6, 6), T)
    assert model.layers[0].threshold.tolist() == [4, 6, 3]
    assert model.layers[1].type == "sumpool2d" and model.layers[1].beta_num == 0
    # the OR layer has no snnTorch Leaky: compare the others, and the OR against max-pool
    res = None
    for seed in range(3):
        frames = _frames(np.random.default_rng(seed), T, (1, 6, 6), 0.5)
        res = run(model, BinnedEvents.from_frames(frames), backend="numpy")
        traces = _run_snntorch(net, frames)
        conv_spk = traces[0][1].reshape(T, 3, 6, 6)
        np.testing.assert_array_equal(res.spikes["conv0"], conv_spk)
        pooled = conv_spk.reshape(T, 3, 3, 2, 3, 2).max(axis=(3, 5))
        np.testing.assert_array_equal(res.spikes["maxpool2"], pooled)
        np.testing.assert_array_equal(res.spikes["fc4"], traces[1][1])
    assert res.spike_count["fc4"] > 0


def test_float_mode_when_weights_are_not_integers():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Flatten(), nn.Linear(8, 4), _leaky(0.9, 0.5))
    fn, integer, model = _import(net, (2, 2, 2), 5)
    assert not integer and model.meta["import"]["mode"] == "float"
    assert (model.layers[0].beta_num, model.layers[0].beta_frac_bits) == (230, 8)
    with pytest.raises(NetImportError, match="fc1: weights value .* not an integer"):
        import_snntorch(net, (2, 2, 2), timesteps=5, integer=True)


@pytest.mark.parametrize("layers, match", [
    (lambda: [nn.Flatten(), nn.Linear(8, 4), nn.BatchNorm1d(4), _leaky(1.0)],
     r"layer batchnorm1d2 \(BatchNorm1d\): BatchNorm is not supported"),
    (lambda: [nn.Flatten(), nn.Linear(8, 4), snn.Alpha(alpha=0.9, beta=0.8, init_hidden=True)],
     r"Alpha\): only snntorch.Leaky, RLeaky, Synaptic and RSynaptic"),
    (lambda: [nn.Flatten(), nn.Linear(8, 4), _leaky(1.0, graded_spikes_factor=2.0)],
     r"lif2 \(Leaky\): graded spikes"),
    (lambda: [nn.Flatten(), nn.Linear(8, 4), _leaky(torch.tensor([0.5, 0.5, 0.25, 0.5]))],
     r"lif2 \(Leaky\): per-neuron beta values differ"),
    (lambda: [nn.Flatten(), nn.Linear(8, 4), _leaky(1.0, reset_delay=False)],
     r"lif2 \(Leaky\): reset_delay=False with reset 'subtract'"),
    (lambda: [nn.Flatten(), nn.Linear(8, 4), _leaky(1.0, inhibition=True)],
     r"inhibition"),
    (lambda: [nn.Flatten(), nn.Linear(8, 4), nn.Linear(4, 4), _leaky(1.0)],
     r"layer fc2: Linear follows linear 'fc1' without a neuron"),
    (lambda: [nn.Flatten(), nn.Linear(8, 4)], r"ends with linear 'fc1' without neurons"),
    (lambda: [nn.Flatten(), nn.Linear(8, 4), nn.GELU(), _leaky(1.0)],
     r"layer gelu2 \(index 2, GELU\): unsupported layer type"),
    (lambda: [nn.Flatten(), nn.Linear(8, 4), _leaky(1.0, -1.0)], r"threshold must be positive"),
    (lambda: [nn.Conv2d(2, 2, 2, dilation=2), _leaky(1.0)], r"conv0 \(Conv2d\): dilation"),
    (lambda: [nn.Flatten(), nn.Linear(9, 4), _leaky(1.0)], r"fc1: expects 9 inputs"),
    (lambda: [_leaky(1.0)], r"lif0 \(Leaky\): a Leaky without a preceding"),
    (lambda: [nn.Conv2d(2, 2, 1), _leaky(1.0, torch.tensor([[[1.0, 2.0], [1.0, 1.0]]]))],
     r"layer lif1: threshold differs between neurons of channel 0"),
    (lambda: [nn.Flatten(), nn.Linear(8, 4), _leaky(1.0, reset="zero", state_quant=True)],
     r"state_quant"),
])
@pytest.mark.filterwarnings("ignore:Inhibition is an unstable feature")
def test_rejects_with_layer_name(layers, match):
    net = nn.Sequential(*layers())
    with pytest.raises(NetImportError, match=match):
        import_snntorch(net, (2, 2, 2), timesteps=3)


_ARCH = """
import torch.nn as nn, snntorch as snn
def build():
    return nn.Sequential(nn.Flatten(), nn.Linear(8, 3),
                         snn.Leaky(beta=1.0, threshold=3.0, reset_mechanism="zero",
                                   init_hidden=True))
"""


def test_cli_imports_state_dict_with_builder_and_rejects_bad_files(tmp_path, capsys):
    rng = np.random.default_rng(6)
    (tmp_path / "arch.py").write_text(_ARCH)
    ns = {}
    exec(_ARCH, ns)
    net = ns["build"]()
    _set_int(net, rng, 1)
    torch.save(net.state_dict(), tmp_path / "net.pt")
    out = tmp_path / "models" / "imp"
    out.parent.mkdir()
    base = ["--input-shape", "2,2,2", "--timesteps", "4"]
    r = subprocess.run([sys.executable, "-m", "quant.importers", "snntorch",
                        str(tmp_path / "net.pt"), "--builder", str(tmp_path / "arch.py"),
                        "--out", str(out)] + base, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    model = load_model(out)
    fn, integer = import_snntorch(net, (2, 2, 2), timesteps=4)
    direct = to_model(fn, integer)
    np.testing.assert_array_equal(model.layers[0].weights, direct.layers[0].weights)
    assert model.layers[0].threshold.tolist() == [4, 4, 4]
    assert "integer mode" in r.stdout and model.meta["import"]["mode"] == "integer"
    # bad inputs: one line naming the file or layer, exit 2, no traceback, nothing written
    (tmp_path / "junk.pt").write_bytes(b"not a pickle")
    (tmp_path / "bad.py").write_text(_ARCH.replace("nn.Linear(8, 3),",
                                                   "nn.Linear(8, 3), nn.BatchNorm1d(3),"))
    cases = ((["junk.pt"], "junk.pt"), (["missing.pt"], "missing.pt"),
             (["bad.py"], "batchnorm1d2"), (["net.pt"], "--builder"),
             (["net.pt", "--builder", str(tmp_path / "bad.py")], "does not fit"))
    for args, needle in cases:          # in-process: the same main and error guard
        dest = tmp_path / "models" / "x"
        rc = main_guard(cli_main, ["snntorch", str(tmp_path / args[0]), *args[1:], "--out",
                                   str(dest)] + base, prog="quant.importers",
                        errors=(NetImportError,))
        err = capsys.readouterr().err
        assert rc == 2, err
        assert len(err.strip().splitlines()) == 1 and needle in err, err
        assert not dest.exists()
