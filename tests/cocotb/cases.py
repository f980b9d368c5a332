"""Random seeded cases for the RTL benches, chosen so that together they cover every
feature the hardware has to get right (checked, not hoped for)."""

import numpy as np

from sim.cycles import HwParams, lanes_of, predict
from sim.randmodel import random_binned, random_model
from sim.reference import run as reference_run

#: what the coverage cases must exercise between them
WANTED = {
    ("type", "conv2d"), ("type", "sumpool2d"), ("type", "linear"),
    ("reset", "subtract"), ("reset", "zero"), ("reset", "none"),
    ("leak", True), ("leak", False),
    ("stride", 1), ("stride", 2), ("stride", 3), ("padding", True),
    ("kernel", 1), ("kernel", "even"), ("kernel", "odd>1"),
    ("per_channel", True), ("bias", True), ("clamp", True),
    ("readout", "spike_count"), ("readout", "membrane"),
    ("repeat", True), ("same_address", True), ("fifo_full", True), ("lanes<C", True),
}


def features(model, binned, params, report, result):
    """Features a case exercises (see :data:`WANTED`)."""
    f = set()
    n = len(model.layers)
    lanes = lanes_of(model, params.lanes)
    for i, l in enumerate(model.layers):
        f.add(("type", l.type))
        if not (model.readout == "membrane" and i == n - 1):
            f.add(("reset", l.reset))
        f.add(("leak", l.beta_num != (1 << l.beta_frac_bits)))
        if l.type == "conv2d":
            f.add(("stride", l.stride))
            f.add(("padding", l.padding > 0))
            k = l.kernel
            f.add(("kernel", 1 if k == 1 else ("even" if k % 2 == 0 else "odd>1")))
        if l.type != "sumpool2d":
            f.add(("per_channel", len(set(np.asarray(l.threshold).tolist())) > 1))
            f.add(("bias", l.bias is not None))
        C = l.out_shape[0]
        if lanes[i] < C:
            f.add(("lanes<C", True))
        if l.type == "linear" and -(-C // lanes[i]) == 1:
            # one state word: consecutive input events hit the same address
            if i == 0:
                per_step = np.diff(np.concatenate([[0], np.cumsum(binned.count)])[binned.step_ptr])
            else:
                sp = result.spikes[model.layers[i - 1].name]
                per_step = sp.reshape(sp.shape[0], -1).sum(axis=1)
            if per_step.size and int(per_step.max()) >= 2:
                f.add(("same_address", True))
    if any(bool(np.any(result.overflow[l.name])) for l in model.layers):
        f.add(("clamp", True))
    f.add(("readout", model.readout))
    if binned.count.size and int(binned.count.max()) > 1:
        f.add(("repeat", True))
    if any(report.blocked):
        f.add(("fifo_full", True))
    return f


def coverage_cases(*, max_cases=6, max_cycles=6000, base_seed=1000):
    """Greedy choice of small random cases until :data:`WANTED` is covered.

    Returns ``(cases, covered)``; each case is ``(seed, model, binned, params)``.
    """
    cases, covered = [], set()
    for seed in range(base_seed, base_seed + 400):
        rng = np.random.default_rng(seed)
        shape = (int(rng.integers(1, 3)), int(rng.integers(4, 9)), int(rng.integers(4, 9)))
        model = random_model(rng, input_shape=shape, timesteps=int(rng.integers(2, 4)))
        binned = random_binned(rng, model.input.shape, model.input.timesteps,
                               model.input.count_clip)
        lanes = [int(rng.integers(1, 4)) if rng.random() < 0.5 else None
                 for _ in model.layers]
        params = HwParams(lanes=lanes, fifo_depth=int(rng.choice([2, 3, 4, 8])))
        result = reference_run(model, binned, backend="numpy")
        rep = predict(model, binned, params, backend="numpy")
        if rep.end - rep.start > max_cycles:
            continue
        f = features(model, binned, params, rep, result) & WANTED
        if f - covered:
            cases.append((seed, model, binned, params))
            covered |= f
        if covered == WANTED or len(cases) >= max_cases:
            break
    return cases, covered


def small_case(seed, **kw):
    rng = np.random.default_rng(seed)
    model = random_model(rng, **kw)
    binned = random_binned(rng, model.input.shape, model.input.timesteps,
                           model.input.count_clip)
    return model, binned
