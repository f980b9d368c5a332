"""The cycle model (:func:`sim.cycles.predict`) against ``amaranth.sim`` of the network
top, cycle for cycle, on random models with random input stalls.

The driver offers every input word after a random gap (valid low for that many cycles
after the previous transfer) and records the gaps, so the cycle model can replay the
same source. The network has no output back-pressure (its readout never stalls except
for its own arg-max, which the cycle model mirrors), so the input gaps, the FIFOs
filling and the cores' sweeps are the stalls there are. Every input transfer, every
layer's end-of-step cycle and every ``done`` strobe must be the cycle the model
predicts; every spike, state and score must be the reference's (the same
:class:`sim.tb.NetworkModel` expectations the cocotb benches use).
"""

import random

import numpy as np
import pytest

from amaranth.hdl import Fragment
from amaranth.sim import Simulator

from sim.cycles import FifoModel, HwParams, predict
from sim.geometry import END_SAMPLE, END_STEP, SPIKE, default_lanes, lanes_of
from sim.randmodel import random_binned, random_model
from sim.tb.model import NetworkModel

from .harness import banked_case, dag_case, graph_case, mem_words, words_to_states

#: seeds of the random cases; each case is a small model, 2-3 steps, 1-2 samples
SEEDS = range(24)
#: no case runs this long (a broken cycle rule fails instead of hanging)
MAX_CYCLES = 60_000


def _case(seed):
    rng = np.random.default_rng(seed)
    shape = (int(rng.integers(1, 3)), int(rng.integers(3, 7)), int(rng.integers(3, 7)))
    model = random_model(rng, input_shape=shape, timesteps=int(rng.integers(2, 4)),
                         n_layers=int(rng.integers(1, 4)))
    binned = random_binned(rng, model.input.shape, model.input.timesteps,
                           model.input.count_clip)
    lanes = [int(rng.integers(1, 4)) if rng.random() < 0.6 else None for _ in model.layers]
    # seeds 1, 5, 9, ...: the dense sweep of every layer (the design before issue 15)
    params = HwParams(lanes=lanes, fifo_depth=int(rng.integers(2, 5)),
                      sweep="dense" if seed % 4 == 1 else "sparse")
    nm = NetworkModel(model, binned, params, samples=1 + seed % 2, order_seed=seed,
                      bad_per_step=seed % 3)
    # a burst (gap 0) or a stall of 1..4 cycles before every word
    grng = random.Random(seed)
    gaps = [0 if grng.random() < 0.6 else grng.randint(1, 4) for _ in nm.words]
    return nm, gaps


def cycles(nm, gaps=None, *, max_cycles=MAX_CYCLES):
    """The cycle model's report on ``nm``'s input words with ``gaps``, from cycle 0."""
    return predict(nm.model, nm.binned, nm.params, words=nm.words, start=0, gaps=gaps,
                   max_cycles=max_cycles, backend=nm.backend)


