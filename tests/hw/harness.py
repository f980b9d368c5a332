"""Simulation helpers shared by the hardware tests: packing stream words, random
sources and sinks, reference runs of single layers, and state extraction."""

import contextlib
import random

import numpy as np

from amaranth.sim import Simulator

from sim.geometry import END_SAMPLE, END_STEP, SPIKE, shape3
from sim.model import InputSpec, Model
from sim.reference import run as ref_run
from sim.tb.layout import split_lanes


def pack(layout, **fields):
    word = 0
    for name, value in fields.items():
        f = layout[name]
        word |= (int(value) & ((1 << f.width) - 1)) << f.offset
    return word


def unpack(layout, word, *names):
    out = []
    for name in names:
        f = layout[name]
        out.append((word >> f.offset) & ((1 << f.width) - 1))
    return tuple(out)


def events_of_step(binned, k, rng, shape):
    """Input events of step ``k`` as ``(c, y, x)`` tuples: a count ``c`` becomes ``c``
    events; the order is shuffled but repeated events are kept back to back."""
    C, H, W = shape3(shape)
    src, count = binned.step(k)
    groups = [[(int(s) // (H * W), (int(s) // W) % H, int(s) % W)] * int(n)
              for s, n in zip(src, count)]
    rng.shuffle(groups)
    return [e for g in groups for e in g]


def single_layer_model(layer, timesteps, count_clip=1, readout="spike_count"):
    return Model(input=InputSpec(shape=shape3(layer.in_shape), dt_us=1000, timesteps=timesteps,
                                 count_clip=count_clip),
                 layers=[layer], readout=readout)


def words_to_states(words, core, current=False):
    """Flat ``(C*H*W)`` int64 states (``current``: currents, of a current-based core)
    from the list of state words of a core."""
    C, Ho, Wo, G, L = core.C, core.Ho, core.Wo, core.G, core.L
    out = np.zeros(C * Ho * Wo, dtype=np.int64)
    for a, word in enumerate(words):
        pos, g = divmod(a, G)
        v, i = core.split_word(word)
        if core.current is None:
            assert v == split_lanes(word, L, core.layer.acc_bits)
        for j, x in enumerate(i if current else v):
            c = g * L + j
            if c < C:
                out[c * Ho * Wo + pos] = x
            else:
                assert x == 0, "padding lane changed"
        if not current and i is not None:
            assert all(x == 0 for j, x in enumerate(i) if g * L + j >= C), \
                "padding current lane changed"
    return out


def run_layer(layer, lanes, items, *, seed=0, gap=0.3, ready=0.7, fire=True,
              hold_ready_low=0, max_cycles=200000, sweep="dense"):
    """Drive one :class:`hw.layer.LayerEngine` with ``items`` and record everything.

    ``items`` is a list of ``("s", c, y, x)`` (``("s", c, y, x, tap)`` for an engine
    with a ``tap`` field) / ``("t",)`` (end of step) / ``("e",)`` (end of sample).
    Returns ``(spikes, states, ovf, cycles, engine)`` with one entry per end-of-step
    token: ``spikes[k]`` the list of emitted ``(c, y, x)`` in order, ``states[k]`` the
    flat stored states read from the RAM when the token left (``currents[k]`` the
    currents of a current-based layer), ``ovf[k]`` the step's overflow flag.
    ``sweep``: the core's sweep (``"dense"`` or ``"sparse"``).
    """
    from hw.layer import LayerEngine
    dut = LayerEngine(layer, lanes, fire=fire, sweep=sweep)
    prng = random.Random(seed)
    in_layout = dut.inp.payload.shape()
    out_layout = dut.out.payload.shape()
    words = []
    for it in items:
        if it[0] == "s":
            tap = {"tap": it[4]} if len(it) > 4 else {}
            words.append(pack(in_layout, kind=SPIKE, c=it[1], y=it[2], x=it[3], **tap))
        else:
            words.append(pack(in_layout, kind=END_STEP if it[0] == "t" else END_SAMPLE))
    res = {"spikes": [], "states": [], "currents": [], "ovf": [], "token_cycles": [],
           "sample_cycles": []}
    core = dut.core

    async def bench(ctx):
        i = 0
        cur = []
        presenting = False
        cycle = 0
        n_tokens = sum(1 for it in items if it[0] != "s")
        seen = 0
        while seen < n_tokens:
            if not presenting and i < len(words) and prng.random() >= gap:
                ctx.set(dut.inp.payload.as_value(), words[i])
                ctx.set(dut.inp.valid, 1)
                presenting = True
            r = 1 if (cycle >= hold_ready_low and prng.random() < ready) else 0
            ctx.set(dut.out.ready, r)
            _, _, iv, ir, ov, orr, op, sd, smd, ovf = await ctx.tick().sample(
                dut.inp.valid, dut.inp.ready, dut.out.valid, dut.out.ready,
                dut.out.payload.as_value(), dut.step_done, dut.sample_done, dut.ovf_step)
            cycle += 1
            if iv and ir:
                i += 1
                presenting = False
                ctx.set(dut.inp.valid, 0)
            if ov and orr:
                kind, c, y, x = unpack(out_layout, op, "kind", "c", "y", "x")
                if kind == SPIKE:
                    cur.append((c, y, x))
                else:
                    seen += 1
                    if kind == END_STEP:
                        assert sd
                        res["spikes"].append(cur)
                        res["ovf"].append(bool(ovf))
                        res["token_cycles"].append(cycle)
                        words_now = mem_words(ctx, core)
                        res["states"].append(words_to_states(words_now, core))
                        if core.current is not None:
                            res["currents"].append(words_to_states(words_now, core, True))
                    else:
                        assert smd
                        assert not cur, "spikes after the last end-of-step"
                        res["sample_cycles"].append(cycle)
                        assert not any(mem_words(ctx, core)), \
                            "end of sample must clear every state"
                    cur = []
            assert cycle < max_cycles, "timeout"

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    return res, dut


def reference_layer(layer, binned, count_clip=1, fire=True):
    """Reference spikes (sets of (c, y, x)) and flat states per step of a single layer."""
    model = single_layer_model(layer, binned.timesteps, count_clip,
                               "spike_count" if fire else "membrane")
    r = ref_run(model, binned, backend="numpy")
    spikes = [set(map(tuple, np.argwhere(r.spikes[layer.name][k].reshape(shape3(layer.out_shape)))))
              for k in range(binned.timesteps)]
    states = [r.states[layer.name][k].reshape(-1) for k in range(binned.timesteps)]
    return spikes, states, r.overflow[layer.name], r


def items_from_binned(binned, shape, rng, sample_end=True):
    items = []
    for k in range(binned.timesteps):
        items += [("s", *e) for e in events_of_step(binned, k, rng, shape)]
        items.append(("t",))
    if sample_end:
        items.append(("e",))
    return items


def mem_words(ctx, core):
    out = []
    for a in range(core.D):
        v = ctx.get(core.state_data[a])
        out.append(v.as_value().value if hasattr(v, "as_value") else int(v))
    return out


@contextlib.contextmanager
def stalled_forks():
    """While active, :class:`hw.network.Network` builds its forks as
    :class:`StalledFork`: every fork output (to a FIFO, or to the readout) gets a
    ``stall`` input that the testbench drives; yields the list of those signals (filled
    as forks are built)."""
    import hw.network
    from amaranth.hdl import Module, Signal
    from hw.fork import Fork
    stalls = []

    class StalledFork(Fork):
        """A :class:`hw.fork.Fork` whose output ``i`` is held back while ``stall[i]``:
        ``out[i].valid`` and the inner fork's ``out[i].ready`` are forced low (the
        consumer is not ready, as seen by the fork)."""
        def __init__(self, n, shape):
            super().__init__(n, shape)
            self.stall = [Signal(name=f"stall{i}") for i in range(n)]
            stalls.extend(self.stall)

        def elaborate(self, platform):
            m = Module()
            inner = m.submodules.inner = Fork(self.n, self.shape)
            m.d.comb += [inner.inp.valid.eq(self.inp.valid),
                         inner.inp.payload.eq(self.inp.payload),
                         self.inp.ready.eq(inner.inp.ready)]
            for o, io, st in zip(self.out, inner.out, self.stall):
                m.d.comb += [o.valid.eq(io.valid & ~st), o.payload.eq(io.payload),
                             io.ready.eq(o.ready & ~st)]
            return m

    old = hw.network.Fork
    hw.network.Fork = StalledFork
    try:
        yield stalls
    finally:
        hw.network.Fork = old


def run_network(model, binned, *, seed=0, gap=0.3, lanes=None, fifo_depth=4, readback=False,
                bad_events=0, samples=1, burst=False, max_cycles=400000, stall=0.0,
                banks=None):
    """Drive :class:`hw.network.Network` with ``binned`` (``samples`` times) and record
    per layer and step: spikes (list of flat indices in emission order), stored states
    (flat), overflow flags, finish cycles; plus scores/prediction per sample and status.

    ``readback``: after each step wait for ``idle`` and read every state word through the
    ``rb_*`` port (otherwise the RAM is read directly at each layer's step strobe).
    ``bad_events``: out-of-range events mixed into each step (must be dropped).
    ``burst``: no gaps at the source for the first half of every step.
    ``stall``: probability that a fork output (to a synapse's FIFO or to the readout) is
    held back in a cycle (:func:`stalled_forks`), drawn per output and cycle.
    ``max_cycles``: a run that has not finished by then fails with the progress of every
    layer (a hang is reported, never waited for).
    ``banks``: as :class:`hw.network.Network` (a banked layer's states are gathered from
    its cores, or read back bank-major).
    """
    from hw.network import Network
    patch = contextlib.ExitStack()
    stall_sigs = patch.enter_context(stalled_forks()) if stall else []
    dut = Network(model, lanes=lanes, fifo_depth=fifo_depth, banks=banks)
    prng = random.Random(seed)
    nprng = np.random.default_rng(seed)
    layout = dut.inp.payload.shape()
    P, H, W = model.input.shape
    T = binned.timesteps
    steps = []
    for s in range(samples):
        for k in range(T):
            ev = [pack(layout, kind=SPIKE, p=c, y=y, x=x)
                  for c, y, x in events_of_step(binned, k, nprng, model.input.shape)]
            for _ in range(bad_events):
                which = prng.randrange(3)
                p_, y_, x_ = prng.randrange(P), prng.randrange(H), prng.randrange(W)
                if which == 0:
                    p_ = P + prng.randrange(3)
                elif which == 1:
                    y_ = H + prng.randrange(1000)
                else:
                    x_ = W + prng.randrange(1000)
                ev.insert(prng.randrange(len(ev) + 1), pack(layout, kind=SPIKE, p=p_, y=y_, x=x_))
            ev.append(pack(layout, kind=END_STEP))
            steps.append(ev)
        steps.append([pack(layout, kind=END_SAMPLE)])
    n_layers = len(model.layers)
    shapes = [shape3(l.out_shape) for l in model.layers]
    rec = {"spikes": [[] for _ in range(n_layers)], "states": [[] for _ in range(n_layers)],
           "currents": [[] for _ in range(n_layers)],
           "ovf": [[] for _ in range(n_layers)], "cycles": [[] for _ in range(n_layers)],
           "scores": [], "prediction": [], "status": {}}
    cur = [[] for _ in range(n_layers)]
    layers = dut.layers

    def flat(i, c, y, x):
        C, Hh, Ww = shapes[i]
        return (c * Hh + y) * Ww + x

    mon = []
    for l in layers:
        mon += [l.out.valid, l.out.ready, l.out.payload.as_value(), l.step_done, l.ovf_step]
    with patch:                     # the forks are built at elaboration
        sim = Simulator(dut)        # elaborates: the FIFOs exist from here on
    assert stall_sigs or not stall, "stall: no fork was built through stalled_forks()"
    fifo_rdy = [f.w_rdy for f in dut.fifos]
    rec["fifo_full"] = [False] * len(fifo_rdy)
    out_layouts = [l.out.payload.shape() for l in layers]

    state = {"cycle": 0, "samples": 0}

    async def tick(ctx):
        """One clock edge; records every handshake, strobe and result of the cycle."""
        for st in stall_sigs:
            ctx.set(st, prng.random() < stall)
        vals = await ctx.tick().sample(dut.inp.valid, dut.inp.ready, dut.done, dut.cycle,
                                       *fifo_rdy, *mon)
        state["cycle"] += 1
        if state["cycle"] >= max_cycles:
            raise AssertionError(
                f"network did not finish within {max_cycles} cycles (a hang?): steps "
                f"finished per layer {[len(s) for s in rec['spikes']]} of "
                f"{T * samples}, samples done {state['samples']} of {samples}")
        iv, ir, done, cyc = vals[2:6]
        for fi, r in enumerate(vals[6:6 + len(fifo_rdy)]):
            if not r:
                rec["fifo_full"][fi] = True
        vals = vals[6 + len(fifo_rdy):]
        for li in range(n_layers):
            ov, orr, op, sd, ovf = vals[5 * li:5 * li + 5]
            if ov and orr:
                kind, c, y, x = unpack(out_layouts[li], op, "kind", "c", "y", "x")
                if kind == SPIKE:
                    cur[li].append(flat(li, c, y, x))
                elif kind == END_STEP:
                    assert sd
                    rec["spikes"][li].append(cur[li])
                    rec["ovf"][li].append(bool(ovf))
                    rec["cycles"][li].append(cyc)
                    cur[li] = []
                    if not readback:
                        layer_states(rec, li, layers[li],
                                     [mem_words(ctx, core) for core in layers[li].cores])
                else:
                    assert not cur[li]
        if done:
            rec["scores"].append([ctx.get(dut.scores[c]) for c in range(dut.n_classes)])
            rec["prediction"].append(ctx.get(dut.prediction))
            state["samples"] += 1
        return iv and ir

    async def bench(ctx):
        n_steps = 0
        for ev in steps:
            i = 0
            presenting = False
            is_step = unpack(layout, ev[-1], "kind")[0] == END_STEP
            n_steps += is_step
            while i < len(ev) or (is_step and len(rec["spikes"][-1]) < n_steps):
                if not presenting and i < len(ev):
                    g = 0 if (burst and i < len(ev) // 2) else gap
                    if prng.random() >= g:
                        ctx.set(dut.inp.payload.as_value(), ev[i])
                        ctx.set(dut.inp.valid, 1)
                        presenting = True
                if await tick(ctx):
                    i += 1
                    presenting = False
                    ctx.set(dut.inp.valid, 0)
            if readback and is_step:
                while not ctx.get(dut.idle):
                    await tick(ctx)
                for li, l in enumerate(layers):
                    per_core = []
                    ctx.set(dut.rb_layer, li)
                    width = len(l.rb_data.as_value())
                    for b, core in enumerate(l.cores):
                        words = []
                        for a in range(core.D):
                            ctx.set(dut.rb_addr, b * l.bank_stride + a)
                            await tick(ctx)
                            words.append(ctx.get(dut.rb_data) & ((1 << width) - 1))
                        per_core.append(words)
                    layer_states(rec, li, l, per_core)
        # a layer whose spikes nobody reads may finish after the readout's done
        while state["samples"] < samples or not ctx.get(dut.idle):
            await tick(ctx)
        for _ in range(3):
            await tick(ctx)
        rec["log"] = []
        for li in range(n_layers):
            ctx.set(dut.log_layer, li)
            row = []
            for k in range(T):
                ctx.set(dut.log_step, k)
                await tick(ctx)
                row.append(ctx.get(dut.log_cycle))
            rec["log"].append(row)
        for name in ("dropped", "range_error", "steps", "samples", "idle"):
            rec["status"][name] = ctx.get(getattr(dut, name))
        rec["status"]["ovf_sticky"] = [ctx.get(dut.ovf_sticky[i]) for i in range(n_layers)]

    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    return rec, dut


def layer_states(rec, li, layer, per_core):
    """Append to ``rec`` the states (and currents) of layer ``li`` from the state words of
    each of its cores (one per bank)."""
    cores = layer.cores
    rec["states"][li].append(layer.gather_states(
        [words_to_states(w, c) for w, c in zip(per_core, cores)]))
    if cores[0].current is not None:
        rec["currents"][li].append(layer.gather_states(
            [words_to_states(w, c, True) for w, c in zip(per_core, cores)]))


def check_network(model, binned, rec, samples=1):
    """Compare a :func:`run_network` record with the reference: every spike (a neuron
    with count ``s``: ``s`` events), state, current and overflow flag of every step."""
    r = ref_run(model, binned, backend="numpy")
    T = binned.timesteps
    for li, layer in enumerate(model.layers):
        assert len(rec["spikes"][li]) == T * samples
        for s in range(samples):
            for k in range(T):
                got = rec["spikes"][li][s * T + k]
                counts = r.spikes[layer.name][k].reshape(-1).astype(np.int64)
                want = np.repeat(np.arange(counts.size), counts).tolist()
                if layer.spike_limit == 1:
                    assert len(got) == len(set(got)), f"{layer.name} step {k}: duplicated spike"
                assert sorted(got) == want, f"{layer.name} step {k}: spikes differ"
                assert rec["ovf"][li][s * T + k] == bool(r.overflow[layer.name][k]), \
                    f"{layer.name} step {k}: overflow flag"
                np.testing.assert_array_equal(rec["states"][li][s * T + k],
                                              r.states[layer.name][k].reshape(-1),
                                              err_msg=f"{layer.name} step {k}: states")
                if layer.current is not None:
                    np.testing.assert_array_equal(rec["currents"][li][s * T + k],
                                                  r.currents[layer.name][k].reshape(-1),
                                                  err_msg=f"{layer.name} step {k}: currents")
    assert len(rec["scores"]) == samples
    for s in range(samples):
        np.testing.assert_array_equal(np.array(rec["scores"][s]), r.scores)
        assert rec["prediction"][s] == r.prediction
    return r


def _engine_kinds():
    """The synapse kinds that have a hardware engine (attached on import of hw)."""
    import hw.network  # noqa: F401
    from sim.registry import KINDS
    return {k for k in KINDS.names() if KINDS[k].has_part("hw.engine")}


def dag_case(seed, n_layers=None, plain=True):
    """A random same-step graph (forks, residual joins) of the kinds with an engine
    (with ``plain``: version-1 neurons; else also multi-spike, ``v_min`` and
    current-based layers), and a sample; ``None`` when the draw has no such graph."""
    from sim.randmodel import random_binned, random_graph, same_step_graph
    rng = np.random.default_rng(seed)
    model = same_step_graph(random_graph(rng, n_layers=n_layers or int(rng.integers(2, 5))),
                            kinds=_engine_kinds(), plain=plain)
    if model is None:
        return None
    return model, random_binned(rng, model.input.shape, model.input.timesteps,
                                model.input.count_clip)


def graph_case(seed):
    """A random version-2 graph with everything (delays, taps, self and backward
    recurrence, forks, joins, layers without a same-step synapse, v2 neurons, identity
    synapses) and a sample."""
    from sim.randmodel import random_binned, random_graph
    rng = np.random.default_rng(seed)
    model = random_graph(rng, n_layers=int(rng.integers(1, 4)))
    return model, random_binned(rng, model.input.shape, model.input.timesteps,
                                model.input.count_clip)


def banked_case(rng, input_shape, density):
    """A conv 5x5 s2 -> conv 3x3 -> sum pool -> linear stack (bias-free on odd draws) with
    2-4 banks on the first conv, 1-3 on the second and 2 on the pool:
    ``(model, binned, banks)``."""
    from sim.randmodel import model_from_spec, random_binned
    spec = [("conv2d", int(rng.integers(2, 5)), 5, 2, 2), ("conv2d", 3, 3, 1, 1),
            ("sumpool2d", 2), ("linear", int(rng.integers(3, 6)))]
    model = model_from_spec(spec, rng, input_shape=input_shape, timesteps=3)
    if rng.random() < 0.5:
        for layer in model.layers:
            layer.bias = None
    binned = random_binned(rng, model.input.shape, 3, density=density)
    banks = [int(rng.integers(2, 5)), int(rng.integers(1, 4)), 2, None]
    return model, binned, banks
