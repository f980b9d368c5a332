"""Random valid models and event streams, for tests and benchmarks everywhere.

:func:`random_graph` draws version-2 graphs (residual joins, forks, recurrence, delays
and taps, multi-spike, ``v_min``, current-based layers, identity synapses).
:func:`random_model` draws a small network that obeys every rule of the contract
(shapes chain, weights fit their width, ``acc_bits`` is exactly the worst case) and
covers every feature: all layer types, kernels 1-7, strides 1-3, padding, bits 2-16,
every reset mode, leak or none, bias or none, scalar or per-channel thresholds.
Thresholds are scaled to the fan-in so that some neurons fire and some do not.
"""

from __future__ import annotations

import numpy as np

from .events import BinnedEvents
from .model import InputSpec, Layer, Model, RESETS, conv_out_size, validate_model

__all__ = ["random_layer", "random_model", "random_binned", "model_from_spec", "random_graph",
           "same_step_graph"]


def _pick(rng, values):
    return values[int(rng.integers(len(values)))]


def random_layer(rng, name, kind, in_shape, *, count_clip=1, out_channels=None,
                 kernel=None, stride=None, padding=None, n_out=None, weight_bits=None,
                 state_bits=None, reset=None, leak=None, bias=None, per_channel=None,
                 fire_scale=None):
    """One random layer of ``kind`` on ``in_shape``; any keyword fixes that choice."""
    weight_bits = weight_bits or int(rng.integers(2, 17))
    state_bits = state_bits or int(rng.integers(max(4, weight_bits), 25))
    reset = reset or _pick(rng, RESETS)
    leak = bool(rng.integers(2)) if leak is None else leak
    if leak:
        frac = int(rng.integers(0, 9))
        num = int(rng.integers(0, 1 << frac)) if frac else 0
    else:
        frac = int(rng.integers(0, 5))
        num = 1 << frac
    if kind == "conv2d":
        C, H, W = in_shape
        kmax = max(1, min(7, H + 2 * 3, W + 2 * 3))
        K = kernel or int(rng.integers(1, kmax + 1))
        P = int(rng.integers(0, min(3, K - 1) + 1)) if padding is None else padding
        S = stride or int(rng.integers(1, 4))
        Ho, Wo = conv_out_size(H, K, S, P), conv_out_size(W, K, S, P)
        if Ho < 1 or Wo < 1:
            K, P = 1, 0
            Ho, Wo = conv_out_size(H, 1, S, 0), conv_out_size(W, 1, S, 0)
        Co = out_channels or int(rng.integers(1, 5))
        wshape = (Co, C, K, K)
        out_shape = (Co, Ho, Wo)
    elif kind == "linear":
        N = int(np.prod(in_shape))
        Co = n_out or int(rng.integers(1, 9))
        wshape = (Co, N)
        out_shape = (Co,)
        K = S = P = None
        in_shape = (N,)
    elif kind == "sumpool2d":
        C, H, W = in_shape
        K = kernel or int(rng.integers(1, max(1, min(3, H, W)) + 1))
        S, P = K, 0
        Co = C
        out_shape = (C, H // K, W // K)
        wshape = None
        weight_bits = None
    else:
        raise ValueError(f"unknown layer kind {kind!r}")
    weights = None
    if wshape is not None:
        lim = (1 << (weight_bits - 1)) - 1
        weights = rng.integers(-lim, lim + 1, size=wshape).astype(np.int64)
        # a positive bias keeps some neurons active with sparse inputs
        weights = np.where(rng.random(wshape) < 0.6, np.abs(weights), weights)
    smax = (1 << (state_bits - 1)) - 1
    if bias is None:
        bias = bool(rng.integers(2))
    b = None
    if bias and wshape is not None:                       # a kind without weights has no bias
        blim = max(1, min(smax, 4 << max(0, weight_bits - 2)))
        b = rng.integers(-blim, blim + 1, size=Co).astype(np.int64)
    per_channel = bool(rng.integers(2)) if per_channel is None else per_channel
    if wshape is None:                                    # sum pool: the window's count
        typical = K * K
    else:
        typical = max(1, (1 << (weight_bits - 1)) // 2)
    fire_scale = fire_scale if fire_scale is not None else rng.uniform(0.3, 3.0)
    base = max(1, min(smax, int(typical * fire_scale)))
    if per_channel:
        thr = rng.integers(max(1, base // 2), min(smax, base * 2) + 1, size=Co).astype(np.int64)
    else:
        thr = np.full(Co, base, dtype=np.int64)
    layer = Layer(name=name, type=kind, in_shape=tuple(in_shape), out_shape=tuple(out_shape),
                  kernel=K, stride=S, padding=P, weights=weights, bias=b,
                  weight_bits=weight_bits, state_bits=state_bits, acc_bits=62,
                  beta_num=num, beta_frac_bits=frac, threshold=thr,
                  threshold_per_channel=per_channel, reset=reset)
    layer.acc_bits = layer.required_acc_bits(count_clip)
    # a deliberately small state width must still hold the weights' effect: keep the
    # threshold inside the state range
    return layer


def random_model(rng, *, input_shape=None, n_layers=None, kinds=None, timesteps=None,
                 count_clip=None, readout=None, **layer_kw):
    """A random valid :class:`Model`.

    Parameters
    ----------
    rng : numpy.random.Generator
    input_shape : tuple, optional
        ``(P, H, W)``; drawn small when omitted.
    n_layers : int, optional
    kinds : sequence of str, optional
        Layer types in order (overrides ``n_layers``). A ``linear`` layer may follow
        anything (the flatten is implicit); spatial layers may not follow a linear one.
    timesteps, count_clip : int, optional
    readout : str, optional
    **layer_kw
        Passed to every :func:`random_layer` call (e.g. ``reset="zero"``).
    """
    if input_shape is None:
        input_shape = (int(rng.integers(1, 3)), int(rng.integers(3, 13)), int(rng.integers(3, 13)))
    T = timesteps or int(rng.integers(1, 7))
    clip = count_clip or int(rng.integers(1, 4))
    if kinds is None:
        n = n_layers or int(rng.integers(1, 4))
        kinds = []
        spatial = True
        for i in range(n):
            if spatial and i < n - 1:
                kind = _pick(rng, ("conv2d", "conv2d", "sumpool2d", "linear"))
            elif spatial:
                kind = _pick(rng, ("conv2d", "linear", "sumpool2d"))
            else:
                kind = "linear"
            spatial = spatial and kind != "linear"
            kinds.append(kind)
    layers = []
    shape = tuple(input_shape)
    for i, kind in enumerate(kinds):
        if kind == "sumpool2d" and min(shape[1:]) < 1:
            kind = "conv2d"
        layer = random_layer(rng, f"l{i}_{kind}", kind, shape,
                             count_clip=clip if i == 0 else 1, **layer_kw)
        layers.append(layer)
        shape = layer.out_shape
    readout = readout or _pick(rng, ("spike_count", "spike_count", "membrane"))
    model = Model(input=InputSpec(shape=tuple(input_shape), dt_us=1000, timesteps=T,
                                  count_clip=clip), layers=layers, readout=readout)
    return validate_model(model)


def random_binned(rng, shape, timesteps, count_clip=1, density=None):
    """Random per-step input counts (``BinnedEvents``), including border pixels."""
    density = rng.uniform(0.02, 0.5) if density is None else density
    frames = (rng.random((timesteps, *shape)) < density).astype(np.int64)
    if count_clip > 1:
        frames *= rng.integers(1, count_clip + 1, size=frames.shape)
    return BinnedEvents.from_frames(frames)


def model_from_spec(spec, rng, *, input_shape, timesteps, count_clip=1, readout="spike_count",
                    dt_us=1000, weight_bits=8, state_bits=16, reset="subtract",
                    beta=(15, 4), thresholds=None):
    """A model with a fixed topology and random weights.

    ``spec`` is a list of tuples: ``("conv2d", C_out, K, S, P)``, ``("sumpool2d", K)``,
    ``("linear", N_out)``. ``thresholds`` is one integer per layer (default: from the
    fan-in). Used by benchmarks (the event-camera seed network) and hardware tests.
    """
    layers = []
    shape = tuple(input_shape)
    for i, item in enumerate(spec):
        kind = item[0]
        kw = dict(weight_bits=weight_bits, state_bits=state_bits, reset=reset, bias=False,
                  per_channel=False, leak=True)
        if kind == "conv2d":
            _, co, k, s, p = item
            kw.update(out_channels=co, kernel=k, stride=s, padding=p)
        elif kind == "sumpool2d":
            kw.update(kernel=item[1])
        else:
            kw.update(n_out=item[1])
        layer = random_layer(rng, f"{kind.replace('2d', '')}{i + 1}", kind, shape,
                             count_clip=count_clip if i == 0 else 1, **kw)
        layer.beta_num, layer.beta_frac_bits = beta
        if thresholds is not None:
            layer.threshold = np.full(layer.c_out, int(thresholds[i]), dtype=np.int64)
        layers.append(layer)
        shape = layer.out_shape
    model = Model(input=InputSpec(shape=tuple(input_shape), dt_us=dt_us, timesteps=timesteps,
                                  count_clip=count_clip), layers=layers, readout=readout)
    return validate_model(model)


# -- version-2 graphs ---------------------------------------------------------------------

def _random_weights(rng, shape, weight_bits):
    lim = (1 << (weight_bits - 1)) - 1
    w = rng.integers(-lim, lim + 1, size=shape).astype(np.int64)
    # mostly excitatory, so that spikes travel through the graph
    return np.where(rng.random(shape) < 0.65, np.abs(w), w)


def _random_synapse(rng, kind, source, src_shape, out_shape, *, delay, taps, weight_bits,
                    max_channels=3):
    """A random synapse of ``kind`` from ``src_shape`` (to ``out_shape`` when given) and
    the layer shape it makes, or ``None`` when the kind cannot make that shape."""
    from .model import Synapse
    from .registry import KINDS
    drawn = KINDS[kind].random_geometry(rng, tuple(src_shape), out_shape, max_channels)
    if drawn is None:
        return None
    K, S, P, out_shape = drawn
    in_shape = KINDS[kind].input_shape(src_shape)
    syn = Synapse(source=source, type=kind, kernel=K, stride=S, padding=P, delay=delay,
                  taps=taps, in_shape=in_shape)
    base = KINDS[kind].weight_shape(syn, in_shape, tuple(out_shape))
    if base is not None:
        syn.weight_bits = weight_bits
        shape = (taps, *base) if taps > 1 else base
        syn.weights = _random_weights(rng, shape, weight_bits)
        if taps > 1 and rng.random() < 0.5:
            # per-synapse heterogeneous delays: one non-zero tap per weight
            keep = rng.integers(0, taps, size=base)
            mask = np.arange(taps).reshape((taps,) + (1,) * len(base)) == keep
            syn.weights = np.where(mask, syn.weights, 0)
    return syn, tuple(out_shape)


def random_graph(rng, *, input_shape=None, n_layers=None, timesteps=None, count_clip=None,
                 readout=None, max_channels=3, p_extra=0.6, p_backward=0.35):
    """A random valid version-2 graph (small: a plain-Python oracle runs it in well under
    a second).

    Every layer has a primary synapse from the input or an earlier layer (any kind that
    fits: conv2d, sumpool2d, linear, identity) and, with probability ``p_extra`` each, up
    to two more: residual joins from earlier layers, forks (a source read by several
    layers), self recurrence, and backward recurrence from later layers (added with
    probability ``p_backward`` once all layers exist); recurrent synapses have
    ``delay >= 1``, others ``delay >= 0``, any synapse 1-3 taps (sometimes one non-zero
    tap per weight: heterogeneous delays). Neurons draw ``spike_limit`` 1-3, ``v_min``,
    current-based state, every reset mode, leak or none, bias or none, scalar or
    per-channel thresholds. ``acc_bits`` is exactly the contract's worst case.

    Parameters
    ----------
    rng : numpy.random.Generator
    input_shape : tuple, optional
    n_layers : int, optional
    timesteps, count_clip : int, optional
    readout : str, optional
    max_channels : int
        Largest channel count of a spatial layer.
    p_extra, p_backward : float
        Probabilities of extra synapses and of backward recurrent synapses.

    Returns
    -------
    Model
    """
    from .model import Current, INPUT
    from .registry import KINDS

    if input_shape is None:
        input_shape = (int(rng.integers(1, 3)), int(rng.integers(2, 7)),
                       int(rng.integers(2, 7)))
    T = timesteps or int(rng.integers(2, 7))
    clip = count_clip or int(rng.integers(1, 4))
    n = n_layers or int(rng.integers(1, 5))
    shapes = {INPUT: tuple(input_shape)}
    layers = []

    def extra(layer_shape, name, allow_self):
        """Draw one more synapse into a layer of ``layer_shape``; ``None`` if none fits."""
        sources = list(shapes) + ([name] if allow_self else [])
        for _ in range(6):
            src = sources[int(rng.integers(len(sources)))]
            src_shape = layer_shape if src == name else shapes[src]
            kind = _pick(rng, KINDS.names())
            delay = int(rng.integers(1, 3)) if src == name else int(rng.integers(0, 3))
            drawn = _random_synapse(rng, kind, src, src_shape, layer_shape, delay=delay,
                                    taps=int(rng.integers(1, 4)),
                                    weight_bits=int(rng.integers(2, 7)))
            if drawn is not None:
                return drawn[0]
        return None

    for i in range(n):
        name = f"g{i}"
        # the primary synapse decides the layer's shape
        src = _pick(rng, list(shapes)[-2:] if len(shapes) > 1 else [INPUT])
        src_shape = shapes[src]
        drawn = None
        while drawn is None:                 # every kind can start from some shape
            drawn = _random_synapse(rng, _pick(rng, KINDS.names()), src, src_shape, None,
                                    delay=int(rng.integers(0, 2)) * int(rng.integers(0, 3)),
                                    taps=_pick(rng, (1, 1, 2, 3)),
                                    weight_bits=int(rng.integers(2, 9)),
                                    max_channels=max_channels)
        synapses = [drawn[0]]
        out_shape = drawn[1]
        for _ in range(2):
            if rng.random() < p_extra:
                syn = extra(out_shape, name, allow_self=True)
                if syn is not None:
                    synapses.append(syn)
        state_bits = int(rng.integers(4, 17))
        smax = (1 << (state_bits - 1)) - 1
        reset = _pick(rng, RESETS)
        frac = int(rng.integers(0, 5))
        num = int(rng.integers(0, (1 << frac) + 1))
        Co = out_shape[0]
        bias = None
        if rng.random() < 0.4:
            blim = min(smax, 6)
            bias = rng.integers(-blim, blim + 1, size=Co).astype(np.int64)
        base = max(1, min(smax, int(rng.integers(1, 12))))
        if rng.random() < 0.5:
            thr = rng.integers(max(1, base // 2), min(smax, base * 2) + 1, size=Co)
            per_channel = True
        else:
            thr = np.full(Co, base)
            per_channel = False
        current = None
        if rng.random() < 0.3:
            cfrac = int(rng.integers(0, 4))
            current = Current(beta_num=int(rng.integers(0, (1 << cfrac) + 1)),
                              beta_frac_bits=cfrac, state_bits=int(rng.integers(3, 13)))
        v_min = None
        if rng.random() < 0.35:
            v_min = -int(rng.integers(0, smax + 2))
        layer = Layer(name=name, out_shape=out_shape, synapses=synapses, bias=bias,
                      state_bits=state_bits, acc_bits=62, beta_num=num, beta_frac_bits=frac,
                      threshold=thr.astype(np.int64), threshold_per_channel=per_channel,
                      reset=reset, spike_limit=_pick(rng, (1, 1, 2, 3)), v_min=v_min,
                      current=current)
        layers.append(layer)
        shapes[name] = out_shape
    # backward recurrence: a later layer feeds an earlier one, one step or more later
    for i, layer in enumerate(layers[:-1]):
        if rng.random() < p_backward:
            later = layers[int(rng.integers(i + 1, len(layers)))]
            for _ in range(4):
                drawn = _random_synapse(rng, _pick(rng, KINDS.names()), later.name,
                                        later.out_shape, layer.out_shape,
                                        delay=int(rng.integers(1, 3)),
                                        taps=int(rng.integers(1, 3)),
                                        weight_bits=int(rng.integers(2, 7)))
                if drawn is not None:
                    layer.synapses.append(drawn[0])
                    break
    readout = readout or _pick(rng, ("spike_count", "spike_count", "membrane"))
    model = Model(input=InputSpec(shape=tuple(input_shape), dt_us=1000, timesteps=T,
                                  count_clip=clip), layers=layers, readout=readout)
    for i, layer in enumerate(layers):
        layer.acc_bits = model.required_acc_bits(i)
    return validate_model(model)


def same_step_graph(model, *, kinds=None, plain=True):
    """``model`` (a :func:`random_graph`) cut down to same-step synapses: every
    synapse from the input or an earlier layer gets delay 0 and one tap (tap 0's
    weights), recurrent synapses (from the layer itself or a later one) and synapses of
    a kind not in ``kinds`` are dropped; with ``plain``, neurons become version-1 ones
    (``spike_limit`` 1, no ``v_min``, no current). ``acc_bits`` is set to the worst
    case again. Returns a new validated model, or ``None`` when a layer is left without
    a synapse or no synapse reads the input (a DAG of forks and joins otherwise).
    """
    import copy

    from .model import INPUT
    model = copy.deepcopy(model)
    order = {layer.name: i for i, layer in enumerate(model.layers)}
    for i, layer in enumerate(model.layers):
        keep = []
        for syn in layer.synapses:
            src = model.source_of(i, syn)
            if src != INPUT and order[src] >= i:
                continue
            if kinds is not None and syn.type not in kinds:
                continue
            if syn.taps > 1:
                syn.weights = None if syn.weights is None else syn.weights[0].copy()
            syn.delay, syn.taps = 0, 1
            keep.append(syn)
        if not keep:
            return None
        layer.synapses = keep
        if plain:
            layer.spike_limit, layer.v_min, layer.current = 1, None, None
    if not any(model.source_of(i, syn) == INPUT
               for i, layer in enumerate(model.layers) for syn in layer.synapses):
        return None
    for i, layer in enumerate(model.layers):
        layer.acc_bits = model.required_acc_bits(i)
    return validate_model(model)


# -- command line: a random v2 graph and a sample for it ---------------------------------------

PROG = "python -m sim.randmodel"


def main(argv=None):
    """``python -m sim.randmodel --seed N --model DIR --events FILE.npz``: write a random
    version-2 graph (:func:`random_graph`) as a model directory and a random event sample
    that fits its input, for trying ``python -m sim.run`` on a graph. Neither target may
    exist (nothing is replaced)."""
    from pathlib import Path

    from .cli import ArgumentParser, CliError, atomic_path
    from .events import make_events, save_events
    from .model import save_model

    p = ArgumentParser(prog=PROG, description="Write a random version-2 graph model "
                       "directory and an event sample for it.")
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    p.add_argument("--layers", type=int, default=4, help="number of layers (default 4)")
    p.add_argument("--model", required=True, type=Path, help="model directory to create")
    p.add_argument("--events", required=True, type=Path, help="event sample (.npz) to write")
    args = p.parse_args(argv)
    if not 1 <= args.layers <= 16:
        raise CliError(f"--layers: {args.layers} is outside 1..16")
    if args.seed < 0:
        raise CliError(f"--seed: {args.seed} must not be negative")
    for opt, path in (("--model", args.model), ("--events", args.events)):
        if path.exists() or path.is_symlink():
            raise CliError(f"{opt}: {path} already exists (nothing is replaced)")
        if not path.parent.is_dir():
            raise CliError(f"{opt}: {path}: the directory {path.parent} does not exist")
    if args.events.suffix != ".npz":
        raise CliError(f"--events: {args.events}: expected a .npz file name")
    rng = np.random.default_rng(args.seed)
    model = random_graph(rng, n_layers=args.layers, input_shape=(2, 8, 8), timesteps=8,
                         count_clip=2, readout="spike_count")
    events = make_events(model.input.shape, 400, model.input.timesteps * model.input.dt_us,
                         rng)
    with atomic_path(args.events, suffix=".npz") as tmp:
        save_events(tmp, events)
    save_model(model, args.model, overwrite=False)
    kinds = sorted({s.type for layer in model.layers for s in layer.synapses})
    print(f"{args.model}: {len(model.layers)} layers, "
          f"{sum(len(layer.synapses) for layer in model.layers)} synapses "
          f"({', '.join(kinds)}); {args.events}: {len(events)} events")
    return 0


if __name__ == "__main__":
    from .cli import run_main
    run_main(main, prog=PROG)
