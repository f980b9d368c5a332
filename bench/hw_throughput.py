"""Throughput of the layer engines in simulation (amaranth.sim), on event streams.

For each layer (the event-camera network's four convolutions and its linear layer, the
784-128-10 network's hidden layer) and several lane counts ``L``, one step of input
events is queued in front of the layer (its input is valid every cycle: a full FIFO) and
the sink is always ready. Measured:

* ``cycles_per_event`` against the number of valid positions x groups of each event: the
  engine must spend exactly that many cycles (no bubbles): ``bubbles`` counts the cycles
  between the first and the last update in which no update was issued;
* ``synops_per_cycle``: weight additions into real (not padding) lanes per accumulation
  cycle, and ``lane_busy`` = synops / (L x cycles) (goal: >= 0.8 while events wait);
* the sweep: neurons per cycle. With spikes to emit the sweep is bound by the one-event-
  per-cycle output; a second table runs the sweep with unreachable thresholds, where it
  takes exactly ``D + SWEEP_OVERHEAD`` cycles (``D + 7``, docs/architecture.md) for
  ``D = neurons / L`` words (``L`` neurons per cycle).

Finally the whole event-camera network runs three steps of a moving-edge stream and, per
layer, ``lane_busy_while_waiting`` = synaptic operations / (``L`` x cycles in which events
were waiting in front of the layer while its core accumulated).

Events: a generated moving-edge stream (``sim.events.make_events`` when it fits the shape,
else a random frame) binned with the model's rules; for deeper layers random spikes of the
density that layer sees.

Run: ``python bench/hw_throughput.py``; prints a table and writes
``bench/results/hw_throughput.json``.
"""

import json
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from amaranth.sim import Simulator  # noqa: E402

from hw.layer import LayerEngine  # noqa: E402
from hw.stream import END_STEP, SPIKE, shape3  # noqa: E402
from sim.randmodel import model_from_spec  # noqa: E402

sys.path.insert(0, str(ROOT / "bench"))


#: Cycles a spike-free sweep of ``D`` words takes beyond ``D``: the end-of-step token is
#: offered ``D + 7`` cycles after the core accepted it (docs/architecture.md, neuron core).
SWEEP_OVERHEAD = 7

def pack(layout, **fields):
    word = 0
    for name, value in fields.items():
        f = layout[name]
        word |= (int(value) & ((1 << f.width) - 1)) << f.offset
    return word


def positions(layer, c, y, x):
    if layer.type == "linear":
        return 1
    K, S, P = layer.kernel, layer.stride, layer.padding
    _, Ho, Wo = layer.out_shape
    ny = sum(1 for oy in range(Ho) if 0 <= y + P - oy * S < K)
    nx = sum(1 for ox in range(Wo) if 0 <= x + P - ox * S < K)
    return ny * nx


def measure(layer, in_shape, lanes, events):
    """Simulate one step; return the accumulation and sweep figures."""
    dut = LayerEngine(layer, lanes, in_shape=in_shape)
    lay = dut.inp.payload.shape()
    words = [pack(lay, kind=SPIKE, c=c, y=y, x=x) for c, y, x in events]
    words.append(pack(lay, kind=END_STEP))
    C = shape3(layer.out_shape)[0]
    G, L = dut.G, dut.L
    real_lanes = [min(L, C - g * L) for g in range(G)]
    rec = {"upd_cycles": [], "synops": 0, "tok_in": None, "tok_out": None, "spikes": 0}
    core = dut.core

    async def bench(ctx):
        ctx.set(dut.out.ready, 1)
        i = 0
        cycle = 0
        while rec["tok_out"] is None:
            ctx.set(dut.inp.valid, i < len(words))
            if i < len(words):
                ctx.set(dut.inp.payload.as_value(), words[i])
            _, _, iv, ir, uv, ur, uk, usa, ov, ok = await ctx.tick().sample(
                dut.inp.valid, dut.inp.ready, core.upd.valid, core.upd.ready,
                core.upd.payload.kind, core.upd.payload.sa, dut.out.valid,
                dut.out.payload.kind)
            if iv and ir:
                i += 1
            if uv and ur:
                if uk == SPIKE:
                    rec["upd_cycles"].append(cycle)
                    rec["synops"] += real_lanes[usa % G]
                else:
                    rec["tok_in"] = cycle
            if ov:
                if ok == SPIKE:
                    rec["spikes"] += 1
                elif ok == END_STEP:
                    rec["tok_out"] = cycle
            cycle += 1

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    t = time.time()
    sim.run()
    wall = time.time() - t
    cyc = rec["upd_cycles"]
    first, last = cyc[0], cyc[-1]
    span = last - first + 1
    want = sum(positions(layer, *e) for e in events) * G
    sweep = rec["tok_out"] - rec["tok_in"]
    return {
        "layer": layer.name, "lanes": L, "groups": G, "events": len(events),
        "updates": len(cyc), "expected_updates": want, "accum_cycles": span,
        "bubbles": span - len(cyc),
        "cycles_per_event": span / len(events),
        "positions_per_event": want / G / len(events),
        "synops": rec["synops"], "synops_per_cycle": rec["synops"] / span,
        "lane_busy": rec["synops"] / (L * span),
        "sweep_cycles": sweep, "neurons": layer.n_out, "spikes": rec["spikes"],
        "neurons_per_sweep_cycle": layer.n_out / sweep, "sim_seconds": round(wall, 1),
    }