def simulate(nm, gaps, *, max_cycles=MAX_CYCLES, until_idle=False):
    """Run :class:`hw.network.Network` in ``amaranth.sim`` on ``nm``'s input words with
    ``gaps``, from cycle 0. Returns what the RTL did: the cycle of the first offer and of
    the transfer of every input word,
    per layer the cycle of every end-of-step strobe, the spikes (flat indices) and the
    states read from the state RAM at each strobe, the cycle of every ``done`` strobe and
    the scores and prediction there, and ``idle`` at the end (at the last ``done``, or
    with ``until_idle`` the first cycle after it with ``idle``: a layer whose spikes
    nobody reads may finish after the readout)."""
    from hw.network import Network
    dut = Network(nm.model, lanes=nm.params.lanes, fifo_depth=nm.params.fifo_depth,
                  coord_bits=nm.coord_bits, sweep=nm.params.sweep, banks=nm.params.banks)
    words = nm.packed_words()
    n = len(dut.layers)
    rec = {"offered": [], "accepted": [], "step_done": [[] for _ in range(n)], "done": [],
           "spikes": [[] for _ in range(n)], "states": [[] for _ in range(n)],
           "currents": [[] for _ in range(n)],
           "scores": [], "prediction": [], "idle": None}
    mon = []
    for l in dut.layers:
        mon += [l.out.valid, l.out.ready, l.out.payload.as_value(), l.step_done]

    async def bench(ctx):
        j, offer_at = 0, gaps[0]
        cur = [[] for _ in range(n)]
        for t in range(max_cycles):
            offering = j < len(words) and t >= offer_at
            ctx.set(dut.inp.valid, offering)
            if offering:
                ctx.set(dut.inp.payload.as_value(), words[j])
                if len(rec["offered"]) == j:
                    rec["offered"].append(t)
            # tick().sample() gives the clock's and the reset's values first
            vals = (await ctx.tick().sample(dut.cycle, dut.inp.ready, dut.done, *mon))[2:]
            assert vals[0] == t
            if offering and vals[1]:
                rec["accepted"].append(t)
                j += 1
                if j < len(words):
                    offer_at = t + 1 + gaps[j]
            for i, li in enumerate(nm.layers):
                valid, ready, payload, step_done = vals[3 + 4 * i:7 + 4 * i]
                if not (valid and ready):
                    assert not step_done
                    continue
                ev = li.event.unpack(payload)
                if ev["kind"] == SPIKE:
                    cur[i].append(li.flat(ev["c"], ev["y"], ev["x"]))
                elif ev["kind"] == END_STEP:
                    assert step_done
                    rec["step_done"][i].append(t)
                    rec["spikes"][i].append(cur[i])
                    layer = dut.layers[i]
                    if layer.banks > 1:         # gathered from the banks' cores
                        rec["states"][i].append(layer.gather_states(
                            [words_to_states(mem_words(ctx, c), c) for c in layer.cores]))
                    else:
                        ram = mem_words(ctx, layer.core)
                        rec["states"][i].append(li.states_from_words(ram))
                        if li.current:
                            rec["currents"][i].append(li.currents_from_words(ram))
                    cur[i] = []
            if vals[2]:
                rec["done"].append(t)
                rec["scores"].append([ctx.get(dut.scores[c]) for c in range(dut.n_classes)])
                rec["prediction"].append(ctx.get(dut.prediction))
                if len(rec["done"]) == nm.samples and not until_idle:
                    rec["idle"] = ctx.get(dut.idle)
                    return
            elif until_idle and len(rec["done"]) == nm.samples and ctx.get(dut.idle):
                rec["idle"] = 1
                return
        raise AssertionError(f"no result after {max_cycles} cycles")

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    return rec


def compare(nm, rec, rep):
    """Assert that the RTL record ``rec`` is what ``nm`` (reference) and the cycle report
    ``rep`` say, naming the first difference."""
    assert rec["accepted"] == rep.accepted, "input transfers"
    for i, li in enumerate(nm.layers):
        got, want = rec["step_done"][i], rep.step_done[i]
        assert len(got) == len(want) == nm.T * nm.samples, f"{li.name}: end-of-step count"
        for k, (g, w) in enumerate(zip(got, want)):
            assert g == w, f"{li.name} step {k}: RTL at cycle {g}, cycle model says {w}"
        for k in range(nm.T * nm.samples):
            got = rec["spikes"][i][k]
            if li.layer.spike_limit == 1:
                assert len(got) == len(set(got)), f"{li.name} step {k}: duplicated spike"
            assert sorted(got) == nm.spikes[i][k], f"{li.name} step {k}: spikes"
            np.testing.assert_array_equal(rec["states"][i][k], nm.states[i][k],
                                          err_msg=f"{li.name} step {k}: states")
            if li.current:
                np.testing.assert_array_equal(rec["currents"][i][k], nm.currents[i][k],
                                              err_msg=f"{li.name} step {k}: currents")
    assert rec["done"] == rep.sample_done, "done strobes"
    assert rec["scores"] == nm.scores and rec["prediction"] == nm.prediction
    assert rec["idle"] == 1
    # latency: from the first offer of a sample's first word to its done strobe
    firsts = [0] + [j + 1 for j, w in enumerate(nm.words[:-1]) if w.kind == END_SAMPLE]
    for s, j in enumerate(firsts):
        assert rep.latency_cycles(s) == rec["done"][s] - rec["offered"][j], f"sample {s}"


