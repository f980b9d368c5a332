"""A deliberately plain second copy of the fixed-point contract, for tests only.

This is the one place outside ``sim.reference`` where the integer rules are written
down as code (docs/architecture.md: "the plain oracle in tests is the one deliberate
second copy"). It is written from the contract (docs/semantics.md,
/work/shared/CONTRACT.md, versions 1 and 2), not from the reference, and on purpose
looks nothing like it: one event at a time, one neuron at a time, Python integers only,
no NumPy arithmetic in the rules. It is slow; keep the models it runs small.

It never imports :mod:`sim.reference` and shares no parsing code with :mod:`sim.model`:
:func:`load_dir` reads ``model.json`` (version 1 or 2) and the ``.npy`` arrays itself
(``numpy.load``, turned into Python lists at once). :func:`run` also accepts an
in-memory :class:`sim.model.Model` (its v2 structure, or a v1 layer's attributes),
turning every array into Python lists first.

A network is described by plain dicts (see :func:`load_dir`); every layer is a v2 layer
with a list of synapses, and a v1 chain becomes layers with one synapse each, from the
previous layer (or ``"input"``) with delay 0 and one tap.

Functions
---------
bin_events(events, shape, timesteps, dt_us, count_clip)
    The contract's binning and count clipping, event by event.
frames_to_steps(frames)
    Dense count frames -> the per-step count dicts every runner takes.
load_dir(path)
    A model directory (v1 or v2) -> a plain network description (checked).
net_from_model(model)
    A :class:`sim.model.Model` -> the same description.
run_net(net, steps)
    The contract's network update (v2 rules, which include v1): step by step, layer by
    layer in list order, synapse by synapse, event by event, neuron by neuron.
run_dir(path, steps), run(model, steps)
    :func:`run_net` on a model directory or on a :class:`sim.model.Model`.
run_chain(model, steps)
    The original version-1 chain runner, kept unchanged as a check on :func:`run_net`.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy

__all__ = ["OracleError", "bin_events", "frames_to_steps", "load_dir", "net_from_model",
           "check_net", "required_acc_bits", "run_net", "run_dir", "run", "run_chain",
           "step_layer"]


class OracleError(ValueError):
    """The input breaks the contract (unsorted, out of range, accumulator too narrow)."""


# -- input events --------------------------------------------------------------------------

def bin_events(events, shape, timesteps, dt_us, count_clip):
    """Bin one sample by the contract's rules.

    Parameters
    ----------
    events : sequence of mappings or a structured array
        Each event gives ``x``, ``y``, ``p``, ``t`` by name (read with ``int()``).
    shape : (P, H, W)
    timesteps, dt_us, count_clip : int

    Returns
    -------
    steps : list of dict
        ``steps[k]`` maps ``(p, y, x)`` to the clipped count of that source in step ``k``.
    n_dropped : int
        Events whose step ``k = (t - t0) // dt_us`` is ``>= timesteps``.
    n_clipped : int
        Events removed by count clipping.

    Raises
    ------
    OracleError
        Unsorted times or an out-of-range ``x``, ``y``, ``p`` (on any event, dropped
        ones included).
    """
    P, H, W = (int(s) for s in shape)
    raw = [dict() for _ in range(timesteps)]
    n_dropped = 0
    t0 = None
    t_prev = None
    for i in range(len(events)):
        e = events[i]
        x, y, p, t = int(e["x"]), int(e["y"]), int(e["p"]), int(e["t"])
        if t_prev is not None and t < t_prev:
            raise OracleError(f"event {i}: unsorted")
        t_prev = t
        if not (0 <= x < W) or not (0 <= y < H) or not (0 <= p < P):
            raise OracleError(f"event {i}: out of range")
        if t0 is None:
            t0 = t
        k = (t - t0) // dt_us
        if k >= timesteps:
            n_dropped += 1
            continue
        raw[k][(p, y, x)] = raw[k].get((p, y, x), 0) + 1
    steps = []
    n_clipped = 0
    for counts in raw:
        clipped = {}
        for key, c in counts.items():
            clipped[key] = min(c, count_clip)
            n_clipped += c - clipped[key]
        steps.append(clipped)
    return steps, n_dropped, n_clipped


def frames_to_steps(frames):
    """Dense nested ``[T][P][H][W]`` counts (lists or an array) -> list of count dicts."""
    steps = []
    for frame in frames:
        d = {}
        for p, plane in enumerate(frame):
            for y, row in enumerate(plane):
                for x, c in enumerate(row):
                    if int(c):
                        d[(p, y, x)] = int(c)
        steps.append(d)
    return steps


# -- version 1: a chain of single-spike layers (the original copy, unchanged) --------------

def _unflatten(index, shape):
    """Row-major flat index -> coordinates."""
    coords = []
    for size in reversed(shape):
        coords.append(index % size)
        index //= size
    return tuple(reversed(coords))


def _flatten(coords, shape):
    index = 0
    for c, size in zip(coords, shape):
        index = index * size + c
    return index


class _Params:
    """A layer's parameters as plain Python values."""

    def __init__(self, layer):
        self.name = layer.name
        self.type = layer.type
        self.in_shape = tuple(int(s) for s in layer.in_shape)
        self.out_shape = tuple(int(s) for s in layer.out_shape)
        self.K = None if layer.kernel is None else int(layer.kernel)
        self.S = None if layer.stride is None else int(layer.stride)
        self.P = None if layer.padding is None else int(layer.padding)
        self.w = None if layer.weights is None else layer.weights.tolist()
        self.bias = None if layer.bias is None else [int(b) for b in layer.bias.tolist()]
        self.state_bits = int(layer.state_bits)
        self.acc_bits = int(layer.acc_bits)
        self.num = int(layer.beta_num)
        self.frac = int(layer.beta_frac_bits)
        self.threshold = [int(t) for t in layer.threshold.tolist()]
        self.reset = layer.reset
        n = 1
        for s in self.out_shape:
            n *= s
        self.n_out = n


