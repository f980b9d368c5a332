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


#: thresholds of :func:`residual_case`'s layers at its default shape: every layer fires
#: on some steps, none saturates (sim.reference on seed 0: 71, 187, 267, 284, 268, 33
#: spikes of at most 108-432)
RESIDUAL_THRESHOLDS = (290, 270, 120, 360, 330, 5, 10)


def residual_case(seed=0, *, input_shape=(2, 12, 12), channels=4, blocks=2, timesteps=3,
                  classes=5, thresholds=RESIDUAL_THRESHOLDS, readout="membrane",
                  shortcut="identity"):
    """A scaled-down :func:`bench.v2_models.sts_resnet`: a strided conv stem, ``blocks``
    residual blocks (conv 3x3, conv 3x3 plus a shortcut from the block input), a 2x2
    sum pool and a linear classifier (``readout``); ``thresholds`` one per layer
    (``None``: from the fan-in, :func:`sim.randmodel.model_from_spec`). The shortcut
    is the ``identity`` kind, or with ``shortcut="conv1x1"`` a 1x1 conv with the same
    weights on its diagonal (the same sums).
    Returns ``(model, binned)``."""
    from bench.v2_models import sample
    from sim.model import Synapse, validate_model
    from sim.randmodel import model_from_spec
    rng = np.random.default_rng(seed)
    spec = [("conv2d", channels, 3, 2, 1)]
    spec += [("conv2d", channels, 3, 1, 1)] * (2 * blocks)
    spec += [("sumpool2d", 2), ("linear", classes)]
    model = model_from_spec(spec, rng, input_shape=input_shape, timesteps=timesteps,
                            readout=readout, thresholds=thresholds)
    if shortcut not in ("identity", "conv1x1"):
        raise ValueError(f"shortcut: {shortcut!r} is not 'identity' or 'conv1x1'")
    identity = shortcut == "identity"
    for b in range(blocks):
        block_in = model.layers[2 * b]
        if identity:
            skip = Synapse(source=block_in.name, type="identity",
                           weights=rng.integers(1, 8, size=channels), weight_bits=4)
        else:
            w = np.zeros((channels, channels, 1, 1), dtype=np.int64)
            w[np.arange(channels), np.arange(channels), 0, 0] = rng.integers(1, 8, size=channels)
            skip = Synapse(source=block_in.name, type="conv2d", kernel=1, stride=1,
                           padding=0, weights=w, weight_bits=4)
        model.layers[2 * b + 2].synapses.append(skip)
    for layer in model.layers:
        layer.acc_bits = 62
    model = validate_model(model)
    for i, layer in enumerate(model.layers):
        layer.acc_bits = model.required_acc_bits(i)
    return validate_model(model), sample(model, rng, activity=0.15)


def _synapse(rng, source, kind, src_shape, out_channels=None, *, delay=0, taps=1, **geometry):
    """A synapse of ``kind`` (geometry through the registry) with random 6-bit weights,
    mostly excitatory, and its output shape."""
    from sim.model import Synapse
    from sim.registry import KINDS
    k = KINDS[kind]
    in_shape = k.input_shape(src_shape)
    syn = Synapse(source=source, type=kind, delay=delay, taps=taps, in_shape=in_shape,
                  **geometry)
    out_shape = tuple(k.out_shape(syn, in_shape, out_channels or src_shape[0]))
    base = k.weight_shape(syn, in_shape, out_shape)
    if base is not None:
        shape = (taps, *base) if taps > 1 else base
        w = rng.integers(-31, 32, size=shape)
        syn.weights = np.where(rng.random(shape) < 0.7, np.abs(w), w).astype(np.int64)
        syn.weight_bits = 6
    return syn, out_shape


def _graph_model(layers, thresholds, *, input_shape, timesteps, readout):
    from sim.model import InputSpec, Layer, Model, validate_model
    built = []
    for (name, out_shape, synapses, extra), thr in zip(layers, thresholds):
        built.append(Layer(name=name, out_shape=tuple(out_shape), synapses=synapses,
                           bias=None, state_bits=16, acc_bits=62, beta_num=15,
                           beta_frac_bits=4,
                           threshold=np.full(out_shape[0], thr, dtype=np.int64),
                           threshold_per_channel=False, reset="subtract", **extra))
    model = Model(input=InputSpec(shape=tuple(input_shape), dt_us=1000, timesteps=timesteps,
                                  count_clip=1), layers=built, readout=readout)
    for i, layer in enumerate(model.layers):
        layer.acc_bits = model.required_acc_bits(i)
    return validate_model(model)


def delay_case(seed=0, *, taps=4, timesteps=6, thresholds=(150, 40)):
    """A scaled-down :func:`bench.v2_models.delay_net`: 2x8x8 input, one conv synapse
    (2->4, 3x3, stride 2) with ``taps`` taps (delays 0..taps-1), a linear readout to 5
    classes. Returns ``(model, binned)``."""
    from bench.v2_models import sample
    rng = np.random.default_rng(seed)
    sc, shc = _synapse(rng, "input", "conv2d", (2, 8, 8), 4, kernel=3, stride=2, padding=1,
                       taps=taps)
    sl, shl = _synapse(rng, "conv", "linear", shc, 5)
    model = _graph_model([("conv", shc, [sc], {}), ("fc", shl, [sl], {})], thresholds,
                         input_shape=(2, 8, 8), timesteps=timesteps, readout="spike_count")
    return model, sample(model, rng, activity=0.15)


def recurrent_case(seed=0, *, current=False, timesteps=6, thresholds=(40, 1)):
    """A scaled-down :func:`bench.v2_models.recurrent_net`: 4 input channels, 8 recurrent
    neurons (a linear input synapse and a linear recurrent synapse with delay 1; with
    ``current`` current-based), a linear readout to 3 outputs (membrane readout).
    Returns ``(model, binned)``."""
    from bench.v2_models import sample
    from sim.model import Current
    rng = np.random.default_rng(seed)
    si, sh = _synapse(rng, "input", "linear", (4, 1, 1), 8)
    sr, _ = _synapse(rng, "rec", "linear", sh, 8, delay=1)
    so, sho = _synapse(rng, "rec", "linear", sh, 3)
    extra = {"current": Current(beta_num=12, beta_frac_bits=4, state_bits=16)} if current \
        else {}
    model = _graph_model([("rec", sh, [si, sr], extra), ("out", sho, [so], {})], thresholds,
                         input_shape=(4, 1, 1), timesteps=timesteps, readout="membrane")
    return model, sample(model, rng, activity=0.5)


def graph_case(seed):
    """A random same-step v2 graph (:func:`sim.randmodel.random_graph` cut down by
    :func:`sim.randmodel.same_step_graph` to the kinds with a hardware engine) and a
    sample, drawn as ``tests/hw/test_network.py: dag_case`` draws them; ``None`` when the
    draw has no such graph."""
    import hw.network  # noqa: F401  (attaches the engines to the registry)
    from sim.randmodel import random_graph, same_step_graph
    from sim.registry import KINDS
    rng = np.random.default_rng(seed)
    kinds = {k for k in KINDS.names() if KINDS[k].has_part("hw.engine")}
    model = same_step_graph(random_graph(rng, n_layers=int(rng.integers(2, 5))), kinds=kinds)
    if model is None:
        return None
    return model, random_binned(rng, model.input.shape, model.input.timesteps,
                                model.input.count_clip)
