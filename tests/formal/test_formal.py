"""Bounded proofs (SymbiYosys + boolector, YoWASP builds) of the stream blocks.

See :mod:`tests.formal.harness` for what each harness asserts. Depth 20 from reset for
the FIFO and for the stream rules of the synapse engines; the engines' update/token
conservation is proved to a smaller depth (see ``COUNT_DEPTH``): the WebAssembly
boolector needs minutes per step beyond it, too slow for CI.
"""

import pytest
from amaranth.hdl import Module, Signal

from .harness import (assert_no_comb_ready, assert_sink_rules, engine_harness, fifo_harness,
                      prove)

DEPTH = 20
COUNT_DEPTH = 12

ENGINES = {
    "conv2d": dict(in_shape=(1, 2, 3), out_channels=2, kernel=2, stride=1, padding=1, lanes=1),
    "conv2d_s2": dict(in_shape=(1, 3, 3), out_channels=2, kernel=3, stride=2, padding=1,
                      lanes=1),
    "sumpool2d": dict(in_shape=(2, 2, 2), kernel=2, lanes=1),
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
    """Updates out = sum of the window sizes of the accepted events, tokens out =
    tokens in, never more at any time."""
    kw = dict(ENGINES[name])
    m, ports = engine_harness(name.split("_")[0], part="count", **kw)
    prove(m, ports, tmp_path / name, depth=COUNT_DEPTH, name=name)


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
