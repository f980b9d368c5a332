"""The registry of synapse kinds: registration rules, parts, and a kind added through the
registry alone running through the format, both backends and the cycle-model hook."""

import numpy as np
import pytest

from sim import reference
from sim.events import BinnedEvents
from sim.model import (InputSpec, Layer, Model, ModelError, Synapse, load_model, save_model,
                       validate_model)
from sim.registry import KINDS, Kind, Registry, SynapseError

BACKENDS = reference.available_backends()


def test_builtin_kinds():
    assert KINDS.names() == ("conv2d", "linear", "sumpool2d", "identity")
    assert all(KINDS[name].name == name for name in KINDS)


def test_duplicate_name_raises():
    reg = Registry("thing")

    class A(Kind):
        name = "a"
    reg.register(A())
    with pytest.raises(ValueError, match="thing 'a' is already registered"):
        reg.register(A())
    with pytest.raises(ValueError, match="synapse kind 'conv2d' is already registered"):
        KINDS.register(KINDS["conv2d"].__class__())
    assert len(KINDS) == 4


def test_unknown_name():
    with pytest.raises(KeyError, match="unknown synapse kind 'conv3d', expected one of "
                                       "conv2d, linear, sumpool2d, identity"):
        KINDS["conv3d"]
    assert "conv3d" not in KINDS and [] not in KINDS


def test_parts():
    kind = Kind()
    kind.name = "demo"
    engine = object()
    assert kind.attach("hw.engine", engine) is engine
    assert kind.part("hw.engine") is engine and kind.has_part("hw.engine")
    with pytest.raises(ValueError, match="'demo' already has a 'hw.engine' part"):
        kind.attach("hw.engine", object())
    with pytest.raises(KeyError, match="'demo' has no 'torch.op' part"):
        kind.part("torch.op")


