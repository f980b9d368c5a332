"""bench.neurobench_metrics on tiny networks, against counts made here in plain loops.

Independent counts: dense synaptic operations are the in-bounds fan-in of every output
neuron summed by a loop over outputs and kernel taps; effective ACs are the
(input spike, weight) pairs found by a loop over the recorded spikes. NeuroBench
(the package) and the project's counters must agree with them, and with each other
where they measure the same thing (dense operations of the conv/linear layers,
(spike, connection) pairs, footprint and connection sparsity of the same integer
weights); where they differ by definition (the pooling layer, zero weights, 4-byte float
parameters, weights narrower than a byte) the test checks the difference is exactly that.
"""

import json
from pathlib import Path

import numpy as np
import pytest

import torch

from bench import neurobench_metrics as nbm
from quant.train import build_net
from sim.events import BinnedEvents
from sim.randmodel import model_from_spec
from sim.reference import run as reference_run

ROOT = Path(__file__).resolve().parents[2]
SPEC = [("conv2d", 4, 3, 2, 1), ("sumpool2d", 2), ("linear", 5)]   # 1x8x8 -> 4x4x4 -> 4x2x2 -> 5
SHAPE = (1, 8, 8)
T = 4


# -- plain-loop counts -------------------------------------------------------------------

def _conv_pairs(spikes_in, weights, stride, padding, out_hw, nonzero_only):
    """(input spike, output neuron) pairs of a conv layer, one input frame at a time;
    with ``nonzero_only`` only pairs whose weight is not zero."""
    n = 0
    Co, Ci, K, _ = weights.shape
    Ho, Wo = out_hw
    for c, y, x in zip(*np.nonzero(spikes_in)):
        for co in range(Co):
            for oy in range(Ho):
                for ox in range(Wo):
                    ky, kx = y + padding - oy * stride, x + padding - ox * stride
                    if 0 <= ky < K and 0 <= kx < K:
                        if not nonzero_only or weights[co, c, ky, kx] != 0:
                            n += 1
    return n


def _linear_pairs(spikes_in, weights, nonzero_only):
    n = 0
    for i in np.flatnonzero(spikes_in):
        n += int((weights[:, i] != 0).sum()) if nonzero_only else weights.shape[0]
    return n


def _dense_conv(C, H, W, Co, K, S, P):
    """Sum over output neurons of their in-bounds fan-in."""
    Ho, Wo = (H + 2 * P - K) // S + 1, (W + 2 * P - K) // S + 1
    n = 0
    for oy in range(Ho):
        for ox in range(Wo):
            for ky in range(K):
                for kx in range(K):
                    y, x = oy * S - P + ky, ox * S - P + kx
                    if 0 <= y < H and 0 <= x < W:
                        n += C
    return n * Co


# -- the float side: NeuroBench on quant's float network ---------------------------------

class _Frames:
    """Binary frames ``(T, B, P, H, W)`` with labels, batched like quant's BinnedSet."""

    def __init__(self, frames, labels):
        self.x, self.labels = frames, labels

    def __len__(self):
        return len(self.labels)

    def batches(self, batch_size):
        for a in range(0, len(self), batch_size):
            yield self.x[:, a:a + batch_size], self.labels[a:a + batch_size]


@pytest.fixture(scope="module")
def float_case():
    torch.manual_seed(0)
    net = build_net(SPEC, SHAPE, 5, timesteps=T, init_gain=6.0, seed=3)
    with torch.no_grad():                     # exact zeros: connection sparsity > 0
        net.layers[0].weight[0, 0, 1, :] = 0.0
        net.layers[2].weight[:, :7] = 0.0
    net.eval()
    rng = np.random.default_rng(1)
    n = 6
    frames = (rng.random((T, n) + SHAPE) < 0.4).astype(np.uint8)
    data = _Frames(frames, rng.integers(0, 5, n))
    return net, data


def test_adapter_spikes_equal_quant_and_a_change_is_caught(float_case):
    net, data = float_case
    adapter = nbm.NeuroBenchNet(net)
    compared = nbm.check_spikes(net, adapter, data, batch_size=4)
    neurons = sum(int(np.prod(ly.out_shape)) for ly in net.layers)
    assert compared == len(data) * T * neurons
    with torch.no_grad():
        adapter.neurons[0].threshold.mul_(1.25)
    with pytest.raises(RuntimeError, match="conv1"):
        nbm.check_spikes(net, adapter, data, batch_size=4)


