"""The energy model on small cases computed by hand from the paper's equations."""

import numpy as np
import pytest

from boards.energy import EnergyConstants, compare, fnn_energy, main, snn_energy
from sim.events import bin_events, make_events, save_events
from sim.model import save_model
from sim.randmodel import model_from_spec
from sim.reference import Result, run

# the 45 nm figures, written out again (pJ)
ADD, MUL = 0.1, 3.1


def mem(bits):
    return 13.2 + 1.09e-5 * bits


def fake_result(input_spikes, synops, spike_count):
    return Result(scores=np.zeros(1, np.int64), prediction=0, overflow={}, synops=synops,
                  spike_count=spike_count, input_spikes=input_spikes)


def test_constants():
    c = EnergyConstants()
    assert (c.e_add, c.e_mul, c.e_mac) == (0.1, 3.1, pytest.approx(3.2))
    # the fit passes near Horowitz's 45 nm SRAM points (64-bit access)
    assert c.e_mem(8 * 8192) == pytest.approx(10, abs=4)
    assert c.e_mem(8 * 1048576) == pytest.approx(100, rel=0.06)


def test_linear_layer_by_hand():
    # linear 2 -> 3, T = 2, leak 1/2, 8-bit weights, 16-bit state, no bias
    model = model_from_spec([("linear", 3)], np.random.default_rng(0), input_shape=(1, 1, 2),
                            timesteps=2, beta=(1, 1))
    name = model.layers[0].name
    res = fake_result(3, {name: 9}, {name: 2})
    e = snn_energy(model, res).layers[0]
    # ops: 9 synaptic adds + T*N = 6 updates + 2 resets; T*N = 6 leak multiplies
    assert e.ops == pytest.approx(17 * ADD + 6 * (MUL + ADD))
    # addressing, Eq. 17: theta_in * N_out = 3 * 3
    assert e.addr == pytest.approx(9 * ADD)
    # 9 weight reads in a memory of 6 x 8 bits; 15 potential writes in 3 x 16 bits
    assert e.mem_weights == pytest.approx(9 * mem(48))
    assert e.mem_pot == pytest.approx(15 * mem(48))
    assert e.mem_bias == 0
    # 3 input and 2 output events through a FIFO of 64 x 32 bits
    assert e.mem_io == pytest.approx(5 * mem(2048))

    f = fnn_energy(model).layers[0]
    assert f.ops == pytest.approx(6 * (MUL + ADD) + 3 * ADD)
    assert f.addr == pytest.approx(6 * ADD)
    assert f.mem_weights == pytest.approx(6 * mem(48))
    assert f.mem_io == pytest.approx(2 * mem(32) + 3 * mem(48))
    assert f.mem_pot == 0 and f.mem_bias == 0


def test_conv_layer_by_hand_without_leak():
    # conv 1 -> 2 channels, K=3, S=1, P=1 on 4x4: 32 outputs, IF neurons (no leak)
    model = model_from_spec([("conv2d", 2, 3, 1, 1)], np.random.default_rng(1),
                            input_shape=(1, 4, 4), timesteps=1, beta=(1, 0))
    layer = model.layers[0]
    assert not layer.has_leak and layer.n_out == 32
    res = fake_result(1, {layer.name: 18}, {layer.name: 4})
    e = snn_energy(model, res, fifo_words=16, mem_width=8).layers[0]
    assert e.ops == pytest.approx((18 + 32 + 4) * ADD)                 # no multiplies
    assert e.addr == pytest.approx(2 * (MUL + ADD) + 9 * ADD)           # Eq. 16
    assert e.mem_weights == pytest.approx(18 * mem(18 * 8))
    assert e.mem_pot == pytest.approx((18 + 32) * mem(32 * 8))
    assert e.mem_io == pytest.approx((1 + 4) * mem(16 * 8))

    f = fnn_energy(model, mem_width=8).layers[0]
    assert f.counts["mac"] == 32 * 9
    assert f.ops == pytest.approx(288 * (MUL + ADD) + 32 * ADD)
    assert f.addr == pytest.approx((16 + 32 + 2 * 9) * ADD)
    assert f.mem_weights == pytest.approx(288 * mem(18 * 8))
    assert f.mem_io == pytest.approx(288 * mem(16 * 8) + 32 * mem(32 * 8))


