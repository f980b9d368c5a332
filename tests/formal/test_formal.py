"""Proofs of the stream blocks (SymbiYosys with the YoWASP tools: smtbmc + boolector, and
ABC's pdr through yosys's built-in ABC).

See :mod:`tests.formal.harness` for what each harness asserts. Every property is proved
twice: bounded, 20 cycles from reset (smtbmc), and for every depth (ABC's PDR, which
needs no help from the harness). The engines' "exactly once" is proved a third way, by
k-induction (smtbmc) over white-box invariants. Broken blocks must fail, and covers
show that the assumptions leave the interesting cases reachable.
"""

from pathlib import Path

import pytest
from amaranth.hdl import Module, Signal

from . import harness
from .harness import (assert_no_comb_ready, assert_sink_rules, engine_harness, fifo_harness,
                      prove)

DEPTH = 20
# (mode, engine): bounded to DEPTH cycles from reset, and unbounded
METHODS = {"bmc": ("bmc", "smtbmc boolector"), "pdr": ("prove", "abc pdr")}

ENGINES = {
    "conv2d": dict(in_shape=(1, 2, 3), out_channels=2, kernel=2, stride=1, padding=1, lanes=1),
    "conv2d_s2": dict(in_shape=(1, 3, 3), out_channels=2, kernel=3, stride=2, padding=1,
                      lanes=1),
    "sumpool2d": dict(in_shape=(2, 3, 3), kernel=2, lanes=2),
    "linear": dict(in_shape=(1, 2, 2), out_channels=3, lanes=2),
}


def _engine(name, **kw):
    return engine_harness(name.split("_")[0], **ENGINES[name], **kw)


@pytest.mark.parametrize("method", sorted(METHODS))
def test_fifo(tmp_path, method):
    """SyncFIFOBuffered as the network uses it: stream rules on the read side, no
    combinational path from r_en to r_rdy/r_data, each written word read once, in
    order, unchanged; level = written - read."""
    m, ports = fifo_harness()
    mode, engine = METHODS[method]
    prove(m, ports, tmp_path / "fifo", depth=DEPTH, name="fifo", mode=mode, engine=engine)


@pytest.mark.parametrize("method", sorted(METHODS))
@pytest.mark.parametrize("name", sorted(ENGINES))
def test_engine_stream_rules(tmp_path, name, method):
    m, ports = _engine(name, part="rules")
    mode, engine = METHODS[method]
    prove(m, ports, tmp_path / name, depth=DEPTH, name=name, mode=mode, engine=engine)


@pytest.mark.parametrize("method", ["pdr", "induction"])
@pytest.mark.parametrize("name", sorted(ENGINES))
def test_engine_exactly_once(tmp_path, name, method):
    """Every accepted event is emitted exactly once, in order: each update shown is one
    of the reference updates (addresses from the layer's definition) of the oldest event
    still owed work, not shown before, or its token; the engine is never idle while
    work is owed. ``pdr``: the black-box specification, every depth. ``induction``:
    k-induction (smtbmc) with the white-box invariants added: a base case of DEPTH
    cycles from reset (the bounded proof), then every depth."""
    if method == "induction":
        m, ports = _engine(name, invariants=True)
        mode, engine = "prove", "smtbmc boolector"
    else:
        m, ports = _engine(name)
        mode, engine = METHODS[method]
    log = prove(m, ports, tmp_path / name, depth=DEPTH, name=name, mode=mode, engine=engine)
    if method == "induction":
        assert "successful proof by k-induction" in log, log[-2000:]


@pytest.mark.parametrize("name", sorted(ENGINES))
def test_engine_covers(tmp_path, name):
    """The assumptions leave the interesting cases reachable within DEPTH cycles: three
    events owed at once, the largest window completed, a token passed on (and an event
    without work, where the layer has one)."""
    m, ports = _engine(name, cover=True)
    log = prove(m, ports, tmp_path / name, depth=DEPTH, name=name, mode="cover",
                engine="smtbmc boolector")
    assert "Reached cover statement" in log, log[-2000:]


