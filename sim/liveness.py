"""Which neurons a step may skip: the quiet rule of the sparse sweep.

A neuron with no input in a step (no synaptic update, bias 0, no current state) whose
stored state ``v`` is a fixed point of the no-input step and below its threshold keeps
``v`` exactly and does not fire: step 1 gives ``acc = v``, step 3 ``u = v`` (``v`` is in
the state range, no overflow, and ``v >= v_min``), step 4 ``s = 0``, step 5
``v' = leak(v) = v``. So skipping it changes no spike, state or flag of the contract
(docs/semantics.md), and no rule needs to change for the hardware to skip it.

The fixed points of the floor leak ``leak(v) = (v * num) >> frac``:

* ``num == 2**frac`` (IF): every ``v``; below the threshold such a neuron is quiet;
* ``0 < num < 2**frac``: exactly ``-n0 <= v <= 0`` with ``n0`` the largest ``n`` with
  ``n * (2**frac - num) < 2**frac`` (``leak(-n) = -n`` iff that holds; a positive ``v``
  always decays). With ``num <= 2**(frac-1)`` that is ``{-1, 0}``: the floor leak keeps
  ``-1`` at ``-1``;
* ``num == 0``: only ``v = 0``.

With ``v_min`` set the fixed points are those ``>= v_min``.

The sweep decides quiet after a neuron's write-back from what it already has: a lane is
*quiet* when it did not fire and its new ``v = leak(u)`` is such a fixed point. As the
leak is monotone, ``leak(u) in [lo, hi]`` is ``u in [u_lo, u_hi]``
(:func:`quiet_u_range`), two compares on the clamped ``u``. A fired lane is never called
quiet (conservative: it is swept once more, which is always exact). A state word is quiet
when all its lanes are (padding lanes stay 0, which is quiet).

Layers for which quiet cannot be shown this cheaply sweep every word
(:func:`sparse_ok`): a bias (input in every step), a current state, or the output layer
of a membrane readout (its readout needs every ``u`` of the last step).
"""

import numpy as np

from .geometry import lane_groups, shape3

__all__ = ["quiet_v_range", "quiet_u_range", "sparse_ok", "quiet_words", "touched_words",
           "sweep_counts", "SWEEPS"]

#: the sweep modes of a neuron core: every word each step, or the listed words only
SWEEPS = ("dense", "sparse")


