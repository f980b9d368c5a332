"""Simulation speed of the network top: simulated cycles per second under Icarus
Verilog, Verilator (both through cocotb) and ``amaranth.sim``.

The same stimulus top is used everywhere: the network plus a ROM holding the input
words of ``samples`` copies of one sample, offered back to back, and a ``finished`` flag
raised when the last result is out. No Python runs per cycle in the HDL simulators: the
clock and the reset come from a small Verilog wrapper (``always #5``) and the cocotb test
only waits for ``finished``, so the figure is the simulator's own speed.

Usage::

    python -m bench.sim_speed [--samples N] [--amaranth-samples N] [--out FILE]

Writes ``bench/results/sim_speed.json`` (cycles, seconds, cycles/s per simulator and
the Verilator / Icarus ratio; goal: >= 50). Verilator is measured twice: under cocotb,
built like the test suite's ``SIM=verilator`` (``tests.cocotb.runner.verilator_runner``:
only the top's ports public to VPI instead of cocotb's blanket ``--public-flat-rw``,
``-O3``) plus ``--timing`` for the wrapper's delays and ``VERILATOR_CFLAGS`` for the
C++ compiler; and bare (a C++ ``main`` toggling the clock, no VPI, same C++ flags). cocotb's C++ GPI clock (``Clock(impl="gpi")`` on
``speed_top`` without ``--timing``; ``run_hdl(..., clock="gpi")``) measured slower than
the wrapper under Verilator (two timed VPI callbacks per cycle).
"""

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

SPEC = [("conv2d", 4, 3, 1, 1), ("sumpool2d", 2), ("linear", 10)]
INPUT = (2, 16, 16)
T = 8
# C++ optimisation of the Verilator models (after Verilator's default -Os; about 25 %
# faster here, at a longer build)
VERILATOR_CFLAGS = "-O3 -march=native"


def bench_model(seed=0):
    from sim.randmodel import model_from_spec, random_binned
    rng = np.random.default_rng(seed)
    model = model_from_spec(SPEC, rng, input_shape=INPUT, timesteps=T)
    binned = random_binned(rng, INPUT, T, density=0.08)
    return model, binned


def speed_top(model, words, lanes=None, fifo_depth=16):
    """Amaranth stimulus top: ``Network`` fed from a ROM of packed input words."""
    from amaranth.hdl import Module, Signal
    from amaranth.lib import wiring
    from amaranth.lib.memory import Memory
    from amaranth.lib.wiring import Out

    from hw.network import Network

    class SpeedTop(wiring.Component):
        finished: Out(1)
        cycle: Out(32)
        samples: Out(32)

        def __init__(self):
            self.net = Network(model, lanes=lanes, fifo_depth=fifo_depth)
            super().__init__()

        def elaborate(self, platform):
            m = Module()
            net = m.submodules.net = self.net
            width = len(net.inp.payload.as_value())
            rom = m.submodules.rom = Memory(shape=width, depth=len(words), init=words)
            rp = rom.read_port(domain="comb")
            ptr = Signal(range(len(words) + 1))
            n_samples = sum(1 for w in words if (w & 3) == 2)
            m.d.comb += [rp.addr.eq(ptr), net.inp.payload.as_value().eq(rp.data),
                         net.inp.valid.eq(ptr < len(words)),
                         self.cycle.eq(net.cycle), self.samples.eq(net.samples)]
            with m.If(net.inp.valid & net.inp.ready):
                m.d.sync += ptr.eq(ptr + 1)
            m.d.sync += self.finished.eq(net.samples == n_samples)
            return m

    return SpeedTop()


def input_words(model, binned, samples):
    from sim.cycles import input_words as words_of
    from sim.tb.layout import input_layout
    lay = input_layout(16)
    return [lay.pack(kind=k, p=p, y=y, x=x)
            for k, p, y, x in words_of(model, binned, samples=samples)]


# ------------------------------------------------------------------------ cocotb side
try:
    import cocotb
    from cocotb.clock import Clock
    from cocotb.triggers import ClockCycles, RisingEdge

    @cocotb.test()
    async def speed(dut):
        if os.environ.get("SPEED_CLOCK") == "gpi":
            # the top is ``speed_top`` itself: the clock is cocotb's C++ GPI clock (two
            # timed callbacks per cycle, no Python), the reset is set from here
            Clock(dut.clk, 10, unit="ns", impl="gpi").start(start_high=False)
            dut.rst.value = 1
            await ClockCycles(dut.clk, 3)
            dut.rst.value = 0
            await RisingEdge(dut.clk)
        else:
            # the clock and the reset come from the Verilog wrapper (TB_WRAPPER)
            await RisingEdge(dut.started)
        # nothing runs in Python until ``finished`` rises
        c0 = int(dut.cycle.value)
        t0 = time.perf_counter()
        await RisingEdge(dut.finished)
        dt = time.perf_counter() - t0
        cycles = int(dut.cycle.value) - c0
        Path(os.environ["SPEED_OUT"]).write_text(json.dumps({"cycles": cycles, "seconds": dt}))