@pytest.mark.parametrize("seed", SEEDS)
def test_cycle_model_matches_amaranth_sim(seed):
    nm, gaps = _case(seed)
    rec = simulate(nm, gaps)
    compare(nm, rec, cycles(nm, gaps))


def _sparse_case(seed):
    """A bias-free model (every layer sparse but a membrane readout's last), 4-6 steps,
    2 samples, 2 output channels or more: the live lists grow, drain and re-list."""
    rng = np.random.default_rng(1000 + seed)
    shape = (2, int(rng.integers(4, 8)), int(rng.integers(4, 8)))
    membrane = seed % 3 == 0
    model = random_model(rng, input_shape=shape, timesteps=int(rng.integers(4, 7)),
                         n_layers=int(rng.integers(2 if membrane else 1, 4)),
                         readout="membrane" if membrane else "spike_count")
    for layer in model.layers:
        layer.bias = None
    binned = random_binned(rng, model.input.shape, model.input.timesteps,
                           model.input.count_clip, density=0.15)
    lanes = [int(rng.integers(1, 4)) for _ in model.layers]
    params = HwParams(lanes=lanes, fifo_depth=int(rng.integers(2, 5)), sweep="sparse")
    nm = NetworkModel(model, binned, params, samples=2, order_seed=seed,
                      bad_per_step=seed % 2)
    grng = random.Random(seed)
    gaps = [0 if grng.random() < 0.6 else grng.randint(1, 4) for _ in nm.words]
    return nm, gaps


@pytest.mark.parametrize("seed", range(10))
def test_sparse_cycle_model_matches_amaranth_sim(seed):
    """Sparse cores on every layer that allows one: every spike, state, flag and score as
    the reference's, every cycle as the cycle model's."""
    nm, gaps = _sparse_case(seed)
    rep = cycles(nm, gaps)
    assert any(rep.sparse)
    compare(nm, simulate(nm, gaps), rep)


def test_sparse_sweeps_read_fewer_words():
    """On the sparse cases: a sparse core reads each word at most once a step, a dense
    one every word; together the sparse sweeps read fewer words than the dense ones."""
    total = {"sparse": 0, "dense": 0}
    for seed in range(10):
        nm, gaps = _sparse_case(seed)
        rep = cycles(nm, gaps)
        nm.params.sweep = "dense"
        dense = cycles(nm, gaps)
        for i, sparse in enumerate(rep.sparse):
            assert rep.swept[i] <= dense.swept[i] if sparse else rep.swept[i] == dense.swept[i]
        total["sparse"] += sum(rep.swept)
        total["dense"] += sum(dense.swept)
    assert total["sparse"] < total["dense"]


def test_stalls_move_the_cycles():
    """The comparison is not vacuous: the same case without the gaps finishes earlier,
    and the cycle model tells the two apart as the RTL does."""
    nm, gaps = _case(0)
    assert any(gaps)
    stalled, free = cycles(nm, gaps), cycles(nm)
    assert free.sample_done[-1] < stalled.sample_done[-1]
    compare(nm, simulate(nm, [0] * len(gaps)), free)


@pytest.mark.parametrize("lanes", [None, 2, [1, None, 3], {"l1": 5}, {}])
def test_network_reads_lanes_as_the_cycle_model(lanes):
    """One rule (:func:`sim.geometry.lanes_of`): ``None`` or a missing entry is the
    default (all output channels up to 16), anything else a positive integer."""
    from hw.network import Network
    model = random_model(np.random.default_rng(3), kinds=("conv2d", "conv2d", "linear"),
                         input_shape=(2, 6, 6))
    names = [l.name for l in model.layers]
    if isinstance(lanes, dict):
        lanes = {names[1]: v for v in lanes.values()}
    want = lanes_of(model, lanes)
    dut = Network(model, lanes=lanes)
    Fragment.get(dut, None)             # it builds
    assert [l.L for l in dut.layers] == want
    for i, layer in enumerate(model.layers):
        entry = lanes[i] if isinstance(lanes, list) else (
            lanes.get(layer.name) if isinstance(lanes, dict) else lanes)
        assert want[i] == (default_lanes(layer.out_shape) if entry is None else entry)