def test_neurobench_float_against_plain_loops(float_case):
    net, data = float_case
    res = nbm.neurobench_float(net, data, batch_size=4)
    assert res["activation_modules"] == 3 and res["connection_modules"] == 2
    # recorded spikes of every layer for the loops
    _, spikes = nbm.NeuroBenchNet(net)(torch.from_numpy(data.x.swapaxes(0, 1)).float(),
                                        record=True)
    sp = {k: v.numpy() for k, v in spikes.items()}           # (T, B, *shape)
    w1 = net.layers[0].weight.detach().numpy()
    w3 = net.layers[2].weight.detach().numpy()
    n = len(data)
    conv_in = data.x.astype(np.int64)                         # (T, B, 1, 8, 8)
    acs = 0
    for k in range(T):
        for b in range(n):
            acs += _conv_pairs(conv_in[k, b], w1, 2, 1, (4, 4), True)
            acs += _linear_pairs(sp["pool1"][k, b].reshape(-1), w3, True)
    assert acs > 0
    assert res["synaptic_operations"]["effective_acs"] == pytest.approx(acs / n)
    assert res["synaptic_operations"]["effective_macs"] == 0      # binary inputs only
    dense = T * (_dense_conv(1, 8, 8, 4, 3, 2, 1) + 16 * 5)
    assert res["synaptic_operations"]["dense"] == pytest.approx(dense)
    total_spikes = sum(int(v.sum()) for v in sp.values())
    neurons = 64 + 16 + 5
    assert 0 < total_spikes
    assert res["activation_sparsity"] == pytest.approx(1 - total_spikes / (n * T * neurons))
    n_w = w1.size + w3.size
    assert res["parameter_count"] == n_w
    # float32 weights plus one float32 beta and threshold per layer
    assert res["footprint_bytes"] == 4 * n_w + 4 * 2 * 3
    zeros = int((w1 == 0).sum() + (w3 == 0).sum())
    assert zeros == 3 + 5 * 7
    assert res["connection_sparsity"] == pytest.approx(round(zeros / n_w, 4))
    assert res["spikes_checked_against_quant"] == n * T * neurons


# -- the fixed-point side: the project's counters and NeuroBench's functions -------------

@pytest.fixture(scope="module")
def fixed_case():
    rng = np.random.default_rng(7)
    model = model_from_spec(SPEC, rng, input_shape=SHAPE, timesteps=T, weight_bits=6,
                            thresholds=[12, 1, 20])
    model.layers[0].weights[1, 0, 0, :] = 0
    model.layers[2].weights[2, 3:9] = 0
    binned = [BinnedEvents.from_frames((rng.random((T,) + SHAPE) < 0.35).astype(np.int64))
              for _ in range(3)]
    results = [reference_run(model, b, record=True) for b in binned]
    return model, binned, results


def test_fixed_counts_against_plain_loops(fixed_case):
    model, binned, results = fixed_case
    conv, pool, fc = model.layers
    n = len(binned)
    pairs = {"conv1": 0, "sumpool2": 0, "linear3": 0}
    for b, r in zip(binned, results):
        x = np.zeros((T, 64), dtype=np.int64)
        steps = np.repeat(np.arange(T), np.diff(b.step_ptr))
        x[steps, b.src] = b.count
        x = x.reshape((T,) + SHAPE)
        for k in range(T):
            pairs["conv1"] += _conv_pairs(x[k], conv.weights, 2, 1, (4, 4), False)
            pairs["sumpool2"] += int(r.spikes["conv1"][k].sum())   # 4x4 pools 2x2 exactly
            pairs["linear3"] += _linear_pairs(r.spikes["sumpool2"][k].reshape(-1),
                                              fc.weights, False)
    assert min(pairs.values()) > 0
    c = nbm.fixed_counts(model, results)
    for name, v in pairs.items():
        assert c["layers"][name]["effective_acs"] == pytest.approx(v / n)
    assert c["synaptic_operations"]["effective_acs"] == pytest.approx(sum(pairs.values()) / n)
    assert c["synaptic_operations"]["effective_acs_weighted"] == pytest.approx(
        (pairs["conv1"] + pairs["linear3"]) / n)
    dense_conv, dense_pool, dense_fc = _dense_conv(1, 8, 8, 4, 3, 2, 1), 4 * 4 * 4, 16 * 5
    assert c["synaptic_operations"]["dense"] == T * (dense_conv + dense_pool + dense_fc)
    assert c["synaptic_operations"]["dense_weighted"] == T * (dense_conv + dense_fc)
    spikes = sum(int(v.sum()) for r in results for v in r.spikes.values())
    assert c["activation_sparsity"] == pytest.approx(1 - spikes / (n * T * (64 + 16 + 5)))
    n_w = conv.weights.size + fc.weights.size
    zeros = int((conv.weights == 0).sum() + (fc.weights == 0).sum())
    assert zeros >= 4 + 6
    assert c["connection_sparsity"] == pytest.approx(zeros / n_w)
    # 6-bit weights, one 16-bit threshold per layer
    assert c["weight_bytes"] == n_w * 6 / 8
    assert c["footprint_bytes"] == n_w * 6 / 8 + 3 * 2
    assert c["state_bytes"] == (64 + 16 + 5) * 2