def measure_network(model, frames_events, lanes=None, fifo_depth=16):
    """Run the whole network on per-step event lists; per layer, count the cycles in which
    events were waiting (FIFO not empty or engine busy) while the core accumulated, the
    update cycles among them and the synaptic operations into real lanes."""
    from hw.network import Network
    from hw.stream import END_SAMPLE
    dut = Network(model, lanes=lanes, fifo_depth=fifo_depth)
    sim = Simulator(dut)
    lay = dut.inp.payload.shape()
    words = []
    for ev in frames_events:
        words += [pack(lay, kind=SPIKE, p=c, y=y, x=x) for c, y, x in ev]
        words.append(pack(lay, kind=END_STEP))
    words.append(pack(lay, kind=END_SAMPLE))
    n = len(dut.layers)
    waiting = [0] * n
    upd = [0] * n
    synops = [0] * n
    real = []
    mon = []
    for l, f in zip(dut.layers, dut.fifos):
        C = shape3(l.layer.out_shape)[0]
        real.append([min(l.L, C - g * l.L) for g in range(l.G)])
        mon += [f.level, l.core.idle, l.core.upd.valid, l.core.upd.payload.kind,
                l.core.upd.payload.sa]
    state = {"cycles": 0}

    async def bench(ctx):
        i = 0
        done = False
        while not done:
            ctx.set(dut.inp.valid, i < len(words))
            if i < len(words):
                ctx.set(dut.inp.payload.as_value(), words[i])
            vals = await ctx.tick().sample(dut.inp.valid, dut.inp.ready, dut.done, *mon)
            state["cycles"] += 1
            i += vals[2] and vals[3]
            done = vals[4]
            for li in range(n):
                level, idle, uv, uk, usa = vals[5 + 5 * li:10 + 5 * li]
                if not idle:
                    continue
                if uv and uk == SPIKE:
                    upd[li] += 1
                    synops[li] += real[li][usa % dut.layers[li].G]
                    waiting[li] += 1
                elif level:
                    waiting[li] += 1

    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    t = time.time()
    sim.run()
    out = []
    for li, l in enumerate(dut.layers):
        out.append({"layer": l.layer.name, "lanes": l.L, "updates": upd[li],
                    "synops": synops[li], "waiting_accum_cycles": waiting[li],
                    "lane_busy_while_waiting": synops[li] / max(1, l.L * waiting[li])})
    return {"layers": out, "cycles": state["cycles"], "sim_seconds": round(time.time() - t, 1)}


def edge_events(shape, n, rng):
    """A moving bar seen by an event camera: events along a line, both polarities."""
    C, H, W = shape
    out = set()
    angle = rng.uniform(0, np.pi)
    for t in range(n * 3):
        if len(out) >= n:
            break
        s = rng.uniform(-0.5, 0.5) * min(H, W)
        off = (t / (n * 3)) * W - W / 2
        y = int(H / 2 + s * np.sin(angle) + off * np.cos(angle))
        x = int(W / 2 + s * np.cos(angle) - off * np.sin(angle))
        if 0 <= y < H and 0 <= x < W:
            out.add((int(rng.integers(C)), y, x))
    ev = sorted(out)
    rng.shuffle(ev)
    return ev