@pytest.mark.parametrize("lanes, message", [
    (0, "lanes of layer .*: 0 must be a positive integer"),
    ([1, 0, 1], "lanes of layer .*: 0 must be a positive integer"),
    (-2, "must be a positive integer"),
    (1.5, "must be a positive integer"),
    (True, "must be a positive integer"),
    ([1, 2], "2 entries for 3 layers"),
    ({"nope": 2}, "no layer named nope"),
])
def test_bad_lanes_are_refused_alike(lanes, message):
    """Lanes 0 is an error everywhere (it once meant "default" in the cycle model)."""
    from hw.network import Network
    model = random_model(np.random.default_rng(3), kinds=("conv2d", "conv2d", "linear"),
                         input_shape=(2, 6, 6))
    binned = random_binned(np.random.default_rng(4), model.input.shape,
                           model.input.timesteps, model.input.count_clip)
    with pytest.raises(ValueError, match=message):
        Network(model, lanes=lanes)
    with pytest.raises(ValueError, match=message):
        predict(model, binned, HwParams(lanes=lanes), backend="numpy")


@pytest.mark.parametrize("depth", [1, 2, 3, 5])
def test_fifo_model_is_syncfifobuffered(depth):
    """:class:`sim.cycles.FifoModel` against ``amaranth.lib.fifo.SyncFIFOBuffered`` under
    random writes and reads: ``w_rdy``, ``r_rdy``, ``r_data`` and ``level`` every cycle."""
    from amaranth.lib.fifo import SyncFIFOBuffered
    dut = SyncFIFOBuffered(width=8, depth=depth)
    model = FifoModel(depth)
    rng = random.Random(depth)

    async def bench(ctx):
        written = 0
        for t in range(400):
            w_en, r_en = rng.random() < 0.6, rng.random() < 0.5
            ctx.set(dut.w_en, w_en)
            ctx.set(dut.w_data, written % 256)
            ctx.set(dut.r_en, r_en)
            w_rdy, r_rdy, r_data, level = (await ctx.tick().sample(
                dut.w_rdy, dut.r_rdy, dut.r_data, dut.level))[2:]
            assert (w_rdy, r_rdy, level) == (model.w_rdy, model.r_rdy, model.level), f"cycle {t}"
            if r_rdy:
                assert r_data == model.r_data, f"cycle {t}"
            if w_en and w_rdy:
                written += 1
            model.clock(w_en, (written - 1) % 256 if w_en and w_rdy else None, r_en)

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()


def _dag_case(seed, plain=True):
    """A random same-step graph (forks and residual joins; without ``plain`` also
    version-2 neurons), random lanes and FIFO depth, 1-2 samples, shuffled sources with
    out-of-range words, and random gaps."""
    case = dag_case(seed, plain=plain)
    if case is None:
        return None
    model, binned = case
    rng = np.random.default_rng(seed)
    lanes = [int(rng.integers(1, 4)) if rng.random() < 0.6 else None for _ in model.layers]
    params = HwParams(lanes=lanes, fifo_depth=int(rng.integers(2, 5)))
    nm = NetworkModel(model, binned, params, samples=1 + seed % 2, order_seed=seed,
                      bad_per_step=seed % 3)
    grng = random.Random(seed)
    gaps = [0 if grng.random() < 0.6 else grng.randint(1, 4) for _ in nm.words]
    return nm, gaps


#: seeds of random same-step graphs that have a join or a fork (see the test below)
DAG_SEEDS = [3, 5, 8, 9, 11, 12, 14, 20, 23, 25, 33, 36, 39]


@pytest.mark.parametrize("seed", DAG_SEEDS)
def test_cycle_model_matches_amaranth_sim_on_graphs(seed):
    """Forks and joins: every input transfer, every layer's end-of-step cycle (a layer
    whose spikes nobody reads included) and every done strobe where the cycle model
    says, every spike and state as the reference."""
    nm, gaps = _dag_case(seed)
    model = nm.model
    assert any(len(l.synapses) > 1 for l in model.layers) or len(
        {model.source_of(i, s) for i, l in enumerate(model.layers) for s in l.synapses}) < sum(
        len(l.synapses) for l in model.layers), "neither a join nor a fork"
    rec = simulate(nm, gaps, until_idle=True)
    compare(nm, rec, cycles(nm, gaps))