def test_neurobench_functions_agree_with_the_reference(fixed_case):
    model, binned, results = fixed_case
    conv, _, fc = model.layers
    nb = nbm.fixed_neurobench(model, binned, results)
    ours = nbm.fixed_counts(model, results)
    n = len(binned)
    # (spike, connection) pairs: NeuroBench with all-one weights == reference synops
    for ly in (conv, fc):
        assert nb["layers"][ly.name]["pairs"] == pytest.approx(
            ours["layers"][ly.name]["effective_acs"])
    assert nb["synaptic_operations"]["pairs"] == pytest.approx(
        ours["synaptic_operations"]["effective_acs_weighted"])
    # NeuroBench's effective ACs skip the zero weights: count those pairs here
    acs = 0
    for b, r in zip(binned, results):
        x = np.zeros((T, 64), dtype=np.int64)
        steps = np.repeat(np.arange(T), np.diff(b.step_ptr))
        x[steps, b.src] = b.count
        for k in range(T):
            acs += _conv_pairs(x[k].reshape(SHAPE), conv.weights, 2, 1, (4, 4), True)
            acs += _linear_pairs(r.spikes["sumpool2"][k].reshape(-1), fc.weights, True)
    assert acs < sum(ours["layers"][ly.name]["effective_acs"] for ly in (conv, fc)) * n
    assert nb["synaptic_operations"]["effective_acs"] == pytest.approx(acs / n)
    assert nb["synaptic_operations"]["dense"] == ours["synaptic_operations"]["dense_weighted"]
    # same weights, same zeros
    assert nb["connection_sparsity"] == pytest.approx(round(ours["connection_sparsity"], 4))
    # footprint: NeuroBench sees 6-bit weights as int8 (one byte), the ROM packs 6 bits
    n_w = conv.weights.size + fc.weights.size
    assert nb["footprint_bytes"] == n_w * 1 + 3 * 2
    assert nb["footprint_bytes"] - ours["footprint_bytes"] == n_w * (8 - 6) / 8


def test_pair_check_refuses_counts_above_one(fixed_case):
    model, binned, results = fixed_case
    frames = np.zeros((T,) + SHAPE, dtype=np.int64)
    frames[0, 0, 2, 2] = 2
    b = BinnedEvents.from_frames(frames)
    with pytest.raises(RuntimeError, match="count_clip"):
        nbm.fixed_neurobench(model, [b], [reference_run(model, b, record=True)])


def test_shipped_digits_end_to_end(tmp_path, capsys):
    out = tmp_path / "nb.json"
    rc = nbm.main(["--model", str(ROOT / "models" / "digits"), "--samples", "3",
                   "--latency-samples", "1", "--out", str(out)])
    assert rc == 0
    doc = json.loads(out.read_text())
    m = doc["models"]["digits"]
    assert m["samples"] == 3 and m["float"]["spikes_checked_against_quant"] > 0
    # 2,704 weights: 8-bit in the ROM and int8 for NeuroBench, float32 in the checkpoint
    assert m["fixed"]["weight_bytes"] == 2704
    assert m["fixed_neurobench"]["footprint_bytes"] == m["fixed"]["footprint_bytes"]
    assert m["float"]["parameter_count"] == 2704
    assert m["float"]["synaptic_operations"]["dense"] == \
        m["fixed"]["synaptic_operations"]["dense_weighted"]
    assert m["hardware"]["latency_cycles_mean"] > 0 and m["hardware"]["energy_nj"] > 0
    assert "digits" in capsys.readouterr().out


@pytest.mark.parametrize("args, needle", [
    (["--samples", "0"], "--samples"),
    (["--model", "no/such/dir"], "no/such/dir"),
])
def test_bad_input_is_one_line(args, needle, capsys):
    from sim.cli import main_guard
    rc = main_guard(nbm.main, args, prog="python -m bench.neurobench_metrics")
    err = capsys.readouterr().err
    assert rc == 2
    assert len(err.strip().splitlines()) == 1 and needle in err
