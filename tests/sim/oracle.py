"""A deliberately plain second copy of the fixed-point contract, for tests only.

This is the one place outside ``sim.reference`` where the integer rules are written
down as code (docs/architecture.md: "the plain oracle in tests is the one deliberate
second copy"). It is written from the contract (docs/semantics.md,
/work/shared/CONTRACT.md), not from the reference, and on purpose looks nothing like
it: one event at a time, one neuron at a time, Python integers only, no NumPy
arithmetic in the rules. It is slow; keep the models it runs small.

It never imports :mod:`sim.reference`. It reads the layer parameters from
:class:`sim.model.Layer` objects, turning every array into Python lists first.

Functions
---------
bin_events(events, shape, timesteps, dt_us, count_clip)
    The contract's binning and count clipping, event by event.
run(model, steps)
    The contract's network update, step by step, layer by layer, neuron by neuron.
"""

from __future__ import annotations

__all__ = ["OracleError", "bin_events", "frames_to_steps", "run", "step_layer"]


class OracleError(ValueError):
    """The input breaks the contract (unsorted, out of range, accumulator too narrow)."""


# -- input events -------------------------------------------------------------------------

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


# -- one layer, one step --------------------------------------------------------------------

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


# -- the whole network ----------------------------------------------------------------------

def run(model, steps):
    """Run ``model`` on per-step input counts.

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