def test_graph_stalls_move_the_cycles():
    """Back-pressure inside a graph: with gaps and 2-deep FIFOs the same graph finishes
    later than with none, and the cycle model follows the RTL in both."""
    nm, gaps = _dag_case(5)
    free = cycles(nm)
    assert free.sample_done[-1] < cycles(nm, gaps).sample_done[-1]
    assert sum(free.blocked) > 0, "no FIFO ever filled"
    compare(nm, simulate(nm, [0] * len(gaps), until_idle=True), free)


#: seeds of same-step graphs with multi-spike, v_min and current-based layers and
#: identity synapses (tests/hw/test_network.py checks that they cover them)
V2_SEEDS = [3, 5, 8, 13, 18, 22, 44, 52]


@pytest.mark.parametrize("seed", V2_SEEDS)
def test_cycle_model_matches_amaranth_sim_on_v2_graphs(seed):
    """Multi-spike layers (a word with ``p`` spikes in total holds the sweep ``p``
    cycles), v_min and current-based layers in graphs: cycle for cycle, and every
    spike, state and current as the reference."""
    nm, gaps = _dag_case(seed, plain=False)
    rec = simulate(nm, gaps, until_idle=True)
    compare(nm, rec, cycles(nm, gaps))


@pytest.mark.parametrize("seed", [pytest.param(s, marks=pytest.mark.slow) if s == 7 else s
                                  for s in range(12)])
def test_cycle_model_matches_amaranth_sim_on_delays_and_recurrence(seed):
    """Every v2 graph (delay lines with their write-side blocking and replay on ``go``,
    taps, self and backward recurrence, token feeds): cycle for cycle, and every spike,
    state and current as the reference (the seeds of tests/hw/test_network.py's
    random graphs)."""
    model, binned = graph_case(seed)
    rng = np.random.default_rng(seed)
    lanes = [int(rng.integers(1, 4)) if rng.random() < 0.6 else None for _ in model.layers]
    params = HwParams(lanes=lanes, fifo_depth=int(rng.integers(2, 5)))
    nm = NetworkModel(model, binned, params, samples=1 + seed % 2, order_seed=seed,
                      bad_per_step=seed % 3)
    grng = random.Random(seed)
    gaps = [0 if grng.random() < 0.6 else grng.randint(1, 4) for _ in nm.words]
    limit = 3 * MAX_CYCLES                  # the largest case takes 22,000 cycles
    rec = simulate(nm, gaps, until_idle=True, max_cycles=limit)
    compare(nm, rec, cycles(nm, gaps, max_cycles=limit))


@pytest.mark.parametrize("seed", range(6))
def test_banked_cycle_model_matches_amaranth_sim(seed):
    """Layers over 2-4 banks (hw.layer "Banks", hw.merge): the cycle model's fork over
    the banks' engines, their cores and the merge, cycle for cycle; sparse and dense."""
    rng = np.random.default_rng(700 + seed)
    model, binned, banks = banked_case(rng, (2, 14, 12), 0.1)
    params = HwParams(lanes=[int(rng.integers(1, 4)) for _ in model.layers],
                      fifo_depth=int(rng.integers(2, 5)), banks=banks,
                      sweep="dense" if seed % 3 == 2 else "sparse")
    nm = NetworkModel(model, binned, params, samples=2, order_seed=seed, bad_per_step=1)
    grng = random.Random(seed)
    gaps = [0 if grng.random() < 0.6 else grng.randint(1, 4) for _ in nm.words]
    compare(nm, simulate(nm, gaps), cycles(nm, gaps))


@pytest.mark.parametrize("seed", range(3))
def test_split_ring_keeps_the_cycles(seed, monkeypatch):
    """Live lists split into sub-rings of 4 words (``hw.livelist.SUB_DEPTH``): the RTL's
    cycles are still the cycle model's (which knows one ring), every spike and state the
    reference's."""
    import hw.livelist
    monkeypatch.setattr(hw.livelist, "SUB_DEPTH", 4)
    nm, gaps = _sparse_case(seed)
    rep = cycles(nm, gaps)
    assert any(rep.sparse)
    compare(nm, simulate(nm, gaps), rep)
