"""Network top against the reference: random models of every layer type and readout,
random input gaps, full FIFOs, out-of-range events, readback through the status port,
several samples in a row, and the status counters."""

import numpy as np
import pytest

from sim.randmodel import model_from_spec, random_binned, random_graph, random_model

from .harness import banked_case, check_network, dag_case, graph_case, run_network


def _case(seed, **kw):
    rng = np.random.default_rng(seed)
    model = random_model(rng, **kw)
    binned = random_binned(rng, model.input.shape, model.input.timesteps, model.input.count_clip)
    return model, binned


@pytest.mark.parametrize("seed", range(40))
def test_random_networks(seed):
    model, binned = _case(seed)
    rec, _ = run_network(model, binned, seed=seed, gap=0.3, lanes=[1 + (seed + i) % 3 for i in
                                                                   range(len(model.layers))],
                         fifo_depth=2 + seed % 4)
    check_network(model, binned, rec)
    T = model.input.timesteps
    assert rec["status"]["steps"] == T
    assert rec["status"]["samples"] == 1
    assert rec["status"]["idle"] == 1
    # a layer finishes step k after the layer before it, and its steps in order
    for li in range(len(model.layers)):
        assert rec["cycles"][li] == sorted(rec["cycles"][li])
        if li:
            assert all(a > b for a, b in zip(rec["cycles"][li], rec["cycles"][li - 1]))
    sticky = [bool(rec["ovf"][li] and any(rec["ovf"][li])) for li in range(len(model.layers))]
    assert [bool(s) for s in rec["status"]["ovf_sticky"]] == sticky
    # the step log holds the cycle of every step_done strobe
    assert rec["log"] == [c[-T:] for c in rec["cycles"]]


@pytest.mark.parametrize("seed", [20, 21, 22])
def test_readback_and_bad_events(seed):
    model, binned = _case(seed)
    rec, _ = run_network(model, binned, seed=seed, readback=True, bad_events=2)
    check_network(model, binned, rec)
    assert rec["status"]["dropped"] == 2 * model.input.timesteps
    assert rec["status"]["range_error"] == 1


@pytest.mark.parametrize("seed", [30, 31])
def test_full_fifos(seed):
    """Bursts into 2-deep FIFOs: every FIFO fills; nothing is lost and nothing deadlocks."""
    model, binned = _case(seed, kinds=("conv2d", "conv2d", "linear"), input_shape=(2, 8, 8))
    rec, _ = run_network(model, binned, seed=seed, gap=0.0, fifo_depth=2, burst=True)
    check_network(model, binned, rec)
    assert all(rec["fifo_full"]), rec["fifo_full"]


def test_two_samples_restart_from_zero():
    model, binned = _case(40, kinds=("conv2d", "linear"), readout="spike_count")
    rec, _ = run_network(model, binned, seed=40, samples=2)
    check_network(model, binned, rec, samples=2)
    assert rec["status"]["samples"] == 2


@pytest.mark.parametrize("readout", ["spike_count", "membrane"])
def test_conv_pool_linear_stack(readout):
    rng = np.random.default_rng(50)
    model = model_from_spec([("conv2d", 3, 3, 2, 1), ("sumpool2d", 2), ("linear", 4)], rng,
                            input_shape=(2, 8, 8), timesteps=3, readout=readout,
                            thresholds=[20, 2, 30])
    binned = random_binned(rng, (2, 8, 8), 3, density=0.3)
    rec, _ = run_network(model, binned, seed=50)
    r = check_network(model, binned, rec)
    assert r.spike_count[model.layers[0].name] > 0


def test_membrane_tie_goes_to_the_lowest_index():
    """Classes 1 and 2 have identical weights larger than the others: equal membrane
    potentials, the prediction is 1."""
    rng = np.random.default_rng(61)
    model = model_from_spec([("linear", 4)], rng, input_shape=(1, 2, 3), timesteps=2,
                            readout="membrane")
    w = model.layers[0].weights
    w[:] = np.abs(w) // 2
    w[1] = w[2] = np.abs(w).max() + 1
    binned = random_binned(rng, (1, 2, 3), 2, density=0.6)
    rec, _ = run_network(model, binned, seed=61)
    r = check_network(model, binned, rec)
    assert r.scores[1] == r.scores[2] > 0 and rec["prediction"] == [1]


def test_ties_go_to_the_lowest_index():
    """All classes silent: every score is 0 and the prediction is class 0."""
    rng = np.random.default_rng(60)
    model = model_from_spec([("linear", 5)], rng, input_shape=(1, 2, 3), timesteps=2,
                            thresholds=[30000])
    binned = random_binned(rng, (1, 2, 3), 2, density=0.5)
    rec, _ = run_network(model, binned, seed=60)
    check_network(model, binned, rec)
    assert rec["prediction"] == [0] and rec["scores"][0] == [0] * 5


