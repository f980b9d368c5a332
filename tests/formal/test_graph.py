"""Proofs of the graph handshakes: Fork and Join (issue 13), Merge (issue 15), no deadlock.

See :mod:`tests.formal.graph` for what each harness asserts and assumes. As in
:mod:`tests.formal.test_formal`, every property is proved twice: bounded, DEPTH cycles
from reset (smtbmc), and for every depth (ABC's PDR); broken blocks must fail at the
assertion that names their fault, and covers show that the assumptions leave the
interesting cases reachable.
"""

from pathlib import Path

import pytest

from . import graph, harness
from .graph import (DIAMOND_BOUND, JOIN_BUGS, MERGE_BUGS, diamond_harness, fork_harness,
                    join_harness, merge_harness)
from .harness import prove
from .test_formal import DEPTH, METHODS


def _run(m, ports, path, method):
    mode, engine = METHODS[method]
    return prove(m, ports, path, depth=DEPTH, name=path.name, mode=mode, engine=engine)


@pytest.mark.parametrize("method", sorted(METHODS))
@pytest.mark.parametrize("n", [2, 3])
def test_fork(tmp_path, n, method):
    """Stream rules on every output, no combinational ready -> valid, every word taken
    once by every output (transfers of out[i] = transfers of inp + the in-flight word),
    and, with fair consumers, the input is accepted within the fairness window."""
    m, ports = fork_harness(n=n)
    _run(m, ports, tmp_path / f"fork{n}", method)


#: (n_live, n_replay) of the join proofs: live and replay inputs, only live ones, one
#: live input with two replay inputs (a layer read through two delays)
JOINS = [(2, 1), (3, 0), (1, 2)]


@pytest.mark.parametrize("method", sorted(METHODS))
@pytest.mark.parametrize("n_live,n_replay", JOINS)
def test_join(tmp_path, n_live, n_replay, method):
    """Token rules (END_STEP after every live and replay END_STEP, END_SAMPLE after
    every live END_SAMPLE, no input taken after its token until the merged token's
    transfer, go once per step), spikes one for one, stream rules, and, with a fair
    core, never waiting for ever while inputs offer."""
    m, ports = join_harness(n_live, n_replay)
    _run(m, ports, tmp_path / f"join{n_live}{n_replay}", method)


@pytest.mark.parametrize("method", sorted(METHODS))
@pytest.mark.parametrize("n", [2, 3])
def test_merge(tmp_path, n, method):
    """Token-synchronous inputs (the banks of a layer): stream rules on out, no
    combinational out.ready -> valid/payload, every spike passes once and unchanged in the
    cycle it is taken, a token leaves exactly when every input's token is taken (same
    kind, never with a spike), and, with a fair consumer, never waiting for ever while
    some input offers a spike or every input offers a token."""
    m, ports = merge_harness(n=n)
    _run(m, ports, tmp_path / f"merge{n}", method)


@pytest.mark.parametrize("method", sorted(METHODS))
def test_diamond(tmp_path, method):
    """Fork(2) -> two 2-deep FIFOs -> Join(2, 0) -> a fair core (a residual block): a
    word offered to the fork is accepted, and the core gets a word while any is inside,
    within DIAMOND_BOUND cycles: the fork and the join never wait on each other."""
    m, ports = diamond_harness()
    _run(m, ports, tmp_path / "diamond", method)


def test_diamond_bound_is_tight(tmp_path):
    """One cycle less than DIAMOND_BOUND is refuted: the bound is the real worst case."""
    m, ports = diamond_harness(bound=DIAMOND_BOUND - 1)
    with pytest.raises(AssertionError, match="proof failed") as err:
        _run(m, ports, tmp_path / "tight", "pdr")
    _assert_at(err, [LIVENESS])


def test_proof_catches_a_deadlocked_diamond(tmp_path):
    """The diamond with the ``block`` join (a token-done input keeps the priority)
    deadlocks: the liveness assertion fails."""
    m, ports = diamond_harness(bug="block")
    with pytest.raises(AssertionError, match="proof failed") as err:
        _run(m, ports, tmp_path / "block", "pdr")
    _assert_at(err, [LIVENESS])