def test_counts_come_from_the_run_and_chain_layers():
    rng = np.random.default_rng(4)
    model = model_from_spec([("conv2d", 3, 3, 2, 1), ("sumpool2d", 2), ("linear", 4)], rng,
                            input_shape=(2, 8, 8), timesteps=4, count_clip=2,
                            thresholds=[6, 2, 3])
    ev = make_events(model.input.shape, 300, 4000, rng)
    res = run(model, bin_events(ev, (2, 8, 8), 4, 1000, 2), record=False)
    rep = snn_energy(model, res)
    names = [layer.name for layer in model.layers]
    assert rep.layers[0].counts["theta_in"] == res.input_spikes
    for i in (1, 2):
        assert rep.layers[i].counts["theta_in"] == res.spike_count[names[i - 1]]
    for layer, e in zip(model.layers, rep.layers):
        assert e.counts["synops"] == res.synops[layer.name]
        assert e.counts["theta_out"] == res.spike_count[layer.name]
    assert rep.layers[1].mem_weights == 0                     # pooling has no weights
    # the mean over two identical runs is the single run
    assert snn_energy(model, [res, res]).total == pytest.approx(rep.total)
    cmp = compare(model, res)
    assert cmp["fnn_over_snn"] == pytest.approx(cmp["fnn_pj"] / cmp["snn_pj"])


def test_cli(tmp_path, capsys):
    rng = np.random.default_rng(2)
    model = model_from_spec([("linear", 3)], rng, input_shape=(1, 3, 3), timesteps=3)
    save_model(model, tmp_path / "m")
    save_events(tmp_path / "e.npz", make_events((1, 3, 3), 20, 3000, rng))
    assert main(["--model", str(tmp_path / "m"), "--events", str(tmp_path / "e.npz")]) == 0
    assert "formal / spiking" in capsys.readouterr().out
    assert main(["--model", str(tmp_path / "m"), "--events", str(tmp_path / "x.npz")]) == 2
    assert "x.npz" in capsys.readouterr().err


def test_swept_work_replaces_the_dense_neuron_updates():
    """With the sweep counts of the hardware (sim.liveness.sweep_counts), the per-neuron
    terms are the neuron updates done, a sparse layer pays for its list, and the dense
    counts (``swept`` from a dense sweep) give the model without ``swept``."""
    from boards.energy import mean_sweep_counts
    rng = np.random.default_rng(4)
    model = model_from_spec([("conv2d", 3, 3, 2, 1), ("linear", 4)], rng,
                            input_shape=(2, 8, 8), timesteps=4, thresholds=[6, 3])
    for layer in model.layers:
        layer.bias = None
    ev = make_events(model.input.shape, 60, 4000, rng)
    binned = bin_events(ev, (2, 8, 8), 4, 1000, 1)
    res = run(model, binned, record=True)
    dense = mean_sweep_counts(model, [binned], [res], sweep="dense")
    sparse = mean_sweep_counts(model, [binned], [res], sweep="sparse")
    assert snn_energy(model, res, swept=dense).total == pytest.approx(
        snn_energy(model, res).total)
    rep = snn_energy(model, res, swept=sparse)
    T = model.input.timesteps
    for layer, e, s in zip(model.layers, rep.layers, sparse):
        assert s["sparse"]
        assert e.counts["neuron_updates"] == s["neurons"] <= T * layer.n_out
        assert e.counts["dense_over_swept"] == pytest.approx(T * layer.n_out / s["neurons"])
        assert e.counts["list_accesses"] == 2 * s["words"]
    assert sparse[0]["neurons"] < T * model.layers[0].n_out     # the conv skips some
    assert rep.layers[0].counts["acc"] < snn_energy(model, res).layers[0].counts["acc"]


def test_graph_layers_count_every_synapse():
    """Version-2 graphs: a layer's input events are those of every synapse's source, once
    per tap (a delayed synapse's line replays each tap), the address work is each
    synapse's kind's, and the dense (FNN) pass goes through every synapse and tap."""
    from sim.randmodel import random_binned, random_graph
    from sim.reference import run
    from boards.energy import fnn_energy, snn_energy
    seen = 0
    for seed in range(10):
        rng = np.random.default_rng(900 + seed)
        model = random_graph(rng)
        binned = random_binned(rng, model.input.shape, model.input.timesteps,
                               model.input.count_clip, density=0.3)
        r = run(model, binned)
        rep = snn_energy(model, r)
        fnn = fnn_energy(model)
        for i, (layer, e) in enumerate(zip(model.layers, rep.layers)):
            want = sum((r.input_spikes if model.source_of(i, s) == "input"
                        else r.spike_count[model.source_of(i, s)]) * s.taps
                       for s in layer.synapses)
            assert e.counts["theta_in"] == want
            assert e.counts["synops"] == r.synops[layer.name]
            assert e.total > 0 and fnn.layers[i].total > 0
            seen += len(layer.synapses) > 1 or layer.synapses[0].taps > 1
    assert seen