@pytest.mark.slow
def test_event_camera_topology_small_input():
    """The event-camera network's layer stack (conv 5x5 s2 p2 twice, conv 3x3 s2 p1 twice,
    linear) on a 2x32x32 input, default lanes, against the reference."""
    rng = np.random.default_rng(70)
    model = model_from_spec([("conv2d", 4, 5, 2, 2), ("conv2d", 8, 5, 2, 2),
                             ("conv2d", 8, 3, 2, 1), ("conv2d", 16, 3, 2, 1), ("linear", 11)],
                            rng, input_shape=(2, 32, 32), timesteps=3)
    binned = random_binned(rng, (2, 32, 32), 3, density=0.05)
    rec, _ = run_network(model, binned, seed=70, gap=0.2, fifo_depth=8)
    r = check_network(model, binned, rec)
    assert all(r.spike_count[l.name] > 0 for l in model.layers[:-1])


#: seeds whose draw is a same-step graph with a join (some layer has several synapses)
#: and a fork (some source read by several synapses)
DAG_SEEDS = [3, 5, 9, 11, 14, 20, 23, 25]


@pytest.mark.parametrize("seed", DAG_SEEDS)
def test_random_dags(seed):
    """Forks and joins against the reference: every spike, state and flag of every
    layer at every step, random input gaps, random stalls on every fork output (every
    synapse's FIFO and the readout: back-pressure into the joins, cores and forks),
    2-4 deep FIFOs, random lanes, 2 samples; a hang fails at the cycle bound."""
    model, binned = dag_case(seed)
    lanes = [1 + (seed + i) % 3 for i in range(len(model.layers))]
    rec, _ = run_network(model, binned, seed=seed, gap=0.3, lanes=lanes,
                         fifo_depth=2 + seed % 3, samples=2, stall=0.1 + 0.1 * (seed % 4),
                         max_cycles=100000)
    check_network(model, binned, rec, samples=2)
    assert rec["status"]["idle"] == 1 and rec["status"]["samples"] == 2
    assert rec["log"] == [c[-model.input.timesteps:] for c in rec["cycles"]]


#: seeds of same-step graphs with version-2 neurons (multi-spike, v_min, current-based)
#: and identity synapses
V2_SEEDS = [3, 5, 8, 13, 18, 22, 44, 52]


@pytest.mark.parametrize("seed", V2_SEEDS)
def test_random_v2_dags(seed):
    """Graphs whose layers are multi-spike (a count s is s events on every synapse that
    reads it), have v_min or are current-based, with identity synapses: every spike,
    state, current and flag of every step against the reference, random gaps and
    (seed % 4 > 0) random stalls on every fork output."""
    model, binned = dag_case(seed, plain=False)
    lanes = [1 + (seed + i) % 3 for i in range(len(model.layers))]
    rec, _ = run_network(model, binned, seed=seed, gap=0.3, lanes=lanes,
                         fifo_depth=2 + seed % 3, readback=seed % 2 == 1,
                         stall=0.1 * (seed % 4))
    check_network(model, binned, rec)
    assert rec["status"]["idle"] == 1


def test_v2_seeds_cover_the_neurons():
    layers = [l for seed in V2_SEEDS for l in dag_case(seed, plain=False)[0].layers]
    syns = [s.type for l in layers for s in l.synapses]
    assert {l.spike_limit for l in layers} >= {1, 2, 3}
    assert any(l.v_min is not None for l in layers)
    assert any(l.current is not None for l in layers)
    assert "identity" in syns and any(len(l.synapses) > 1 for l in layers)


def test_dag_seeds_have_forks_and_joins():
    """The DAG cases are not chains: together they have joins of 2 and 3 synapses,
    forks of the input and of layers, and a layer whose spikes nobody reads."""
    from collections import Counter
    from sim.reference import run
    joins, forks, dead = Counter(), set(), False
    firing_join = firing_fork = False
    for seed in DAG_SEEDS:
        model, binned = dag_case(seed)
        srcs = Counter(model.source_of(i, s) for i, l in enumerate(model.layers)
                       for s in l.synapses)
        joins.update(len(l.synapses) for l in model.layers)
        forks |= {"input" if s == "input" else "layer" for s, n in srcs.items() if n > 1}
        dead |= any(l.name not in srcs for l in model.layers[:-1])
        spikes = run(model, binned).spikes
        firing_join |= any(len(l.synapses) > 1 and spikes[l.name].any() for l in model.layers)
        firing_fork |= any(srcs[l.name] > 1 and spikes[l.name].any() for l in model.layers)
    assert joins[2] and joins[3] and forks == {"input", "layer"}, (joins, forks)
    # spikes do go through a join and out of a forked layer (not only tokens)
    assert firing_join and firing_fork


def test_a_hang_is_reported():
    """A readout that never takes anything (every fork output stalled for good): the
    run fails at the cycle bound with the progress of every layer, never hangs."""
    model, binned = dag_case(DAG_SEEDS[0])
    with pytest.raises(AssertionError, match=r"^network did not finish within 3000 cycles "
                                             r"\(a hang\?\): steps finished per layer "):
        run_network(model, binned, seed=1, stall=1.0, max_cycles=3000)


