"""DelayLine: the RTL against its model (sim.cycles.DelayLineModel) cycle for cycle under
random stalls on both sides, and the replayed (step, tap, event) multiset against the
contract: tap ``j`` of consumer step ``c`` carries the source's events of step
``c - d - j``, nothing before the start of the sample, across several samples with the
consumer lagging and the source running ahead (and the other way round)."""

import random
from collections import Counter

import numpy as np
import pytest
from amaranth.sim import Simulator

from hw.delay import DelayLine, memory_bits, model_memory
from sim.cycles import DelayLineModel, Event, TapEvent
from sim.geometry import END_SAMPLE, END_STEP, SPIKE, delay_capacity, delay_slots, shape3
from sim.randmodel import random_graph

from .harness import pack, unpack


def source_samples(rng, shape, timesteps, m_src, density):
    """Per sample, per step: a list of ``(c, y, x)`` events (each neuron at most
    ``m_src`` times, a count sent as identical events back to back)."""
    C, H, W = shape3(shape)
    out = []
    for T in timesteps:
        sample = []
        for _ in range(T):
            step = []
            for c in range(C):
                for y in range(H):
                    for x in range(W):
                        if rng.random() < density:
                            step += [(c, y, x)] * rng.randint(1, m_src)
            rng.shuffle(step)       # identical events need not be adjacent for the line
            sample.append(step)
        out.append(sample)
    return out


def source_words(samples):
    words = []
    for sample in samples:
        for step in sample:
            words += [Event(SPIKE, *e) for e in step]
            words.append(Event(END_STEP, 0, 0, 0))
        words.append(Event(END_SAMPLE, 0, 0, 0))
    return words


def expected_replay(samples, delay, taps):
    """The contract: per consumer step (absolute), the ordered list of ``(tap, event)``:
    taps in order, each the source's events of step ``c - d - j`` in their order, when
    that step is in the consumer's sample."""
    steps, starts = [], []
    for sample in samples:
        starts.append(len(steps))
        steps += sample
    out = []
    for start, sample in zip(starts, samples):
        for k in range(len(sample)):
            c = start + k
            out.append([(j, e) for j in range(taps) if c - delay - j >= start
                        for e in steps[c - delay - j]])
    return out


def run_delay(shape, delay, taps, m_src, samples, *, seed, gap, ready, go_wait,
              max_cycles=20000):
    """Drive a DelayLine and its model with the same random stimuli; assert equal
    handshakes and payloads every cycle. Returns the replay per consumer step (list of
    ``(tap, (c, y, x))``) and the cycle count."""
    dut = DelayLine(shape, delay, taps, m_src)
    assert dut.memory_bits == memory_bits(shape, delay, taps, m_src)
    assert dut.depth == delay_slots(delay, taps) * delay_capacity(shape, m_src)
    model = DelayLineModel(shape, delay, taps, m_src)
    prng = random.Random(seed)
    words = source_words(samples)
    T = [len(s) for s in samples]
    in_layout = dut.inp.payload.shape()
    out_layout = dut.out.payload.shape()
    replay = []
    stats = {"blocked": 0, "waited": 0}

    async def bench(ctx):
        i = 0
        presenting = False
        cur = []
        # consumer: 'go' strobes after the previous END_STEP, 'sample_end' after T steps
        sample, steps_in_sample, wait = 0, 0, prng.randint(0, go_wait)
        cycle = 0
        while sample < len(samples):
            assert cycle < max_cycles, "timeout"
            if not presenting and i < len(words) and prng.random() >= gap:
                presenting = True
            ctx.set(dut.inp.valid, presenting)
            if presenting:
                ctx.set(dut.inp.payload.as_value(),
                        pack(in_layout, kind=words[i].kind, c=words[i].c, y=words[i].y,
                             x=words[i].x))
            r = prng.random() < ready
            ctx.set(dut.out.ready, r)
            go = sample_end = False
            if wait is not None:
                if wait == 0:
                    if steps_in_sample < T[sample]:
                        go = True
                    else:
                        sample_end = True
                    wait = None
                else:
                    wait -= 1
            ctx.set(dut.go, go)
            ctx.set(dut.sample_end, sample_end)
            iready, ov, op, busy = (ctx.get(dut.inp.ready), ctx.get(dut.out.valid),
                                    ctx.get(dut.out.payload.as_value()), ctx.get(dut.busy))
            # the model, from the same registers
            assert iready == model.inp_ready, f"inp.ready differs in cycle {cycle}"
            assert ov == model.out_valid, f"out.valid differs in cycle {cycle}"
            assert busy == model.busy, f"busy differs in cycle {cycle}"
            if ov:
                got = TapEvent(*unpack(out_layout, op, "kind", "c", "y", "x", "tap"))
                assert got == model.out_event(), f"out.payload differs in cycle {cycle}"
            assert not ((go or sample_end) and busy), "testbench: strobe while busy"
            stats["blocked"] += presenting and not iready
            stats["waited"] += model.run and model.lag1 > delay   # the replay waits
            model.clock(words[i] if presenting else None, r, go, sample_end)
            await ctx.tick()
            cycle += 1
            if presenting and iready:
                i += 1
                presenting = False
            if sample_end:
                assert not cur
                sample, steps_in_sample = sample + 1, 0
                wait = prng.randint(0, go_wait)
            if ov and r:
                kind, c, y, x, tap = unpack(out_layout, op, "kind", "c", "y", "x", "tap")
                assert kind in (SPIKE, END_STEP), "the replay carries no end-of-sample"
                if kind == SPIKE:
                    assert wait is None and steps_in_sample < T[sample], "spike without go"
                    cur.append((tap, (c, y, x)))
                else:
                    replay.append(cur)
                    cur = []
                    steps_in_sample += 1
                    wait = prng.randint(0, go_wait)
        stats["cycles"] = cycle

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    return replay, stats