def quiet_v_range(layer):
    """``(lo, hi)``: a non-fired lane whose stored ``v`` is in ``lo..hi`` is quiet;
    ``hi = None``: any ``v`` (IF: a lane that did not fire has ``v = u < threshold``)."""
    num, frac = layer.beta_num, layer.beta_frac_bits
    one = 1 << frac
    if num == one:
        lo, hi = layer.state_min, None
    elif num == 0:
        lo, hi = 0, 0
    else:
        n0 = -(-one // (one - num)) - 1          # largest n with n * (one - num) < one
        lo, hi = -n0, 0
    if layer.v_min is not None:
        lo = max(lo, layer.v_min)
    return lo, hi


def quiet_u_range(layer):
    """``(u_lo, u_hi)``: a non-fired lane is quiet iff ``u_lo <= u <= u_hi`` (``u`` the
    clamped sum, before the leak); ``None`` for a side that needs no compare."""
    num, frac = layer.beta_num, layer.beta_frac_bits
    one = 1 << frac
    lo, hi = quiet_v_range(layer)
    if num == one:
        # v = u; u >= v_min already (the lower bound), u < threshold (did not fire)
        return None, None
    if num == 0:
        # v = 0 for every u
        return None, None
    # floor(u*num/one) >= lo  <=>  u >= ceil(lo*one/num)
    u_lo = -((-lo * one) // num)
    # floor(u*num/one) <= hi = 0  <=>  u*num < one  <=>  u <= ceil(one/num) - 1
    u_hi = -(-one // num) - 1
    floor = layer.state_min if layer.v_min is None else max(layer.state_min, layer.v_min)
    u_lo = None if u_lo <= floor else u_lo
    u_hi = None if u_hi >= layer.state_max else u_hi
    return u_lo, u_hi


def sparse_ok(layer, fire=True):
    """Whether the sparse sweep is exact for ``layer`` with the cheap quiet rule: no bias
    (an all-zero bias counts as none), no current state, and a layer that fires (not the
    output layer of a membrane readout)."""
    bias_free = layer.bias is None or not np.any(np.asarray(layer.bias))
    return bool(fire and bias_free and layer.current is None)


def quiet_words(layer, spikes, states, G, L):
    """Per step, the state words that are *not* quiet after the step (each a set of word
    addresses ``pos*G + g``), from the reference's ``spikes`` and ``states``
    ``(T, *out_shape)``: a lane that fired, or whose stored ``v`` is outside
    :func:`quiet_v_range`, makes its word not quiet. Words a step did not sweep are
    quiet in any case (their lanes stay fixed points)."""
    C = int(layer.out_shape[0])
    HW = int(np.prod(layer.out_shape)) // C
    lo, hi = quiet_v_range(layer)
    out = []
    for s, v in zip(spikes, states):
        s = np.asarray(s).reshape(C, HW)
        v = np.asarray(v).reshape(C, HW)
        loud = (s != 0) | (v < lo)
        if hi is not None:
            loud |= v > hi
        cs, pos = np.nonzero(loud)
        out.append(set((pos * G + cs // L).tolist()))
    return out


def touched_words(layer, in_shape, lanes, src, syn=None):
    """The state words that input spikes at the flat indices ``src`` of ``in_shape``
    reach through synapse ``syn`` (default: the layer's only one): a set of
    ``pos*G + g``; the window is the synapse kind's ``event_window``."""
    syn = layer.synapse if syn is None else syn
    in3, out3 = shape3(in_shape), shape3(layer.out_shape)
    G = lane_groups(out3[0], lanes)
    Wo = out3[2]
    ylo, yhi, xlo, xhi = syn.kind.event_window(syn, in3, out3)
    out = set()
    H, W = in3[1], in3[2]
    for s in np.unique(np.asarray(src, dtype=np.int64)).tolist():
        y, x = (s // W) % H, s % W
        for oy in range(int(ylo[y]), int(yhi[y]) + 1):
            for ox in range(int(xlo[x]), int(xhi[x]) + 1):
                base = (oy * Wo + ox) * G
                out.update(range(base, base + G))
    return out


def sweep_counts(model, binned, result, lanes, sweep="sparse"):
    """Words and neurons the sweeps of one sample read, per layer, from a reference run
    with ``record=True`` (what the hardware's sweeps do; equal to the cycle model's
    ``swept`` per sample).

    A sparse layer sweeps in step ``k`` the words not quiet after step ``k-1``
    (:func:`quiet_words`) and the words an update of step ``k`` reaches
    (:func:`touched_words`): through each same-step synapse the spikes of its source in
    step ``k``, through a synapse with delay ``d`` and ``D`` taps those of steps
    ``k-d-t``, ``t < D`` (what its delay line replays); a dense one every word.

    Returns
    -------
    list of dict
        Per layer ``{"sparse", "words", "neurons", "dense_words", "dense_neurons"}``:
        words swept and the real neurons in them (padding lanes not counted), summed over
        the steps, and the same for a dense sweep (``T*D`` and ``T*N``).
    """
    from .model import INPUT
    T = model.input.timesteps
    membrane = model.readout == "membrane"
    n = len(model.layers)

    def source_spikes(src, k):
        """Flat indices of the spikes of ``src`` in step ``k`` (none before step 0)."""
        if k < 0:
            return np.zeros(0, dtype=np.int64)
        if src == INPUT:
            return binned.step(k)[0]
        return np.flatnonzero(np.asarray(result.spikes[src][k]).reshape(-1))

    out = []
    for i, layer in enumerate(model.layers):
        C, Ho, Wo = shape3(layer.out_shape)
        L = lanes[i]
        G = lane_groups(C, L)
        D = Ho * Wo * G
        real = [min(L, C - (a % G) * L) for a in range(G)]   # real lanes of group g
        sparse = sweep == "sparse" and sparse_ok(layer, not (membrane and i == n - 1))
        spikes = result.spikes[layer.name]
        if sparse:
            loud = quiet_words(layer, spikes, result.states[layer.name], G, L)
            words = neurons = 0
            listed = set()
            for k in range(T):
                for syn in layer.synapses:
                    src = model.source_of(i, syn)
                    shape = tuple(model.source_shape(src))
                    for t in range(syn.taps):
                        listed = listed | touched_words(
                            layer, shape, L, source_spikes(src, k - syn.delay - t), syn)
                words += len(listed)
                neurons += sum(real[a % G] for a in listed)
                listed = loud[k]
        else:
            words, neurons = T * D, T * layer.n_out
        out.append({"sparse": sparse, "words": words, "neurons": neurons,
                    "dense_words": T * D, "dense_neurons": T * layer.n_out})
    return out