@pytest.mark.parametrize("which", ["fork", "join", "merge", "diamond"])
def test_graph_covers(tmp_path, which):
    """Reachable within DEPTH cycles: a fork's outputs taking one word in different
    cycles and the longest fair wait; a join's replay spike, END_STEP, a whole sample
    (END_STEP then END_SAMPLE) and the longest fair wait; a merge's spike locked on its
    last input while input 0 offers one, a token right after a spike and the longest
    fair wait; in the diamond both FIFOs full at once and a wait of the fork's input one
    cycle short of the bound."""
    m, ports = {"fork": fork_harness, "join": join_harness, "merge": merge_harness,
                "diamond": diamond_harness}[which](cover=True)
    log = prove(m, ports, tmp_path / which, depth=DEPTH, name=which, mode="cover",
                engine="smtbmc boolector")
    assert "Reached cover statement" in log, log[-2000:]


def _lines(markers, module=graph):
    """Lines of ``module`` (graph.py) holding a marker, and the line before (an ``Assert``
    whose message is on its second line is reported at its first)."""
    src = Path(module.__file__).read_text().splitlines()
    return [i + d for i, s in enumerate(src) for mk in markers if mk in s for d in (0, 1)]


#: the liveness assertion (its message is the caller's)
LIVENESS = "Assert(~waiting | progress"


@pytest.mark.parametrize("bug,markers", [
    ("dup", ["a word taken twice"]),
    ("drop", ["a word lost"]),
    ("lockstep", [LIVENESS]),
])
def test_proof_catches_a_broken_fork(tmp_path, bug, markers):
    """A fork that forgets which outputs took the word (duplicates), listens to one
    output only (loses words), or waits for all outputs to be ready in one cycle
    (lossless but not eager: fair consumers that are never ready together starve it)
    fails, at the assertion that names the fault."""
    m, ports = fork_harness(broken=bug)
    with pytest.raises(AssertionError, match="proof failed") as err:
        _run(m, ports, tmp_path / bug, "pdr")
    _assert_at(err, markers)


@pytest.mark.parametrize("bug,markers", [
    ("early", ["END_STEP before every input's END_STEP"]),
    ("retake", ["taken after its token"]),
    ("block", [LIVENESS]),
])
def test_proof_catches_a_broken_join(tmp_path, bug, markers):
    """hw/join.py with one mutation (:data:`tests.formal.graph.JOIN_BUGS`): END_STEP
    forwarded before the replay inputs' tokens, an input served again after its token,
    or a token-done input keeping the priority (a deadlock) fails, at the assertion
    that names the fault."""
    assert bug in JOIN_BUGS
    m, ports = join_harness(bug=bug)
    with pytest.raises(AssertionError, match="proof failed") as err:
        _run(m, ports, tmp_path / bug, "pdr")
    _assert_at(err, markers)


@pytest.mark.parametrize("bug,markers,where", [
    ("nolock", ["payload changed before the transfer"], "harness"),
    ("lonetoken", ["merge: a token on out without every input"], "graph"),
    ("dup", ["merge: a spike of input", "merge: spikes of two inputs"], "graph"),
    ("notoken", [LIVENESS], "graph"),
])
def test_proof_catches_a_broken_merge(tmp_path, bug, markers, where):
    """hw/merge.py with one mutation (:data:`tests.formal.graph.MERGE_BUGS`): no lock (a
    lower input's new spike replaces the one waiting on out), a token passed when input
    0 alone offers it, every offered spike taken at once (all but one lost), or tokens
    never passed (safe, but the stream stops) fails, at the assertion that names the
    fault (the first one in the stream rules of :mod:`tests.formal.harness`)."""
    assert bug in MERGE_BUGS
    m, ports = merge_harness(bug=bug)
    with pytest.raises(AssertionError, match="proof failed") as err:
        _run(m, ports, tmp_path / bug, "pdr")
    _assert_at(err, markers, {"graph": graph, "harness": harness}[where])


def _assert_at(err, markers, module=graph):
    lines = _lines(markers, module)
    name = Path(module.__file__).name
    assert lines and any(f"{name}:{line} " in str(err.value) for line in lines), \
        str(err.value)