except ImportError:          # pragma: no cover - cocotb is a dev dependency
    pass


TB_WRAPPER = """
`timescale 1ns/1ps
module speed_tb;
  reg clk = 1'b0;
  reg rst = 1'b1;
  reg started = 1'b0;
  wire finished;
  wire [31:0] cycle;
  wire [31:0] samples;
  always #5 clk = ~clk;
  initial begin
    #25 rst = 1'b0;
    #10 started = 1'b1;
  end
  speed_top dut(.clk(clk), .rst(rst), .finished(finished), .cycle(cycle), .samples(samples));
endmodule
"""


def run_hdl(sim, verilog, workdir, clock="wrapper"):
    """Build and run the cocotb ``speed`` test; ``clock="wrapper"``: the clock is an
    ``always #5`` in a Verilog wrapper (Icarus' fastest; Verilator would need
    ``--timing``); ``clock="gpi"``: the top is ``speed_top`` and the clock is cocotb's
    C++ GPI clock. Verilator builds through ``tests.cocotb.runner.verilator_runner``
    (only the top's ports public, ``-O3``, ``VERILATOR_CFLAGS``; ``--timing`` only with
    the wrapper)."""
    from cocotb_tools.runner import get_runner

    from tests.cocotb.runner import verilator_args, verilator_runner
    workdir = Path(workdir)
    out = workdir / "speed.json"
    os.environ["SPEED_OUT"] = str(out)
    sources = [str(verilog)]
    if clock == "wrapper":
        top = "speed_tb"
        tb = workdir / "speed_tb.v"
        tb.write_text(TB_WRAPPER)
        sources.append(str(tb))
    else:
        top = "speed_top"
    if sim == "verilator":
        runner = verilator_runner()
        build_args = verilator_args(workdir, top, cflags=VERILATOR_CFLAGS)
        if clock == "wrapper":
            build_args += ["--timing", "-CFLAGS", "-std=c++20 -fcoroutines"]
    else:
        runner = get_runner(sim)
        build_args = ["-g2005"]
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    t = time.perf_counter()
    runner.build(sources=sources, hdl_toplevel=top, build_dir=str(workdir),
                 timescale=("1ns", "1ps"), build_args=build_args, always=True,
                 log_file=str(workdir / "build.log"))
    build_s = time.perf_counter() - t
    runner.test(test_module="sim_speed", hdl_toplevel=top, build_dir=str(workdir),
                test_dir=str(workdir), timescale=("1ns", "1ps"), log_file=str(workdir / "sim.log"),
                results_xml=str(workdir / "results.xml"), extra_env={"SPEED_CLOCK": clock})
    r = json.loads(out.read_text())
    r["build_seconds"] = round(build_s, 2)
    r["clock"] = clock
    return r


MAIN_CPP = r"""
#include "Vspeed_top.h"
#include "verilated.h"
#include <chrono>
#include <cstdio>
int main(int argc, char** argv) {
    VerilatedContext ctx;
    ctx.commandArgs(argc, argv);
    Vspeed_top top{&ctx};
    top.clk = 0; top.rst = 1;
    for (int i = 0; i < 4; i++) { top.clk = !top.clk; top.eval(); }
    top.rst = 0;
    unsigned long c0 = top.cycle;
    auto t0 = std::chrono::steady_clock::now();
    while (!top.finished) {
        top.clk = 1; top.eval();
        top.clk = 0; top.eval();
    }
    double dt = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    std::printf("{\"cycles\": %lu, \"seconds\": %.6f}\n", (unsigned long)top.cycle - c0, dt);
    return 0;
}
"""


