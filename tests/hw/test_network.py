"""Network top against the reference: random models of every layer type and readout,
random input gaps, full FIFOs, out-of-range events, readback through the status port,
several samples in a row, and the status counters."""

import numpy as np
import pytest

from sim.randmodel import (model_from_spec, random_binned, random_graph, random_model,
                           same_step_graph)

from .harness import check_network, run_network


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


def _engine_kinds():
    """The synapse kinds that have a hardware engine (attached on import of hw)."""
    import hw.network  # noqa: F401
    from sim.registry import KINDS
    return {k for k in KINDS.names() if KINDS[k].has_part("hw.engine")}


def dag_case(seed, n_layers=None):
    """A random same-step graph (forks, residual joins) of the kinds with an engine
    and version-1 neurons, and a sample; ``None`` when the draw has no such graph."""
    rng = np.random.default_rng(seed)
    model = same_step_graph(random_graph(rng, n_layers=n_layers or int(rng.integers(2, 5))),
                            kinds=_engine_kinds())
    if model is None:
        return None
    return model, random_binned(rng, model.input.shape, model.input.timesteps,
                                model.input.count_clip)


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


def test_dag_seeds_have_forks_and_joins():
    """The DAG cases are not chains: together they have joins of 2 and 3 synapses,
    forks of the input and of layers, and a layer whose spikes nobody reads."""
    from collections import Counter
    joins, forks, dead = Counter(), set(), False
    for seed in DAG_SEEDS:
        model, _ = dag_case(seed)
        srcs = Counter(model.source_of(i, s) for i, l in enumerate(model.layers)
                       for s in l.synapses)
        joins.update(len(l.synapses) for l in model.layers)
        forks |= {"input" if s == "input" else "layer" for s, n in srcs.items() if n > 1}
        dead |= any(l.name not in srcs for l in model.layers[:-1])
    assert joins[2] and joins[3] and forks == {"input", "layer"}, (joins, forks)


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


def test_unbuilt_graphs_are_refused_in_one_line(tmp_path):
    """Delays and recurrence wait for the delay lines: the generator names the model
    file, the layer and the synapse."""
    from hw.network import Network
    from sim.model import ModelError, save_model
    rng = np.random.default_rng(3)
    model = next(m for m in (random_graph(rng, n_layers=3) for _ in range(50))
                 if any(s.delay for l in m.layers for s in l.synapses))
    path = save_model(model, tmp_path / "g")
    with pytest.raises(ModelError) as info:
        Network(path)
    msg = str(info.value)
    assert "\n" not in msg and msg.startswith(f"{path}/model.json: layer ")
    assert " synapse " in msg and "delay lines" in msg and msg.endswith("(issue 13)")


def test_unbuilt_neurons_are_refused_in_one_line():
    from hw.network import Network
    from sim.model import ModelError
    model, _ = dag_case(DAG_SEEDS[0])
    model.layers[1].spike_limit = 2
    with pytest.raises(ModelError, match=r"^model: layer 'g1' is multi-spike "
                                         r"\(spike_limit 2\): not built yet \(issue 13\)$"):
        Network(model)