@pytest.mark.parametrize("name", ["linear", "conv2d_s2"])
@pytest.mark.parametrize("bug,messages", [
    ("addr", ["update not in the window of its event"]),
    # a swallowed update leaves its event owed: the engine goes idle, takes a fourth
    # event, or shows the next event's update where the missing one is due
    ("drop", ["engine idle with updates or tokens missing", "holds more than three events",
              "update not in the window of its event"]),
    ("dup", ["an update no event asked for", "token in the place of an update"]),
])
def test_proof_catches_a_broken_engine(tmp_path, name, bug, messages):
    """An engine with a wrong address, a swallowed update or a doubled token fails the
    "exactly once" proof, at an assertion that names the fault."""
    m, ports = _engine(name, bug=bug)
    with pytest.raises(AssertionError, match="proof failed") as err:
        prove(m, ports, tmp_path / bug, depth=DEPTH, name=bug, mode="prove", engine="abc pdr")
    _assert_names(err, messages)


def test_proof_catches_a_wrong_table(tmp_path, monkeypatch):
    """A convolution whose kernel-offset table is off by one at one border coordinate
    (an error inside the engine, not at its output) fails the proof."""
    import hw.conv
    right = hw.conv.axis_table

    def wrong(size, out_size, K, S, P):
        table = right(size, out_size, K, S, P)
        o, k, n = table[-1]
        table[-1] = (o, k - 1, n)
        return table
    monkeypatch.setattr(hw.conv, "axis_table", wrong)
    m, ports = _engine("conv2d_s2")
    with pytest.raises(AssertionError, match="proof failed") as err:
        prove(m, ports, tmp_path / "table", depth=DEPTH, name="table", mode="prove",
              engine="abc pdr")
    _assert_names(err, ["update not in the window of its event"])


def _assert_names(err, messages):
    src = Path(harness.__file__).read_text().splitlines()
    lines = [i + 1 for i, s in enumerate(src) for msg in messages if msg in s]
    assert lines and any(f"harness.py:{line} " in str(err.value) for line in lines), \
        str(err.value)


def test_proof_catches_a_broken_stream(tmp_path):
    """A source that drops ``valid`` when ``ready`` is low (and whose ``valid`` follows
    ``ready``) fails both rules."""
    for part in ("withdraw", "comb"):
        m = Module()
        ra, rb = Signal(), Signal()
        cnt = Signal(3)
        m.d.sync += cnt.eq(cnt + 1)
        if part == "withdraw":
            va, vb = cnt[0], cnt[0]
        else:
            va, vb = ra, rb
        assert_sink_rules(m, va, ra, cnt, "out")
        assert_no_comb_ready(m, ra, rb, (va, cnt), (vb, cnt), "out")
        with pytest.raises(AssertionError, match="proof failed"):
            prove(m, [ra, rb], tmp_path / part, depth=6, name=part)


def core_harness(sweep):
    """A neuron core on a 4-word layer (conv 1->2 1x1, 1x2 map, one lane) with free
    updates (any address, kind and weights; the stream rules assumed on ``upd``), from
    any contents of its memories (the formal flow leaves them unconstrained): the stream
    rules on ``out``; for the sparse core also a live list that never holds more than
    ``D`` entries (``count``)."""
    import numpy as np

    from hw.neuron import NeuronCore
    from sim.geometry import END_SAMPLE
    from sim.randmodel import random_layer
    rng = np.random.default_rng(5)
    layer = random_layer(rng, "c", "conv2d", (1, 1, 2), kernel=1, stride=1, padding=0,
                         out_channels=2, weight_bits=3, state_bits=4, bias=False,
                         leak=True, reset="subtract")
    layer.beta_num, layer.beta_frac_bits = 1, 1
    layer.threshold[:] = 2
    layer.acc_bits = layer.required_acc_bits(1)
    m = Module()
    core = m.submodules.core = NeuronCore(layer, 1, wbits=3, sweep=sweep)
    assert core.sweep == sweep
    valid, payload, wdata = Signal(), Signal(len(core.upd.payload.as_value())), Signal(3)
    ready = Signal()
    m.d.comb += [core.upd.valid.eq(valid), core.upd.payload.as_value().eq(payload),
                 core.wdata.eq(wdata), core.out.ready.eq(ready)]
    harness.assume_source(m, valid, core.upd.ready, payload, "upd")
    m.d.comb += [harness.Assume(core.upd.payload.sa < core.D),
                 harness.Assume(core.upd.payload.kind <= END_SAMPLE)]
    assert_sink_rules(m, core.out.valid, ready, core.out.payload.as_value(), "out")
    return m, [valid, payload, wdata, ready], core


