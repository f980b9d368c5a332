"""Bounded proofs (SymbiYosys with YoWASP yosys: smtbmc + boolector, and ABC's bmc3) of
the stream blocks.

See :mod:`tests.formal.harness` for what each harness asserts. Depth 20 from reset for
the FIFO and for the stream rules of the synapse engines; "exactly once" of the engines
to the depths of ``ONCE_DEPTH`` (20 for pool and linear, 16 and 12 for the convolutions:
beyond them ABC needs minutes per step, too slow for CI).
"""

from pathlib import Path

import pytest
from amaranth.hdl import Module, Signal

from . import harness
from .harness import (assert_no_comb_ready, assert_sink_rules, engine_harness, fifo_harness,
                      prove)

DEPTH = 20
# "exactly once" of the engines (abc bmc3): depth 20 where it fits the CI budget; the
# conv engines (windows of up to 4 and 8 updates) need minutes per step beyond 16 / 12
ONCE_DEPTH = {"conv2d": 16, "conv2d_s2": 12, "sumpool2d": 20, "linear": 20}
ONCE_ENGINE = "abc bmc3"

ENGINES = {
    "conv2d": dict(in_shape=(1, 2, 3), out_channels=2, kernel=2, stride=1, padding=1, lanes=1),
    "conv2d_s2": dict(in_shape=(1, 3, 3), out_channels=2, kernel=3, stride=2, padding=1,
                      lanes=1),
    "sumpool2d": dict(in_shape=(2, 2, 2), kernel=2, lanes=2),
    "linear": dict(in_shape=(1, 2, 2), out_channels=3, lanes=2),
}


def test_fifo(tmp_path):
    """SyncFIFOBuffered as the network uses it: stream rules on the read side, no
    combinational path from r_en to r_rdy/r_data, each written word read once, in
    order, unchanged; level = written - read."""
    m, ports = fifo_harness()
    prove(m, ports, tmp_path / "fifo", depth=DEPTH, name="fifo")


@pytest.mark.parametrize("name", sorted(ENGINES))
def test_engine_stream_rules(tmp_path, name):
    kw = dict(ENGINES[name])
    m, ports = engine_harness(name.split("_")[0], part="rules", **kw)
    prove(m, ports, tmp_path / name, depth=DEPTH, name=name)


@pytest.mark.parametrize("name", sorted(ENGINES))
def test_engine_exactly_once(tmp_path, name):
    """Every accepted event is emitted exactly once, in order: a watched event (any
    event of any trace) yields exactly its reference updates (addresses from the layer's
    definition), each once, right after the updates owed to earlier events, or, for a
    token, the token in its place; nothing is emitted that no event asked for, nothing
    is left once the engine is idle."""
    kw = dict(ENGINES[name])
    m, ports = engine_harness(name.split("_")[0], part="once", **kw)
    prove(m, ports, tmp_path / name, depth=ONCE_DEPTH[name], name=name, engine=ONCE_ENGINE)


@pytest.mark.parametrize("bug,message", [
    ("addr", "update not in the window of its event"),
    ("drop", "engine idle with updates or tokens missing"),
    ("dup", "an update no event asked for"),
])
def test_proof_catches_a_broken_engine(tmp_path, bug, message):
    """A linear engine with a wrong address, a swallowed update or a doubled token fails
    the "exactly once" proof, at the assertion that names the fault."""
    kw = dict(ENGINES["linear"])
    m, ports = engine_harness("linear", part="once", bug=bug, **kw)
    with pytest.raises(AssertionError, match="proof failed") as err:
        prove(m, ports, tmp_path / bug, depth=10, name=bug, engine=ONCE_ENGINE)
    src = Path(harness.__file__).read_text().splitlines()
    line = next(i + 1 for i, s in enumerate(src) if message in s)
    assert f"harness.py:{line} " in str(err.value), str(err.value)


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