def test_residual_block():
    """A hand-made residual block: conv -> conv, plus the block input added again
    (a second conv synapse from the first layer), then a linear readout."""
    from sim.model import Layer, Synapse, validate_model
    rng = np.random.default_rng(80)
    base = model_from_spec([("conv2d", 3, 3, 1, 1), ("conv2d", 3, 3, 1, 1), ("linear", 4)],
                           rng, input_shape=(2, 6, 6), timesteps=3, thresholds=[6, 8, 10])
    c1, c2, fc = base.layers
    skip = Synapse(source=c1.name, type="conv2d", kernel=1, stride=1, padding=0,
                   weights=np.abs(rng.integers(-3, 4, size=(3, 3, 1, 1))), weight_bits=3)
    c2.synapses.append(skip)
    c2.acc_bits = 62
    model = validate_model(base)
    for i, layer in enumerate(model.layers):
        layer.acc_bits = model.required_acc_bits(i)
    model = validate_model(model)
    assert isinstance(model.layers[1], Layer) and len(model.layers[1].synapses) == 2
    binned = random_binned(rng, (2, 6, 6), 3, density=0.3)
    rec, _ = run_network(model, binned, seed=80, gap=0.2, fifo_depth=2)
    r = check_network(model, binned, rec)
    # the same under random stalls of every fork output and the readout
    stalled, _ = run_network(model, binned, seed=81, gap=0.2, fifo_depth=2, stall=0.4)
    check_network(model, binned, stalled)
    assert stalled["cycles"][-1][-1] > rec["cycles"][-1][-1]
    assert all(r.spike_count[l.name] > 0 for l in model.layers[:2])


#: random graphs (seeds of :func:`graph_case`)
GRAPH_SEEDS = range(12)


@pytest.mark.parametrize("seed", [pytest.param(s, marks=pytest.mark.slow) if s == 7 else s
                                  for s in GRAPH_SEEDS])
def test_random_graphs(seed):
    """Delay lines, recurrence and token feeds in the network: every spike, state,
    current and flag of every step of every layer against the reference, random gaps,
    random stalls on every fork output (synapse FIFOs, delay lines, the readout; none
    on even seeds), 2-4 deep FIFOs, random lanes, two samples (the delay lines forget
    the first); a hang (a fork, join or delay line waiting on another for ever) fails at
    the cycle bound."""
    model, binned = graph_case(seed)
    lanes = [1 + (seed + i) % 3 for i in range(len(model.layers))]
    rec, _ = run_network(model, binned, seed=seed, gap=0.3, lanes=lanes,
                         fifo_depth=2 + seed % 3, samples=1 + seed % 2,
                         stall=0.15 * (seed % 2) + 0.1 * (seed % 3), max_cycles=200000)
    check_network(model, binned, rec, samples=1 + seed % 2)
    assert rec["status"]["idle"] == 1


def test_graph_seeds_cover_delays_and_recurrence():
    from hw.layer import is_replayed
    delays, taps, recurrent, fed = set(), set(), False, False
    for seed in GRAPH_SEEDS:
        model, _ = graph_case(seed)
        for i, layer in enumerate(model.layers):
            for syn in layer.synapses:
                delays.add(syn.delay)
                taps.add(syn.taps)
                src = model.source_of(i, syn)
                recurrent |= src != "input" and model.index(src) >= i
            fed |= all(is_replayed(syn) for syn in layer.synapses)
    assert delays >= {0, 1, 2} and taps >= {1, 2, 3} and recurrent and fed


def test_unbuilt_kinds_are_refused_in_one_line(tmp_path):
    """A synapse kind without a hardware engine: the generator names the model file,
    the layer and the synapse."""
    from hw.network import Network
    from sim.model import ModelError, save_model
    from sim.registry import KINDS, Kind
    model, _ = graph_case(0)
    path = save_model(model, tmp_path / "g")

    class NoEngine(Kind):
        name = "noengine_test"

    KINDS.register(NoEngine())
    try:
        model.layers[-1].synapses[0].type = "noengine_test"
        with pytest.raises(ModelError) as info:
            Network(model)
    finally:
        KINDS.unregister("noengine_test")
    msg = str(info.value)
    assert "\n" not in msg and msg.startswith(f"{path}/model.json: layer ")
    assert " synapse 0 (from " in msg and msg.endswith(
        "is noengine_test: no hardware engine for that kind yet")
    Network(path)                       # the saved graph itself is built


@pytest.mark.parametrize("seed", range(6))
def test_banked_layers(seed):
    """Layers split over 2-4 banks (hw.layer "Banks"): every spike, state and flag of
    every step as the reference's, under random stalls on every fork output, with random
    lanes and FIFO depths; seeds 0 and 3 read the banked states back through rb_*."""
    rng = np.random.default_rng(500 + seed)
    model, binned, banks = banked_case(rng, (2, 16, 13), 0.08)
    lanes = [int(rng.integers(1, 4)) for _ in model.layers]
    rec, dut = run_network(model, binned, seed=seed, gap=0.2, lanes=lanes, banks=banks,
                           fifo_depth=2 + seed % 3, stall=0.25, readback=seed % 3 == 0)
    assert [l.banks for l in dut.layers] == [banks[0], banks[1], 2, 1]
    r = check_network(model, binned, rec)
    assert r.spike_count[model.layers[0].name] > 0
