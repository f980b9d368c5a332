"""snnTorch RLeaky, Synaptic and RSynaptic (version 2): integer nets spike exactly like
snnTorch's forward pass in every layer and step; float nets predict the same class on
>= 99 % of random inputs; what the contract cannot express is refused."""

import numpy as np
import pytest

torch = pytest.importorskip("torch")
snn = pytest.importorskip("snntorch")
from torch import nn  # noqa: E402

from quant.importers import NetImportError  # noqa: E402
from quant.importers.snntorch import import_snntorch, import_snntorch_model  # noqa: E402
from sim.events import BinnedEvents  # noqa: E402
from sim.reference import run  # noqa: E402

T, N_IN = 8, 6


def _net(rng, integer, reset="none"):
    thr = (lambda v: v + 0.5) if integer else (lambda v: v * 1.1)
    net = nn.Sequential(
        nn.Linear(N_IN, 5),
        snn.RLeaky(beta=1.0, linear_features=5, threshold=thr(2), reset_mechanism=reset,
                   init_hidden=True),
        nn.Linear(5, 4),
        snn.Synaptic(alpha=1.0, beta=0.0, threshold=thr(1), reset_mechanism=reset,
                     init_hidden=True),
        nn.Linear(4, 3),
        snn.RSynaptic(alpha=0.0, beta=1.0, all_to_all=False, V=torch.tensor([-2.0, 1.0, -1.0]),
                      threshold=thr(1), reset_mechanism=reset, init_hidden=True))
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, nn.Linear):
                shape = tuple(m.weight.shape)
                w = rng.integers(-2, 3, size=shape) if integer else rng.normal(0.2, 0.8, shape)
                m.weight.copy_(torch.as_tensor(w, dtype=torch.float32))
                b = rng.integers(-1, 2, size=m.bias.shape) if integer else \
                    rng.normal(0, 0.2, tuple(m.bias.shape))
                m.bias.copy_(torch.as_tensor(b, dtype=torch.float32))
    return net.eval()


NEURONS = {1: "fc0", 3: "fc2", 5: "fc4"}      # a layer is named after its synapse


def _snn_run(net, frames):
    rec = {k: [] for k in NEURONS}
    hooks = [net[k].register_forward_hook(
        lambda mod, i, o, k=k: rec[k].append((o[0] if isinstance(o, tuple) else o)
                                             .detach().numpy().reshape(-1).copy()))
        for k in NEURONS]
    for m in net:                       # each neuron's own reset (spk, syn, mem = 0)
        if hasattr(m, "reset_mem"):
            m.reset_mem()
    with torch.no_grad():
        for t in range(frames.shape[0]):
            net(torch.as_tensor(frames[t], dtype=torch.float32).reshape(1, -1))
    for h in hooks:
        h.remove()
    return {k: np.array(v) for k, v in rec.items()}


def _frames(rng):
    return (rng.random((T, N_IN)) < 0.5).astype(np.int64)


def test_integer_net_spikes_exactly_like_snntorch():
    rng = np.random.default_rng(0)
    net = _net(rng, True)
    model = import_snntorch_model(net, (N_IN, 1, 1), timesteps=T)
    assert model.meta["import"]["mode"] == "integer"
    l1, l3, l5 = model.layers
    assert [(s.source, s.type, s.delay) for s in l1.synapses] == \
        [("input", "linear", 0), ("fc0", "linear", 1)]
    assert l3.current is not None and l3.current.beta_num == 1 << l3.current.beta_frac_bits
    assert [(s.source, s.type, s.delay) for s in l5.synapses] == \
        [("fc2", "linear", 0), ("fc4", "identity", 1)]
    np.testing.assert_array_equal(l5.synapses[1].weights, [-2, 1, -1])
    for _ in range(10):
        frames = _frames(rng)
        want = _snn_run(net, frames)
        r = run(model, BinnedEvents.from_frames(frames.reshape(T, N_IN, 1, 1)),
                backend="numpy")
        for k, name in NEURONS.items():
            np.testing.assert_array_equal(r.spikes[name].reshape(T, -1), want[k], err_msg=name)


def test_float_net_predicts_like_snntorch():
    rng = np.random.default_rng(1)
    net = _net(rng, False, reset="subtract")
    model = import_snntorch_model(net, (N_IN, 1, 1), timesteps=T, weight_bits=12)
    assert model.meta["import"]["mode"] == "float"
    n, agree = 200, 0
    for _ in range(n):
        frames = _frames(rng)
        want = _snn_run(net, frames)[5].sum(axis=0)
        got = run(model, BinnedEvents.from_frames(frames.reshape(T, N_IN, 1, 1)),
                  backend="numpy").prediction
        agree += int(got == int(np.argmax(want)))
    assert agree >= 0.99 * n, agree


def test_refusals_and_the_chain_api():
    rng = np.random.default_rng(2)
    with pytest.raises(NetImportError, match=r"layer lif1 \(RLeaky\): reset 'zero' of RLeaky"):
        import_snntorch_model(_net(rng, True, reset="zero"), (N_IN, 1, 1), timesteps=T)
    with pytest.raises(NetImportError, match=r"use import_snntorch_model"):
        import_snntorch(_net(rng, True), (N_IN, 1, 1), timesteps=T)