def random_events(shape, n, rng):
    C, H, W = shape
    flat = rng.choice(C * H * W, size=min(n, C * H * W), replace=False)
    return [(int(f // (H * W)), int(f // W % H), int(f % W)) for f in flat]


def main():
    rng = np.random.default_rng(0)
    camera = model_from_spec([("conv2d", 4, 5, 2, 2), ("conv2d", 8, 5, 2, 2),
                              ("conv2d", 8, 3, 2, 1), ("conv2d", 16, 3, 2, 1),
                              ("linear", 11)], rng, input_shape=(2, 128, 128), timesteps=8)
    digits = model_from_spec([("linear", 128), ("linear", 10)], rng, input_shape=(1, 28, 28),
                             timesteps=8, weight_bits=6, state_bits=16)
    cases = []
    shape = tuple(camera.input.shape)
    for i, layer in enumerate(camera.layers):
        C = shape3(layer.out_shape)[0]
        n = (400, 300, 150, 80, 60)[i]
        ev = edge_events(shape, n, rng) if i == 0 else random_events(shape, n, rng)
        for L in sorted({C, max(1, C // 2), 3}):
            cases.append((layer, shape, L, ev))
        shape = tuple(layer.out_shape)
    ev = random_events((1, 28, 28), 100, rng)
    for L in (3, 6, 12):
        cases.append((digits.layers[0], (1, 28, 28), L, ev))
    results = []
    print(f"{'layer':8} {'L':>3} {'G':>3} {'events':>6} {'cyc/ev':>7} {'pos*G/ev':>8} "
          f"{'bubbles':>7} {'synops/cyc':>10} {'lane busy':>9} {'sweep cyc':>9} {'n/cyc':>6}")
    for layer, shape, L, ev in cases:
        r = measure(layer, shape, L, ev)
        results.append(r)
        assert r["updates"] == r["expected_updates"], r
        print(f"{r['layer']:8} {L:3d} {r['groups']:3d} {r['events']:6d} "
              f"{r['cycles_per_event']:7.2f} {r['positions_per_event'] * r['groups']:8.2f} "
              f"{r['bubbles']:7d} {r['synops_per_cycle']:10.2f} {r['lane_busy']:9.1%} "
              f"{r['sweep_cycles']:9d} {r['neurons_per_sweep_cycle']:6.2f}")
    # the sweep alone: thresholds out of reach (no spike to emit), L neurons per cycle
    from dataclasses import replace
    sweeps = []
    print(f"{'layer':8} {'L':>3} {'D':>5} {'neurons':>7} {'sweep cyc':>9} {'D+7':>5} {'n/cyc':>6}")
    for layer, shape, L in [(camera.layers[0], (2, 128, 128), 4),
                            (camera.layers[3], tuple(camera.layers[2].out_shape), 16),
                            (digits.layers[0], (1, 28, 28), 12)]:
        quiet = replace(layer, threshold=np.full_like(layer.threshold, layer.state_max))
        r = measure(quiet, shape, L, random_events(shape, 5, rng))
        D = r["neurons"] // L if r["groups"] == 1 else -(-shape3(layer.out_shape)[0] // L) * \
            (r["neurons"] // shape3(layer.out_shape)[0])
        r["D"] = D
        sweeps.append(r)
        print(f"{r['layer']:8} {L:3d} {D:5d} {r['neurons']:7d} {r['sweep_cycles']:9d} {D + SWEEP_OVERHEAD:5d} "
              f"{r['neurons_per_sweep_cycle']:6.2f}")
    # whole network on a moving-edge stream: lanes busy while events wait
    steps = [edge_events((2, 128, 128), 600, rng) for _ in range(3)]
    net = measure_network(camera, steps)
    print(f"network run: {net['cycles']} cycles for 3 steps ({net['sim_seconds']} s simulated)")
    print(f"{'layer':8} {'L':>3} {'updates':>7} {'synops':>7} {'wait cyc':>8} {'lane busy':>9}")
    for r in net["layers"]:
        print(f"{r['layer']:8} {r['lanes']:3d} {r['updates']:7d} {r['synops']:7d} "
              f"{r['waiting_accum_cycles']:8d} {r['lane_busy_while_waiting']:9.1%}")
    summary = {
        "no_bubbles": all(r["bubbles"] == 0 for r in results),
        "cycles_equal_positions": all(abs(r["cycles_per_event"] - r["positions_per_event"] *
                                          r["groups"]) < 1e-9 for r in results),
        "min_lane_busy_at_default_lanes": min(r["lane_busy"] for r in results
                                              if r["groups"] == 1),
        "goal_lane_busy": 0.8,
        "sweep_overhead": SWEEP_OVERHEAD,
        "sweep_is_D_plus_overhead_without_spikes": all(
            r["sweep_cycles"] == r["D"] + SWEEP_OVERHEAD for r in sweeps),
        "network_min_lane_busy_while_waiting": min(
            r["lane_busy_while_waiting"] for r in net["layers"] if r["updates"]),
    }
    print(json.dumps(summary))
    out = ROOT / "bench" / "results" / "hw_throughput.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"cases": results, "sweeps": sweeps, "network": net, "summary": summary}, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