CASES = [
    # shape, delay, taps, m_src, timesteps of the samples
    ((2, 2, 2), 1, 1, 1, [4, 3, 5]),            # axonal delay
    ((5,), 0, 3, 1, [4, 2, 5]),                 # taps from the same step on
    ((1, 2, 3), 2, 3, 2, [6, 1, 2, 5]),         # multi-spike source, samples shorter than d+D
    ((3,), 3, 1, 1, [2, 7, 3]),                 # a sample with T <= d: nothing replayed
    ((4,), 1, 4, 1, [9, 6]),                    # recurrence-like: d = 1, dense taps
]


#: (source gap probability, out.ready probability, largest wait before go / sample_end)
TIMINGS = {"consumer_lags": (0.05, 0.5, 12), "source_lags": (0.7, 0.9, 0),
           "free": (0.3, 0.7, 3)}


@pytest.mark.parametrize("case", range(len(CASES)))
@pytest.mark.parametrize("timing", TIMINGS)
def test_delay_line_matches_model_and_contract(case, timing):
    """RTL = model in every cycle (inp.ready, out.valid, out.payload, busy) and the replay
    of every step = the contract's, over 6-12 samples of the case's lengths (repeated
    three times), with the consumer lagging (the source held), the source lagging (the
    replay waiting) or both at random."""
    shape, delay, taps, m_src, T = CASES[case]
    T = T * 3
    seed = 1000 * case + list(TIMINGS).index(timing)
    rng = random.Random(seed)
    samples = source_samples(rng, shape, T, m_src, density=0.4)
    gap, ready, go_wait = TIMINGS[timing]
    replay, stats = run_delay(shape, delay, taps, m_src, samples, seed=seed, gap=gap,
                              ready=ready, go_wait=go_wait)
    want = expected_replay(samples, delay, taps)
    assert len(replay) == len(want) == sum(T)
    for c, (got, exp) in enumerate(zip(replay, want)):
        # the contract: the (tap, event) multiset of every step
        assert Counter(got) == Counter(exp), f"step {c}"
        # the documented order: taps in order, each in the order it was written
        assert got == exp, f"step {c}: order"
    # both sides of the blocking rule happen: the source runs ahead of the consumer and
    # is held, and the consumer's replay waits for a lagging source
    if timing == "consumer_lags":
        assert stats["blocked"] > 0, "the source never ran ahead"
    if timing == "source_lags":
        assert stats["waited"] > 0, "the replay never waited for the source"


def test_full_slots_are_kept():
    """Every neuron fires m_src times in every step: each slot is filled to its capacity
    and nothing is lost."""
    shape, delay, taps, m_src = (2, 1, 2), 1, 2, 2
    C, H, W = shape
    full = [[(c, y, x)] * m_src for c in range(C) for y in range(H) for x in range(W)]
    step = [e for g in full for e in g]
    assert len(step) == delay_capacity(shape, m_src)
    samples = [[list(step) for _ in range(4)], [list(step) for _ in range(3)]]
    replay, _ = run_delay(shape, delay, taps, m_src, samples, seed=3, gap=0.2, ready=0.6,
                          go_wait=4)
    assert replay == expected_replay(samples, delay, taps)


