"""Scoreboard: compares what the monitors observed with a :class:`~sim.tb.model.NetworkModel`.

Every comparison is complete (every spike and every state of every step of every
layer); the report names the first mismatch in words: layer, sample, step, neuron
``(c, y, x)``, expected, got. :meth:`Scoreboard.check` raises ``AssertionError`` with
that line (plus a count of further mismatches).
"""

from __future__ import annotations

import numpy as np

__all__ = ["Scoreboard"]


class Scoreboard:
    """Collects observations per layer and step and compares them with the model.

    Parameters
    ----------
    model : sim.tb.model.NetworkModel
    """

    def __init__(self, model):
        self.model = model
        n = len(model.layers)
        self.spikes = [[] for _ in range(n)]     # per layer: list of steps (lists of flat idx)
        self._cur = [[] for _ in range(n)]
        self.states = [[] for _ in range(n)]
        self.overflow = [[] for _ in range(n)]
        self.step_cycles = [[] for _ in range(n)]
        self.scores = []
        self.prediction = []
        self.errors = []
        self.checked = 0

    # ------------------------------------------------------------------ observations
    def layer_word(self, i, word):
        """An output word of layer ``i`` (packed ``EventLayout``) was transferred."""
        li = self.model.layers[i]
        f = li.event.unpack(word)
        if f["kind"] == 0:
            self._cur[i].append(li.flat(f["c"], f["y"], f["x"]))
        elif f["kind"] == 1:
            self.spikes[i].append(self._cur[i])
            self._cur[i] = []
        else:
            if self._cur[i]:
                self._error(f"layer {li.name}: {len(self._cur[i])} spikes after the last "
                            f"end-of-step token of a sample")
            self._cur[i] = []

    def step_status(self, i, cycle, ovf):
        """Layer ``i`` finished a step at ``cycle`` with overflow flag ``ovf``."""
        self.step_cycles[i].append(int(cycle))
        self.overflow[i].append(bool(ovf))

    def layer_states(self, i, states):
        """Flat stored states of layer ``i`` read back after its latest step."""
        self.states[i].append(np.asarray(states, dtype=np.int64))

    def result(self, scores, prediction):
        self.scores.append([int(s) for s in scores])
        self.prediction.append(int(prediction))

    # ------------------------------------------------------------------ comparison
    def _error(self, msg):
        self.errors.append(msg)

    def _where(self, step):
        s, k = divmod(step, self.model.T)
        return f"sample {s} step {k}" if self.model.samples > 1 else f"step {k}"

    def compare_spikes(self):
        m = self.model
        for i, li in enumerate(m.layers):
            got_steps, want_steps = self.spikes[i], m.spikes[i]
            if len(got_steps) != len(want_steps):
                self._error(f"layer {li.name}: {len(got_steps)} end-of-step tokens, "
                            f"expected {len(want_steps)}")
            for st, (got, want) in enumerate(zip(got_steps, want_steps)):
                self.checked += 1
                if len(got) != len(set(got)):
                    dup = next(g for g in got if got.count(g) > 1)
                    self._error(f"layer {li.name} {self._where(st)} neuron {li.coords(dup)}: "
                                f"spike emitted {got.count(dup)} times")
                    continue
                gs, ws = set(got), set(want)
                if gs != ws:
                    first = min(gs ^ ws)
                    self._error(f"layer {li.name} {self._where(st)} neuron {li.coords(first)}: "
                                f"expected spike {int(first in ws)}, got {int(first in gs)} "
                                f"({len(ws - gs)} missing, {len(gs - ws)} extra)")

    def compare_states(self, every_step=True):
        m = self.model
        for i, li in enumerate(m.layers):
            got_steps = self.states[i]
            if every_step and len(got_steps) != len(m.states[i]):
                self._error(f"layer {li.name}: states read after {len(got_steps)} steps, "
                            f"expected {len(m.states[i])}")
            for st, (got, want) in enumerate(zip(got_steps, m.states[i])):
                self.checked += 1
                bad = np.flatnonzero(got != want)
                if bad.size:
                    j = int(bad[0])
                    self._error(f"layer {li.name} {self._where(st)} neuron {li.coords(j)}: "
                                f"expected state {int(want[j])}, got {int(got[j])} "
                                f"({bad.size} states differ)")

    def compare_flags(self):
        m = self.model
        for i, li in enumerate(m.layers):
            got, want = self.overflow[i], m.overflow[i]
            if len(got) != len(want):
                self._error(f"layer {li.name}: {len(got)} step strobes, expected {len(want)}")
            for st, (g, w) in enumerate(zip(got, want)):
                self.checked += 1
                if g != w:
                    self._error(f"layer {li.name} {self._where(st)}: expected overflow flag "
                                f"{int(w)}, got {int(g)}")

    def compare_results(self):
        m = self.model
        if len(self.scores) != len(m.scores):
            self._error(f"{len(self.scores)} results, expected {len(m.scores)}")
        for s, (g, w) in enumerate(zip(self.scores, m.scores)):
            self.checked += 1
            if g != w:
                c = next(j for j in range(len(w)) if g[j] != w[j])
                self._error(f"sample {s} class {c}: expected score {w[c]}, got {g[c]}")
            if self.prediction[s] != m.prediction[s]:
                self._error(f"sample {s}: expected prediction {m.prediction[s]}, "
                            f"got {self.prediction[s]}")

    def compare_cycles(self, report, *, exact=True):
        """Step finish cycles against a :class:`sim.cycles.CycleReport`: equal when
        ``exact``, otherwise never earlier than predicted."""
        for i, li in enumerate(self.model.layers):
            got, want = self.step_cycles[i], report.step_done[i]
            if len(got) != len(want):
                self._error(f"layer {li.name}: {len(got)} step stamps, model has {len(want)}")
            for st, (g, w) in enumerate(zip(got, want)):
                self.checked += 1
                if (g != w) if exact else (g < w):
                    rel = "at" if exact else "no earlier than"
                    self._error(f"layer {li.name} {self._where(st)}: finished at cycle {g}, "
                                f"cycle model says {rel} {w}")

    def compare_status(self, status):
        """Status counters: ``dropped`` and ``range_error`` against the bad words sent,
        ``steps`` and ``samples``."""
        m = self.model
        want = {"dropped": m.n_bad, "range_error": int(m.n_bad > 0),
                "steps": m.T * m.samples, "samples": m.samples}
        for k, w in want.items():
            if k in status and int(status[k]) != w:
                self._error(f"status {k}: expected {w}, got {int(status[k])}")

    def check(self):
        """Raise ``AssertionError`` naming the first mismatch (if any)."""
        if self.errors:
            more = f" (and {len(self.errors) - 1} more mismatches)" if len(self.errors) > 1 else ""
            raise AssertionError(self.errors[0] + more)
        return self.checked