def step_layer(p, v, inputs, fire=True):
    """One step of one layer, exactly as the contract's six rules say.

    Parameters
    ----------
    p : layer parameters (from :class:`_Params`)
    v : list of int
        Stored state of every output neuron (flat, row-major).
    inputs : list of (flat input index, count)
    fire : bool
        False for the output layer of a ``membrane`` readout.

    Returns
    -------
    u, s, v_next : lists of int (flat)
    overflow : bool
    """
    # 1. acc = v
    acc = list(v)
    # 2. add the weights of this step's input spikes, one event at a time
    for index, count in inputs:
        if p.type == "linear":
            for n in range(p.n_out):
                acc[n] += count * p.w[n][index]
            continue
        c, y, x = _unflatten(index, p.in_shape)
        C_out, H_out, W_out = p.out_shape
        for co in range(C_out):
            if p.type == "sumpool2d" and co != c:
                continue
            for ky in range(p.K):
                for kx in range(p.K):
                    # the output (oy, ox) whose receptive field holds (y, x) at (ky, kx):
                    # oy * S - P + ky == y  and  ox * S - P + kx == x
                    ny = y + p.P - ky
                    nx = x + p.P - kx
                    if ny % p.S != 0 or nx % p.S != 0:
                        continue
                    oy = ny // p.S
                    ox = nx // p.S
                    if not (0 <= oy < H_out and 0 <= ox < W_out):
                        continue
                    weight = 1 if p.type == "sumpool2d" else p.w[co][c][ky][kx]
                    acc[_flatten((co, oy, ox), p.out_shape)] += count * weight
    # ... and the bias
    per_channel = p.n_out // p.out_shape[0]
    if p.bias is not None:
        for n in range(p.n_out):
            acc[n] += p.bias[n // per_channel]
    # the accumulator is exact in acc_bits: the loader's bound must hold
    acc_lo, acc_hi = -(2 ** (p.acc_bits - 1)), 2 ** (p.acc_bits - 1) - 1
    lo, hi = -(2 ** (p.state_bits - 1)), 2 ** (p.state_bits - 1) - 1
    u, s, v_next = [], [], []
    overflow = False
    for n in range(p.n_out):
        a = acc[n]
        if not (acc_lo <= a <= acc_hi):
            raise OracleError(f"{p.name}: neuron {n}: accumulator {a} does not fit "
                              f"{p.acc_bits} bits")
        # 3. clamp to the state width
        un = a
        if un < lo:
            un = lo
        if un > hi:
            un = hi
        if un != a:
            overflow = True
        # 4. fire
        thr = p.threshold[n // per_channel]
        sn = 1 if (fire and un >= thr) else 0
        # 5. leak (floor shift) and reset
        leaked = (un * p.num) >> p.frac
        if p.reset == "subtract":
            vn = leaked - sn * thr
        elif p.reset == "zero":
            vn = 0 if sn else leaked
        elif p.reset == "none":
            vn = leaked
        else:
            raise OracleError(f"{p.name}: unknown reset {p.reset!r}")
        # a consequence of the rules that the hardware relies on: v fits state_bits
        if not (lo <= vn <= hi):
            raise OracleError(f"{p.name}: neuron {n}: stored state {vn} does not fit "
                              f"{p.state_bits} bits")
        u.append(un)
        s.append(sn)
        v_next.append(vn)
    return u, s, v_next, overflow


# -- version 1: the whole chain ------------------------------------------------------------

def run_chain(model, steps):
    """Run a v1 chain ``model`` by the version-1 rules alone (kept as a check on :func:`run`).

    Parameters
    ----------
    model : sim.model.Model
    steps : list of dict
        ``steps[k]`` maps ``(p, y, x)`` to a count (already clipped), as returned by
        :func:`bin_events` or :func:`frames_to_steps`. Its length is ``T``.

    Returns
    -------
    dict
        ``spikes[name][k]``: flat list of 0/1; ``states[name][k]``: flat list of the
        stored ``v`` after step ``k``; ``u[name][k]``: clamped ``u``;
        ``overflow[name][k]``: bool; ``scores``: list of int; ``prediction``: int.
    """
    params = [_Params(layer) for layer in model.layers]
    in_shape = tuple(int(s) for s in model.input.shape)
    membrane = model.readout == "membrane"
    last = len(params) - 1
    v = [[0] * p.n_out for p in params]
    out = {"spikes": {}, "states": {}, "u": {}, "overflow": {}}
    for p in params:
        for key in out:
            out[key][p.name] = []
    counts = [0] * params[-1].n_out
    scores = None
    for k, step in enumerate(steps):
        inputs = [(_flatten(key, in_shape), c) for key, c in sorted(step.items())]
        for i, p in enumerate(params):
            fire = not (membrane and i == last)
            u, s, v[i], ovf = step_layer(p, v[i], inputs, fire)
            out["spikes"][p.name].append(s)
            out["states"][p.name].append(list(v[i]))
            out["u"][p.name].append(u)
            out["overflow"][p.name].append(ovf)
            # 6. the spikes of step k are the next layer's inputs at step k
            inputs = [(n, 1) for n in range(p.n_out) if s[n]]
            if i == last:
                for n in range(p.n_out):
                    counts[n] += s[n]
                if membrane and k == len(steps) - 1:
                    scores = list(u)
    if not membrane:
        scores = counts
    elif scores is None:          # T == 0 cannot happen in a valid model
        scores = [0] * params[-1].n_out
    prediction = 0
    for n in range(len(scores)):
        if scores[n] > scores[prediction]:
            prediction = n
    out["scores"] = scores
    out["prediction"] = prediction
    return out


# -- version 2: the network description ----------------------------------------------------

def _size(shape):
    n = 1
    for s in shape:
        n *= s
    return n


def _nested_shape(value):
    """Shape of a nested list (as numpy's ``tolist`` makes it)."""
    shape = []
    while isinstance(value, list):
        shape.append(len(value))
        if not value:
            break
        value = value[0]
    return tuple(shape)


def _out_size(size, K, S, P):
    return (size + 2 * P - K) // S + 1


def _per_channel(values, channels, where):
    """An int or a list of ints -> one Python int per output channel."""
    if isinstance(values, list):
        if len(values) != channels:
            raise OracleError(f"{where}: {len(values)} values for {channels} channels")
        return [int(t) for t in values]
    return [int(values)] * channels


def _load_array(root, ref):
    if ref is None:
        return None
    return numpy.load(Path(root) / ref["file"], allow_pickle=False).tolist()


def _layer_fields(ld, root):
    """The neuron fields shared by v1 and v2 layers, as plain values."""
    out_shape = tuple(int(s) for s in ld["out_shape"])
    bias = _load_array(root, ld["bias"])
    current = ld.get("current")
    return {
        "name": ld["name"],
        "out_shape": out_shape,
        "bias": None if bias is None else [int(b) for b in bias],
        "state_bits": int(ld["state_bits"]),
        "acc_bits": int(ld["acc_bits"]),
        "num": int(ld["beta"]["num"]),
        "frac": int(ld["beta"]["frac_bits"]),
        "threshold": _per_channel(ld["threshold"], out_shape[0], f"{ld['name']}.threshold"),
        "reset": ld["reset"],
        "spike_limit": int(ld.get("spike_limit", 1)),
        "v_min": None if ld.get("v_min") is None else int(ld["v_min"]),
        "current": None if current is None else {
            "num": int(current["beta"]["num"]), "frac": int(current["beta"]["frac_bits"]),
            "bits": int(current["state_bits"])},
    }


def _synapse(source, kind, K, S, P, weights, delay=0, taps=1):
    """A synapse as a plain dict; ``weights`` always gets the taps axis (``w[j]``)."""
    if weights is not None and taps == 1:
        weights = [weights]
    return {"source": source, "type": kind,
            "K": None if K is None else int(K), "S": None if S is None else int(S),
            "P": None if P is None else int(P),
            "w": weights, "delay": int(delay), "taps": int(taps)}


def load_dir(path):
    """Read a model directory (``model.json`` version 1 or 2 plus its ``.npy`` arrays).

    Returns
    -------
    dict
        ``input_shape``, ``timesteps``, ``count_clip``, ``readout`` and ``layers``: a list
        of dicts (``name``, ``out_shape``, ``bias`` per channel or None, ``state_bits``,
        ``acc_bits``, ``num``, ``frac``, ``threshold`` per channel, ``reset``,
        ``spike_limit``, ``v_min``, ``current`` (None or ``num``, ``frac``, ``bits``) and
        ``synapses``: dicts with ``source``, ``type``, ``K``, ``S``, ``P``, ``w`` (one
        nested list per tap, or None), ``delay``, ``taps``, ``in_shape``).

    Raises
    ------
    OracleError
        When the network breaks a rule the oracle relies on (:func:`check_net`).
    """
    root = Path(path)
    doc = json.loads((root / "model.json").read_text())
    if doc["version"] not in (1, 2):
        raise OracleError(f"model.json: version {doc['version']!r}")
    inp = doc["input"]
    layers = []
    prev = "input"
    for ld in doc["layers"]:
        layer = _layer_fields(ld, root)
        if doc["version"] == 1:
            layer["synapses"] = [_synapse(prev, ld["type"], ld["kernel"], ld["stride"],
                                          ld["padding"], _load_array(root, ld["weights"]))]
        else:
            layer["synapses"] = [
                _synapse(sd["source"], sd["type"], sd["kernel"], sd["stride"], sd["padding"],
                         _load_array(root, sd["weights"]), sd.get("delay", 0),
                         sd.get("taps", 1))
                for sd in ld["synapses"]]
        layers.append(layer)
        prev = ld["name"]
    net = {"input_shape": tuple(int(s) for s in inp["shape"]),
           "timesteps": int(inp["timesteps"]), "count_clip": int(inp["count_clip"]),
           "readout": doc["readout"], "layers": layers}
    check_net(net)
    return net


def _array_list(array):
    return None if array is None else array.tolist()


def net_from_model(model):
    """The network description of an in-memory :class:`sim.model.Model`.

    Reads the version-2 structure (``layer.synapses`` a list of synapse objects with
    ``source``, ``type``, ``kernel``, ``stride``, ``padding``, ``weights``, ``delay``,
    ``taps``; ``spike_limit``, ``v_min``, ``current``) or, where a layer has no such
    list, the version-1 attributes (one synapse from the layer before).
    """
    layers = []
    prev = "input"
    for layer in model.layers:
        out_shape = tuple(int(s) for s in layer.out_shape)
        synapses = getattr(layer, "synapses", None)
        if isinstance(synapses, list):
            synapses = [_synapse(prev if syn.source is None else syn.source, syn.type,
                                 syn.kernel, syn.stride, syn.padding,
                                 _array_list(syn.weights), syn.delay, syn.taps)
                        for syn in synapses]
        else:
            synapses = [_synapse(prev, layer.type, layer.kernel, layer.stride, layer.padding,
                                 _array_list(layer.weights))]
        current = getattr(layer, "current", None)
        v_min = getattr(layer, "v_min", None)
        layers.append({
            "name": layer.name, "out_shape": out_shape,
            "bias": None if layer.bias is None else [int(b) for b in layer.bias.tolist()],
            "state_bits": int(layer.state_bits), "acc_bits": int(layer.acc_bits),
            "num": int(layer.beta_num), "frac": int(layer.beta_frac_bits),
            "threshold": _per_channel(layer.threshold.tolist(), out_shape[0], layer.name),
            "reset": layer.reset, "spike_limit": int(getattr(layer, "spike_limit", 1)),
            "v_min": None if v_min is None else int(v_min),
            "current": None if current is None else {
                "num": int(current.beta_num), "frac": int(current.beta_frac_bits),
                "bits": int(current.state_bits)},
            "synapses": synapses,
        })
        prev = layer.name
    net = {"input_shape": tuple(int(s) for s in model.input.shape),
           "timesteps": int(model.input.timesteps),
           "count_clip": int(model.input.count_clip), "readout": model.readout,
           "layers": layers}
    check_net(net)
    return net


# -- version 2: the rules a network must meet ----------------------------------------------

def check_net(net):
    """Check the structure the oracle relies on and fill in each synapse's ``in_shape``.

    Sources exist; a synapse from the layer itself or a later layer has ``delay >= 1``;
    ``taps >= 1``; every synapse's geometry gives the layer's ``out_shape``; weights have
    the shape ``(D, *base)`` (``base`` alone for one tap); ``spike_limit >= 1``;
    ``-2**(state_bits-1) <= v_min <= 0``; ``acc_bits`` holds the contract's bound.
    """
    order = {layer["name"]: i for i, layer in enumerate(net["layers"])}
    if len(order) != len(net["layers"]):
        raise OracleError("duplicate layer names")
    shapes = {"input": tuple(net["input_shape"])}
    for layer in net["layers"]:
        shapes[layer["name"]] = tuple(layer["out_shape"])
    for i, layer in enumerate(net["layers"]):
        name = layer["name"]
        out = tuple(layer["out_shape"])
        lo = -(2 ** (layer["state_bits"] - 1))
        if layer["spike_limit"] < 1:
            raise OracleError(f"{name}: spike_limit {layer['spike_limit']} < 1")
        if layer["v_min"] is not None and not lo <= layer["v_min"] <= 0:
            raise OracleError(f"{name}: v_min {layer['v_min']} outside {lo}..0")
        if layer["reset"] not in ("subtract", "zero", "none"):
            raise OracleError(f"{name}: reset {layer['reset']!r}")
        if not layer["synapses"]:
            raise OracleError(f"{name}: no synapses")
        for n_syn, syn in enumerate(layer["synapses"]):
            at = f"{name}.synapses[{n_syn}]"
            src = syn["source"]
            if src not in shapes:
                raise OracleError(f"{at}: unknown source {src!r}")
            if src != "input" and order[src] >= i and syn["delay"] < 1:
                raise OracleError(f"{at}: source {src} is not earlier, so delay must be >= 1")
            if syn["delay"] < 0 or syn["taps"] < 1:
                raise OracleError(f"{at}: delay {syn['delay']}, taps {syn['taps']}")
            syn["in_shape"] = shapes[src]
            _check_geometry(syn, out, at)
        if layer["bias"] is not None and len(layer["bias"]) != out[0]:
            raise OracleError(f"{name}: bias has {len(layer['bias'])} values for {out[0]} "
                              f"channels")
        need = required_acc_bits(net, i)
        if layer["acc_bits"] < need:
            raise OracleError(f"{name}: acc_bits {layer['acc_bits']} is too small, the bound "
                              f"needs {need}")


def _check_geometry(syn, out, at):
    kind, ins = syn["type"], syn["in_shape"]
    if kind == "linear":
        base = (out[0], _size(ins))
        want_out = (out[0],)
    elif kind == "identity":
        base = (ins[0],)
        want_out = ins
    elif kind in ("conv2d", "sumpool2d"):
        K, S, P = syn["K"], syn["S"], syn["P"]
        if len(ins) != 3 or not (0 <= P < K) or S < 1:
            raise OracleError(f"{at}: {kind} on {ins} with K={K}, S={S}, P={P}")
        if kind == "sumpool2d":
            if S != K or P != 0:
                raise OracleError(f"{at}: sumpool2d needs stride == kernel, padding 0")
            base = None
            want_out = (ins[0], ins[1] // K, ins[2] // K)
        else:
            base = (out[0], ins[0], K, K)
            want_out = (out[0], _out_size(ins[1], K, S, P), _out_size(ins[2], K, S, P))
    else:
        raise OracleError(f"{at}: unknown synapse type {kind!r}")
    if tuple(want_out) != tuple(out):
        raise OracleError(f"{at}: {kind} on {ins} gives {want_out}, the layer is {out}")
    if base is None:
        if syn["w"] is not None:
            raise OracleError(f"{at}: sumpool2d has no weights")
        return
    if syn["w"] is None:
        raise OracleError(f"{at}: {kind} needs weights")
    if _nested_shape(syn["w"]) != (syn["taps"], *base):
        # one tap is stored without the taps axis (see _synapse)
        got = _nested_shape(syn["w"])[1:] if syn["taps"] == 1 else _nested_shape(syn["w"])
        want = base if syn["taps"] == 1 else (syn["taps"], *base)
        raise OracleError(f"{at}: weights have shape {got}, {syn['taps']} taps need {want}")


# -- version 2: one synapse, one event -----------------------------------------------------

def _targets(syn, tap, index):
    """``(output neuron, weight)`` for every neuron that an input at ``index`` reaches."""
    kind, ins = syn["type"], syn["in_shape"]
    if kind == "linear":
        w = syn["w"][tap]
        return [(n, w[n][index]) for n in range(len(w))]
    if kind == "identity":
        channel = index // (_size(ins) // ins[0])
        return [(index, syn["w"][tap][channel])]
    K, S, P = syn["K"], syn["S"], syn["P"]
    c, y, x = _unflatten(index, ins)
    H_out = _out_size(ins[1], K, S, P) if kind == "conv2d" else ins[1] // K
    W_out = _out_size(ins[2], K, S, P) if kind == "conv2d" else ins[2] // K
    if kind == "sumpool2d":
        channels = [c]
    else:
        channels = range(len(syn["w"][tap]))
    out_shape = (ins[0] if kind == "sumpool2d" else len(syn["w"][tap]), H_out, W_out)
    hits = []
    for co in channels:
        for ky in range(K):
            for kx in range(K):
                # the output (oy, ox) whose receptive field holds (y, x) at (ky, kx):
                # oy * S - P + ky == y  and  ox * S - P + kx == x
                ny, nx = y + P - ky, x + P - kx
                if ny % S or nx % S:
                    continue
                oy, ox = ny // S, nx // S
                if not (0 <= oy < H_out and 0 <= ox < W_out):
                    continue
                weight = 1 if kind == "sumpool2d" else syn["w"][tap][co][c][ky][kx]
                hits.append((_flatten((co, oy, ox), out_shape), weight))
    return hits


def _source_limit(net, source):
    """``m_src``: what one source position can deliver in one step."""
    if source == "input":
        return net["count_clip"]
    return next(layer["spike_limit"] for layer in net["layers"] if layer["name"] == source)


def required_acc_bits(net, i):
    """The contract's smallest ``acc_bits`` for layer ``i``, with each neuron's true fan-in.

    ``B = max over neurons (sum over synapses of m_src * (sum over taps and fan-in of |w|)
    + |bias|) + 2**(state_bits-1) (+ 2**(Bc-1))``; the answer is ``B.bit_length() + 1``.
    """
    layer = net["layers"][i]
    n_out = _size(layer["out_shape"])
    fan = [0] * n_out
    for syn in layer["synapses"]:
        m = _source_limit(net, syn["source"])
        for tap in range(syn["taps"]):
            for index in range(_size(syn["in_shape"])):
                for n, w in _targets(syn, tap, index):
                    fan[n] += m * abs(w)
    per_channel = n_out // layer["out_shape"][0]
    bound = 0
    for n in range(n_out):
        b = fan[n]
        if layer["bias"] is not None:
            b += abs(layer["bias"][n // per_channel])
        bound = max(bound, b)
    bound += 2 ** (layer["state_bits"] - 1)
    if layer["current"] is not None:
        bound += 2 ** (layer["current"]["bits"] - 1)
    return bound.bit_length() + 1


# -- version 2: the whole network ----------------------------------------------------------

def _clamp(value, bits):
    lo, hi = -(2 ** (bits - 1)), 2 ** (bits - 1) - 1
    return min(max(value, lo), hi)


def run_net(net, steps):
    """Run a network description on per-step input counts, by the v2 rules.

    Parameters
    ----------
    net : dict
        From :func:`load_dir` or :func:`net_from_model`.
    steps : list of dict
        ``steps[k]`` maps ``(p, y, x)`` to a count (already clipped), as returned by
        :func:`bin_events` or :func:`frames_to_steps`. Its length is ``T``.

    Returns
    -------
    dict
        Per layer name: ``spikes[name][k]`` flat list of spike counts, ``states[name][k]``
        the stored ``v`` after step ``k``, ``u[name][k]`` (clamped, after ``v_min``),
        ``overflow[name][k]`` bool; ``currents[name][k]`` the stored ``i`` (current-based
        layers only). ``scores``: list of int; ``prediction``: int.
    """
    layers = net["layers"]
    in_shape = tuple(net["input_shape"])
    membrane = net["readout"] == "membrane"
    last = len(layers) - 1
    v = {layer["name"]: [0] * _size(layer["out_shape"]) for layer in layers}
    cur = {layer["name"]: [0] * _size(layer["out_shape"])
           for layer in layers if layer["current"] is not None}
    out = {"spikes": {}, "states": {}, "u": {}, "overflow": {}, "currents": {}}
    for layer in layers:
        for key in ("spikes", "states", "u", "overflow"):
            out[key][layer["name"]] = []
        if layer["current"] is not None:
            out["currents"][layer["name"]] = []
    # what each source delivered at each step: a list of (flat index, count)
    delivered = {"input": [[(_flatten(key, in_shape), c) for key, c in sorted(step.items())
                            if c] for step in steps]}
    for layer in layers:
        delivered[layer["name"]] = []
    for k in range(len(steps)):
        for i, layer in enumerate(layers):
            name = layer["name"]
            n_out = _size(layer["out_shape"])
            per_channel = n_out // layer["out_shape"][0]
            # 1. x = sum over synapses and taps of count * weight, one event at a time
            x = [0] * n_out
            for syn in layer["synapses"]:
                for tap in range(syn["taps"]):
                    k_src = k - syn["delay"] - tap          # nothing before step 0
                    if k_src < 0:
                        continue
                    # d = 0 only from an earlier layer, which ran already at step k
                    events = delivered[syn["source"]][k_src]
                    for index, count in events:
                        for n, w in _targets(syn, tap, index):
                            x[n] += count * w
            if layer["bias"] is not None:
                for n in range(n_out):
                    x[n] += layer["bias"][n // per_channel]
            fire = not (membrane and i == last)
            u_k, s_k, v_k, i_k, overflow = [], [], [], [], False
            acc_lo, acc_hi = -(2 ** (layer["acc_bits"] - 1)), 2 ** (layer["acc_bits"] - 1) - 1
            for n in range(n_out):
                # 2. plain: acc = v + x; current-based: a = i + x, i' = clamp(a), acc = v + i'
                if layer["current"] is None:
                    acc = v[name][n] + x[n]
                else:
                    a = cur[name][n] + x[n]
                    if not acc_lo <= a <= acc_hi:
                        raise OracleError(f"{name}: neuron {n}: current sum {a} does not fit "
                                          f"{layer['acc_bits']} bits")
                    i_clamped = _clamp(a, layer["current"]["bits"])
                    if i_clamped != a:
                        overflow = True
                    acc = v[name][n] + i_clamped
                    # the current's own leak, the v1 leak with the current's beta
                    i_k.append((i_clamped * layer["current"]["num"]) >> layer["current"]["frac"])
                if not acc_lo <= acc <= acc_hi:
                    raise OracleError(f"{name}: neuron {n}: accumulator {acc} does not fit "
                                      f"{layer['acc_bits']} bits")
                # 3. clamp to the state range (the overflow flag), then the v_min bound
                u = _clamp(acc, layer["state_bits"])
                if u != acc:
                    overflow = True
                if layer["v_min"] is not None:
                    u = max(u, layer["v_min"])
                # 4. s = 0 below threshold, else min(spike_limit, u // threshold)
                thr = layer["threshold"][n // per_channel]
                s = min(layer["spike_limit"], u // thr) if (fire and u >= thr) else 0
                # 5. leak (floor shift) and reset
                leaked = (u * layer["num"]) >> layer["frac"]
                if layer["reset"] == "subtract":
                    v_next = leaked - s * thr
                elif layer["reset"] == "zero":
                    v_next = 0 if s > 0 else leaked
                else:
                    v_next = leaked
                # a consequence of the rules that the hardware relies on: v fits state_bits
                if _clamp(v_next, layer["state_bits"]) != v_next:
                    raise OracleError(f"{name}: neuron {n}: stored state {v_next} does not "
                                      f"fit {layer['state_bits']} bits")
                u_k.append(u)
                s_k.append(s)
                v_k.append(v_next)
            v[name] = v_k
            out["spikes"][name].append(s_k)
            out["states"][name].append(list(v_k))
            out["u"][name].append(u_k)
            out["overflow"][name].append(overflow)
            if layer["current"] is not None:
                cur[name] = i_k
                out["currents"][name].append(list(i_k))
            # 6. the spikes of step k reach each reader at step k + d + j
            delivered[name].append([(n, c) for n, c in enumerate(s_k) if c])
    out_name = layers[last]["name"]
    n_classes = _size(layers[last]["out_shape"])
    if membrane:
        scores = list(out["u"][out_name][-1]) if steps else [0] * n_classes
    else:
        scores = [sum(s[n] for s in out["spikes"][out_name]) for n in range(n_classes)]
    prediction = 0
    for n in range(len(scores)):
        if scores[n] > scores[prediction]:
            prediction = n
    out["scores"] = scores
    out["prediction"] = prediction
    return out


def run_dir(path, steps):
    """:func:`run_net` on the model directory ``path`` (``model.json`` v1 or v2)."""
    return run_net(load_dir(path), steps)


def run(model, steps):
    """:func:`run_net` on an in-memory :class:`sim.model.Model` (see :func:`run_net`)."""
    return run_net(net_from_model(model), steps)