def test_fast_replay_timing():
    """With the source done and out.ready high: the first event is offered two cycles
    after go, then one per cycle; a live empty tap costs one cycle; END_STEP follows in
    the cycle after the last live tap."""
    shape, delay, taps = (4,), 1, 3
    words = ([Event(SPIKE, 0, 0, 0), Event(SPIKE, 1, 0, 0), Event(END_STEP, 0, 0, 0)]
             + [Event(END_STEP, 0, 0, 0)] + [Event(SPIKE, 3, 0, 0), Event(END_STEP, 0, 0, 0)])
    dut = DelayLine(shape, delay, taps)
    offered = {}

    async def bench(ctx):
        ctx.set(dut.out.ready, 1)
        # steps 0..2 written while the consumer replays steps 0..2 (go at once each time)
        i, cycle, step = 0, 0, 0
        go_next = 0
        lay = dut.inp.payload.shape()
        while step < 4:
            assert cycle < 200, "timeout"
            ctx.set(dut.inp.valid, i < len(words))
            if i < len(words):
                ctx.set(dut.inp.payload.as_value(),
                        pack(lay, kind=words[i].kind, c=words[i].c))
            go = cycle == go_next
            ctx.set(dut.go, go)
            ir, ov, op = (ctx.get(dut.inp.ready), ctx.get(dut.out.valid),
                          ctx.get(dut.out.payload.as_value()))
            if go:
                offered[step] = [cycle]
            if ov:
                offered[step].append((cycle,) + unpack(dut.out.payload.shape(), op, "kind",
                                                       "c", "tap"))
            await ctx.tick()
            cycle += 1
            i += bool(i < len(words) and ir)
            if ov and unpack(dut.out.payload.shape(), op, "kind")[0] == END_STEP:
                step += 1
                go_next = cycle + 5      # leave the source time to finish the next step

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    # step 0, 1: k < d + j for every tap but (step 1, tap 0): step 0's two events
    t = offered[0][0]
    assert offered[0][1:] == [(t + 2, END_STEP, 0, 0)]
    t = offered[1][0]
    assert offered[1][1:] == [(t + 2, SPIKE, 0, 0), (t + 3, SPIKE, 1, 0),
                              (t + 4, END_STEP, 0, 0)]
    # step 2: tap 0 = step 1 (empty, one cycle), tap 1 = step 0 (two events)
    t = offered[2][0]
    assert offered[2][1:] == [(t + 3, SPIKE, 0, 1), (t + 4, SPIKE, 1, 1),
                              (t + 5, END_STEP, 0, 0)]
    # step 3: tap 0 = step 2 (one event), tap 1 = step 1 (empty), tap 2 = step 0
    t = offered[3][0]
    assert offered[3][1:] == [(t + 2, SPIKE, 3, 0), (t + 4, SPIKE, 0, 2),
                              (t + 5, SPIKE, 1, 2), (t + 6, END_STEP, 0, 0)]


def test_sizing_and_memory_bits():
    # S = d + D slots of N * m events of c, y, x bits
    assert delay_slots(3, 2) == 5 and delay_capacity((2, 4, 4), 3) == 96
    assert memory_bits((2, 4, 4), 3, 2, 3) == 5 * 96 * (1 + 2 + 2)
    assert memory_bits((2, 32, 32), 0, 8, 1) == 8 * 2048 * 11
    for bad, msg in [(lambda: DelayLine((4,), -1, 1), "delay"),
                     (lambda: DelayLine((4,), 1, 0), "taps"),
                     (lambda: DelayLine((4,), 1, 1, 0), "m_src")]:
        with pytest.raises(ValueError, match=msg):
            bad()


def test_model_memory_lists_every_delay_line():
    rng = np.random.default_rng(5)
    for _ in range(20):
        model = random_graph(rng)
        lines = model_memory(model)
        want = [(layer.name, j) for i, layer in enumerate(model.layers)
                for j, syn in enumerate(layer.synapses) if syn.delay or syn.taps > 1]
        assert [(e["layer"], e["synapse"]) for e in lines] == want
        for e in lines:
            syn = model.layer(e["layer"]).synapses[e["synapse"]]
            src = model.source_of(model.index(e["layer"]), syn)
            shape = model.source_shape(src)
            N = int(np.prod(shape))
            assert e["slots"] == syn.delay + syn.taps
            assert e["capacity"] == N * model.source_limit(src)
            assert e["bits"] == e["slots"] * e["capacity"] * e["event_bits"]