def run_verilator_bare(verilog, workdir):
    """Verilator without cocotb (a C++ main toggling the clock): no VPI, no public
    signals, the simulator's full speed."""
    import subprocess
    from tests.cocotb.runner import _verilator_env
    _verilator_env()
    workdir = Path(workdir)
    (workdir / "main.cpp").write_text(MAIN_CPP)
    t = time.perf_counter()
    subprocess.run(["verilator", "--cc", "--exe", "--build", "-O3", "-Wno-fatal",
                    "-CFLAGS", VERILATOR_CFLAGS,
                    "--top-module", "speed_top", "-Mdir", "obj", "-o", "speed",
                    "main.cpp", str(verilog)], cwd=workdir, check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    build_s = time.perf_counter() - t
    out = subprocess.run([str(workdir / "obj" / "speed")], cwd=workdir, check=True,
                         capture_output=True, text=True).stdout
    r = json.loads(out.strip().splitlines()[-1])
    r["build_seconds"] = round(build_s, 2)
    return r


def run_amaranth(top):
    from amaranth.sim import Simulator
    res = {}

    async def bench(ctx):
        t0 = time.perf_counter()
        c0 = ctx.get(top.cycle)
        await ctx.tick().until(top.finished)
        res["seconds"] = time.perf_counter() - t0
        res["cycles"] = ctx.get(top.cycle) - c0

    sim = Simulator(top)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    return res


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--samples", type=int, default=20, help="samples for Icarus/Verilator")
    ap.add_argument("--amaranth-samples", type=int, default=2)
    ap.add_argument("--out", default=str(ROOT / "bench" / "results" / "sim_speed.json"))
    args = ap.parse_args(argv)
    from amaranth.back import verilog
    from sim.cycles import HwParams, predict

    model, binned = bench_model()
    words = input_words(model, binned, args.samples)
    rep = predict(model, binned, HwParams(fifo_depth=16), samples=args.samples)
    results = {"model": {"spec": [list(s) for s in SPEC], "input": list(INPUT),
                         "timesteps": T, "input_spikes_per_sample": binned.n_spikes,
                         "samples": args.samples,
                         "cycles_predicted": rep.end - rep.start},
               "host": {"python": platform.python_version(), "machine": platform.machine()}}
    with tempfile.TemporaryDirectory(prefix="sim_speed_") as tmp:
        vpath = Path(tmp) / "speed_top.v"
        vpath.write_text(verilog.convert(speed_top(model, words), name="speed_top",
                                         emit_src=False))
        for sim in ("icarus", "verilator"):
            d = Path(tmp) / sim
            d.mkdir()
            r = run_hdl(sim, vpath, d)
            r["cycles_per_s"] = r["cycles"] / r["seconds"]
            results[sim] = r
            print(f"{sim:10s} {r['cycles']:9d} cycles {r['seconds']:8.2f} s "
                  f"{r['cycles_per_s']:12.0f} cycles/s (build {r['build_seconds']} s)")
        d = Path(tmp) / "verilator_bare"
        d.mkdir()
        r = run_verilator_bare(vpath, d)
        r["cycles_per_s"] = r["cycles"] / r["seconds"]
        results["verilator_bare"] = r
        print(f"{'verilator (C++ main, no cocotb)':10s} {r['cycles']:9d} cycles "
              f"{r['seconds']:8.2f} s {r['cycles_per_s']:12.0f} cycles/s "
              f"(build {r['build_seconds']} s)")
    awords = input_words(model, binned, args.amaranth_samples)
    r = run_amaranth(speed_top(model, awords))
    r["cycles_per_s"] = r["cycles"] / r["seconds"]
    r["samples"] = args.amaranth_samples
    results["amaranth"] = r
    print(f"{'amaranth':10s} {r['cycles']:9d} cycles {r['seconds']:8.2f} s "
          f"{r['cycles_per_s']:12.0f} cycles/s")
    ratio = results["verilator"]["cycles_per_s"] / results["icarus"]["cycles_per_s"]
    results["verilator_over_icarus"] = ratio
    results["verilator_bare_over_icarus"] = (results["verilator_bare"]["cycles_per_s"] /
                                             results["icarus"]["cycles_per_s"])
    results["icarus_over_amaranth"] = results["icarus"]["cycles_per_s"] / r["cycles_per_s"]
    results["goal_verilator_over_icarus"] = 50
    print(f"Verilator / Icarus: {ratio:.1f}x under cocotb, "
          f"{results['verilator_bare_over_icarus']:.1f}x with a C++ main (goal >= 50x); "
          f"Icarus / amaranth.sim: {results['icarus_over_amaranth']:.1f}x")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmpf = out.with_suffix(".json.tmp")
    tmpf.write_text(json.dumps(results, indent=1))
    os.replace(tmpf, out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