class WeightedPool(Kind):
    """A kind defined only here: a sum pool with one weight per channel."""
    name = "wpool_test"
    geometry = True
    spatial = True

    def check(self, syn, in_shape):
        super().check(syn, in_shape)
        if syn.stride != syn.kernel or syn.padding:
            raise SynapseError("stride", "wpool_test needs stride == kernel, padding 0")

    def out_shape(self, syn, in_shape, channels):
        c, h, w = in_shape
        return (c, h // syn.kernel, w // syn.kernel)

    def weight_shape(self, syn, in_shape, out_shape):
        return (out_shape[0],)

    def fan_in_abs(self, syn, out_shape):
        w = np.abs(syn.weights.astype(np.int64)).reshape(syn.taps, -1).sum(axis=0)
        return [int(x) * syn.kernel ** 2 for x in w]

    def accumulate(self, syn, w, in_shape, out_shape, acc, src, count):
        C, H, W = in_shape
        _, Ho, Wo = out_shape
        c, y, x = src // (H * W), (src // W) % H, src % W
        oy, ox = y // syn.kernel, x // syn.kernel
        ok = (oy < Ho) & (ox < Wo)
        np.add.at(acc, (c[ok] * Ho + oy[ok]) * Wo + ox[ok], w[c[ok]] * count[ok])
        return int(count[ok].sum())

    def pack(self, syn, w, in3, out3):
        from sim.kernels import CHANNEL
        return CHANNEL, syn.kernel, syn.kernel, 0, w

    def event_positions(self, syn, in3, out3):
        return np.ones(in3, dtype=np.int64)


@pytest.fixture
def wpool():
    kind = KINDS.register(WeightedPool())
    try:
        yield kind
    finally:
        KINDS.unregister(kind.name)


def test_a_kind_through_the_registry_alone(wpool, tmp_path):
    rng = np.random.default_rng(4)
    w = np.array([3, -2])
    layer = Layer(name="p", out_shape=(2, 2, 3),
                  synapses=[Synapse("input", "wpool_test", kernel=2, stride=2, padding=0,
                                    weights=w, weight_bits=3, taps=1)],
                  bias=None, state_bits=10, acc_bits=62, beta_num=1, beta_frac_bits=0,
                  threshold=np.array([100, 100]), reset="none")
    model = Model(InputSpec((2, 5, 6), 1000, 3, 2), [layer], "membrane")
    layer.acc_bits = model.required_acc_bits(0)
    # B = 2 (count_clip) * 4 (window) * 3 + 2**9 = 536: 10 bits + sign
    assert layer.acc_bits == 11
    validate_model(model)
    frames = rng.integers(0, 3, size=(3, 2, 5, 6))
    # the dense computation: window sums of each step's counts times the channel weight
    win = frames[:, :, :4, :6].reshape(3, 2, 2, 2, 3, 2).sum(axis=(3, 5))
    want = np.cumsum(win * w[None, :, None, None], axis=0)
    binned = BinnedEvents.from_frames(frames)
    for backend in BACKENDS:
        r = reference.run(model, binned, backend=backend)
        np.testing.assert_array_equal(r.states["p"], want)
        np.testing.assert_array_equal(r.scores, want[-1].ravel())
    # the format knows it by name too
    loaded = load_model(save_model(model, tmp_path / "m"))
    assert loaded.layers[0].type == "wpool_test"
    np.testing.assert_array_equal(reference.run(loaded, binned, backend="numpy").states["p"],
                                  want)
    # its own rules are applied
    layer.synapses[0].stride = 1
    with pytest.raises(ModelError, match=r"layers\[0\] \(p\)\.stride: wpool_test needs"):
        validate_model(model)


def test_unregistered_kind_is_unknown(tmp_path):
    layer = Layer(name="p", type="wpool_test", in_shape=(1, 2, 2), out_shape=(1, 1, 1),
                  kernel=2, stride=2, padding=0, weights=np.array([1]), weight_bits=2,
                  bias=None, state_bits=8, acc_bits=20, beta_num=1, beta_frac_bits=0,
                  threshold=np.array([1]), reset="none")
    with pytest.raises(ModelError, match=r"\.type: unknown synapse kind 'wpool_test'"):
        validate_model(Model(InputSpec((1, 2, 2), 1000, 1, 1), [layer]))


@pytest.mark.parametrize("name", ["conv2d", "linear", "sumpool2d", "identity"])
def test_numpy_accumulation_matches_dense(name):
    """Each built-in kind's ``accumulate`` against the dense definition of the contract
    (every output neuron, every input position, counts > 1)."""
    from sim.randmodel import random_graph
    hits = 0
    for seed in range(30):
        rng = np.random.default_rng(seed)
        model = random_graph(rng, n_layers=3)
        for i, layer in enumerate(model.layers):
            for syn in layer.synapses:
                if syn.type != name:
                    continue
                kind = syn.kind
                in_shape, out_shape = tuple(syn.in_shape), tuple(layer.out_shape)
                n_in = int(np.prod(in_shape))
                w = None if syn.weights is None else syn.tap_weights(0).astype(np.int64)
                counts = rng.integers(0, 4, size=n_in) * (rng.random(n_in) < 0.5)
                src = np.flatnonzero(counts)
                acc = np.zeros(layer.n_out, dtype=np.int64)
                kind.accumulate(syn, w, in_shape, out_shape, acc, src, counts[src])
                np.testing.assert_array_equal(acc, _dense(syn, w, in_shape, out_shape, counts))
                hits += 1
    assert hits >= 3


def _dense(syn, w, in_shape, out_shape, counts):
    """The contract's sums written as loops over outputs and kernel offsets."""
    out = np.zeros(out_shape, dtype=np.int64)
    x = counts.reshape(in_shape)
    if syn.type == "linear":
        return w @ counts
    if syn.type == "identity":
        return (x * w.reshape((-1,) + (1,) * (len(in_shape) - 1))).ravel()
    K = syn.kernel
    S, P = (syn.stride, syn.padding) if syn.type == "conv2d" else (K, 0)
    C, H, W = in_shape
    for co in range(out_shape[0]):
        for oy in range(out_shape[1]):
            for ox in range(out_shape[2]):
                total = 0
                for ky in range(K):
                    for kx in range(K):
                        y, xx = oy * S - P + ky, ox * S - P + kx
                        if not (0 <= y < H and 0 <= xx < W):
                            continue
                        if syn.type == "conv2d":
                            total += int(w[co, :, ky, kx] @ x[:, y, xx])
                        else:
                            total += int(x[co, y, xx])
                out[co, oy, ox] = total
    return out.ravel()
