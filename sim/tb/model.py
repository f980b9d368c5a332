"""Expected behaviour of the RTL, from the reference and the cycle model.

:class:`NetworkModel` holds, for one model and one binned sample run ``samples`` times,
what every layer must do at every step: the spikes (flat output indices), the stored
states after the step, the overflow flag; the scores and the prediction of every
sample; and (through :func:`sim.cycles.predict`) the cycle at which each layer
finishes each step. The integer rules come from :func:`sim.reference.run` only.
"""

from __future__ import annotations

import numpy as np

from ..cycles import HwParams, input_words, predict
from ..geometry import SPIKE, lane_groups, lanes_of, shape3
from ..reference import run as reference_run
from .layout import event_layout, input_layout, split_lanes

__all__ = ["NetworkModel", "LayerInfo"]


class LayerInfo:
    """Geometry of one layer's state RAM as the hardware lays it out.

    Word ``a = pos*G + g`` holds channels ``g*L .. g*L+L-1`` of position ``pos``: ``L``
    state lanes of ``v_bits`` (``acc_bits``; ``state_bits`` for a current-based layer),
    then for a current-based layer ``L`` current lanes of ``acc_bits``; ``word_bits`` in
    all (``hw.neuron.NeuronCore``'s word).
    """

    def __init__(self, layer, lanes):
        self.layer = layer
        self.name = layer.name
        self.L = lanes
        self.C, self.Ho, self.Wo = shape3(layer.out_shape)
        self.G = lane_groups(self.C, lanes)
        self.D = self.Ho * self.Wo * self.G
        self.acc_bits = layer.acc_bits
        self.current = layer.current is not None
        self.v_bits = layer.state_bits if self.current else layer.acc_bits
        self.word_bits = lanes * (self.v_bits + (self.acc_bits if self.current else 0))
        self.event = event_layout(layer.out_shape)

    def flat(self, c, y, x):
        """Flat index of output neuron ``(c, y, x)`` (row-major ``(C, H, W)``)."""
        return (c * self.Ho + y) * self.Wo + x

    def coords(self, idx):
        """``(c, y, x)`` of a flat output index."""
        c, r = divmod(int(idx), self.Ho * self.Wo)
        y, x = divmod(r, self.Wo)
        return (c, y, x)

    def states_from_words(self, words):
        """Flat int64 states from the ``D`` state words; raises ``ValueError`` when a
        padding lane (channel ``>= C``) is not zero."""
        return self._lanes_from_words(words, 0, self.v_bits)

    def currents_from_words(self, words):
        """Flat int64 currents of a current-based layer from the ``D`` state words."""
        if not self.current:
            raise ValueError(f"{self.name}: not a current-based layer")
        return self._lanes_from_words(words, self.L * self.v_bits, self.acc_bits)

    def _lanes_from_words(self, words, offset, width):
        out = np.zeros(self.C * self.Ho * self.Wo, dtype=np.int64)
        for a, word in enumerate(words):
            pos, g = divmod(a, self.G)
            for j, v in enumerate(split_lanes(int(word) >> offset, self.L, width)):
                c = g * self.L + j
                if c < self.C:
                    out[c * self.Ho * self.Wo + pos] = v
                elif v != 0:
                    raise ValueError(f"{self.name}: padding lane {j} of word {a} holds {v}")
        return out


class NetworkModel:
    """What the network top must do on ``samples`` runs of ``binned``.

    Parameters
    ----------
    model : sim.model.Model
    binned : sim.events.BinnedEvents
    params : sim.cycles.HwParams, optional
    samples : int
    order_seed : int, optional
        Shuffle the sources of every step with this seed (default: ascending order).
    bad_per_step : int
        Out-of-range spikes mixed into every step (the hardware must drop them).
    coord_bits : int
        Width of the input coordinates.
    backend : str
        Backend of :func:`sim.reference.run` (numpy: no compile time in a bench).

    Attributes
    ----------
    words : list of (kind, p, y, x)
        The input sequence.
    layers : list of LayerInfo
    spikes[i][s*T + k] : list of int
        Sorted flat indices of the spikes of layer ``i`` at step ``k`` of sample ``s``
        (a neuron with spike count ``c`` is there ``c`` times).
    states[i][s*T + k] : ndarray
        Flat stored states after that step.
    overflow[i][s*T + k] : bool
    currents[i][s*T + k] : ndarray
        Flat stored currents of a current-based layer (``currents[i]`` is ``None`` for
        the others).
    scores : list of list of int; prediction : list of int
    n_bad : int
        Out-of-range words in :attr:`words`.
    """

    def __init__(self, model, binned, params=None, *, samples=1, order_seed=None,
                 bad_per_step=0, coord_bits=16, backend="numpy"):
        self.model = model
        self.binned = binned
        self.params = params or HwParams()
        self.samples = samples
        self.T = binned.timesteps
        self.coord_bits = coord_bits
        rng = np.random.default_rng(order_seed) if order_seed is not None else None
        bad = (np.random.default_rng(12345 if order_seed is None else order_seed + 1),
               bad_per_step) if bad_per_step else None
        self.words = input_words(model, binned, samples=samples, rng=rng, bad=bad)
        P, H, W = model.input.shape
        self.n_bad = sum(1 for k, p, y, x in self.words
                         if k == SPIKE and not (p < P and y < H and x < W))
        lanes = lanes_of(model, self.params.lanes)
        self.layers = [LayerInfo(layer, L) for layer, L in zip(model.layers, lanes)]
        self.input = input_layout(coord_bits)
        self.backend = backend
        r = reference_run(model, binned, record=True, backend=backend)
        self.result = r
        self.spikes, self.states, self.overflow, self.currents = [], [], [], []
        for layer in model.layers:
            counts = [r.spikes[layer.name][k].reshape(-1).astype(np.int64)
                      for k in range(self.T)]
            sp = [np.repeat(np.arange(c.size), c).tolist() for c in counts]
            st = [r.states[layer.name][k].reshape(-1).astype(np.int64) for k in range(self.T)]
            ov = [bool(r.overflow[layer.name][k]) for k in range(self.T)]
            self.spikes.append(sp * samples)
            self.states.append(st * samples)
            self.overflow.append(ov * samples)
            cu = None
            if layer.current is not None:
                cu = [r.currents[layer.name][k].reshape(-1).astype(np.int64)
                      for k in range(self.T)] * samples
            self.currents.append(cu)
        self.scores = [[int(v) for v in r.scores]] * samples
        self.prediction = [int(r.prediction)] * samples

    def packed_words(self):
        """The input words packed for the ``inp`` port."""
        return [self.input.pack(kind=k, p=p, y=y, x=x) for k, p, y, x in self.words]

    @property
    def readback_words(self):
        """State words read back per step through the status port (all layers)."""
        return sum(li.D for li in self.layers)

    def cycles(self, *, start, gaps=None, sync_cycles=None):
        """Cycle prediction (:class:`sim.cycles.CycleReport`) for this input sequence."""
        return predict(self.model, self.binned, self.params, words=self.words, start=start,
                       gaps=gaps, sync_cycles=sync_cycles, backend=self.backend)