@pytest.mark.parametrize("sweep", ["dense", "sparse"])
def test_core_stream_rules(tmp_path, sweep, monkeypatch):
    """The neuron core's ``out`` keeps the stream rules with either sweep (bounded, 24
    cycles from reset: several steps of a 4-word core, the list wrapping around)."""
    from hw.livelist import ListSequencer
    orig = ListSequencer.elaborate

    def elaborate(self, platform):
        mod = orig(self, platform)
        mod.d.comb += harness.Assert(self.count <= self.depth, "list: more than D entries")
        return mod
    monkeypatch.setattr(ListSequencer, "elaborate", elaborate)
    m, ports, _ = core_harness(sweep)
    prove(m, ports, tmp_path / sweep, depth=24, name=f"core_{sweep}")

DELAYS = {
    "d1_D2": dict(shape=(2,), delay=1, taps=2),
    "d0_D2": dict(shape=(2,), delay=0, taps=2),
    "d2_D1": dict(shape=(2,), delay=2, taps=1),
}


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(DELAYS))
def test_delay_line(tmp_path, name):
    """DelayLine and the join's go / sample_end, for every depth (ABC's PDR; so also the
    DEPTH cycles from reset the other blocks are checked for): the write side is
    refused exactly while the source is ahead of the consumer (no slot still needed is
    overwritten, the line never holds more steps than its slots, and the source is never
    held for nothing); one END_STEP per go; the replay makes progress whenever the
    source has finished step c - d (no deadlock inside the line); every tap of every
    step replays exactly its source step's events, the tracked one in its place (none
    before the sample start, none of an unfinished step)."""
    m, ports = harness.delay_harness(**DELAYS[name])
    prove(m, ports, tmp_path / name, depth=DEPTH, name=name, mode="prove", engine="abc pdr")


def test_delay_line_stream_rules(tmp_path):
    """Stream rules on the replay and no combinational path from out.ready (two
    copies), every depth."""
    m, ports = harness.delay_harness(**DELAYS["d1_D2"], part="rules")
    prove(m, ports, tmp_path / "rules", depth=DEPTH, name="rules", mode="prove",
          engine="abc pdr")


@pytest.mark.parametrize("bug,messages", [
    # one slot short of d + D: a step still to be replayed is overwritten
    ("slots", ["delay: the tracked spike is not replayed in its place",
               "delay: a tap replays a wrong number of events",
               "delay: a tap replays a step it must not"]),
    # one event short of N * m_src: a full step loses its last spike
    ("capacity", ["delay: a tap replays a wrong number of events"]),
])
def test_proof_catches_a_wrong_sizing_rule(tmp_path, monkeypatch, bug, messages):
    """A delay line sized below the rule (one slot or one event per slot too few) fails
    the proof at an assertion about the replayed contents."""
    import hw.delay
    if bug == "slots":
        right = hw.delay.delay_slots
        monkeypatch.setattr(hw.delay, "delay_slots", lambda d, D: right(d, D) - 1)
    else:
        right = hw.delay.delay_capacity
        monkeypatch.setattr(hw.delay, "delay_capacity", lambda s, m: right(s, m) - 1)
    m, ports = harness.delay_harness(**DELAYS["d1_D2"])
    with pytest.raises(AssertionError, match="proof failed") as err:
        prove(m, ports, tmp_path / bug, depth=DEPTH, name=bug, mode="prove", engine="abc pdr")
    _assert_names(err, messages)


def test_delay_line_covers(tmp_path):
    """The assumptions leave the interesting cases reachable within DEPTH cycles: the
    source held by the write side, the replay waiting for the source, a full step
    replayed on the last tap, and a tap suppressed at a sample start."""
    m, ports = harness.delay_harness(**DELAYS["d1_D2"], cover=True)
    log = prove(m, ports, tmp_path / "cover", depth=DEPTH, name="cover", mode="cover",
                engine="smtbmc boolector")
    assert log.count("summary:   reached cover statement") == 4, log[-2000:]
