"""cocotb valid/ready stream driver with random valid gaps (imports cocotb).

Timing convention of every component in :mod:`sim.tb`: inputs are driven just after the
falling edge of the clock, and the bus is sampled after ``ReadOnly()`` in the same half
cycle; a transfer happens in a cycle whose sample shows ``valid & ready``. The
``cycle`` of a component is the count of falling edges since it started (or the value of
a cycle-counter signal when one is given).
"""

from __future__ import annotations

import random

from cocotb.triggers import FallingEdge, ReadOnly

__all__ = ["StreamDriver"]


class StreamDriver:
    """Sends packed words on a ``valid``/``ready``/``payload`` stream.

    Before each word the driver keeps ``valid`` low for a random number of cycles: with
    probability ``gap`` a gap of 1..``max_gap`` cycles, else none. The gaps are drawn
    from ``random.Random(seed)`` when the word is reached, and recorded in
    :attr:`gaps`, so that a cycle model can replay them. Once raised, ``valid`` and
    ``payload`` are held until the transfer (the stream rules).

    Parameters
    ----------
    clk, valid, ready, payload : cocotb handles
    gap : float
        Probability of a gap before a word.
    max_gap : int
    seed : int
    cycle : handle, optional
        A cycle-counter signal of the DUT; :attr:`first_offer` is read from it.

    Attributes
    ----------
    gaps : list of int
        Gap before every word sent so far.
    accepted : list of int
        Cycle (``cycle`` signal value, or local count) of every transfer.
    first_offer : int
        Cycle in which ``valid`` was first raised (or would have been, before gap 0).
    """

    def __init__(self, clk, valid, ready, payload, *, gap=0.0, max_gap=3, seed=0, cycle=None):
        self.clk, self.valid, self.ready, self.payload = clk, valid, ready, payload
        self.gap, self.max_gap = gap, max_gap
        self.rng = random.Random(seed)
        self.cycle_sig = cycle
        self.gaps = []
        self.accepted = []
        self.first_offer = None
        self._local = 0

    def _now(self):
        return int(self.cycle_sig.value) if self.cycle_sig is not None else self._local

    async def _edge(self):
        await FallingEdge(self.clk)
        self._local += 1
        if self.first_offer is None:
            self.first_offer = self._now()

    def _draw_gap(self):
        if self.gap > 0 and self.rng.random() < self.gap:
            return self.rng.randint(1, self.max_gap)
        return 0

    async def send(self, words, after=None):
        """Send ``words`` (packed ints). ``after(j)``, when given, is called after the
        transfer of word ``j``; when it returns an awaitable (e.g. wait for idle and
        read the states back), the driver lowers ``valid`` at the next falling edge and
        awaits it; the awaitable starts in that half cycle, before ``ReadOnly()``."""
        for j, word in enumerate(words):
            g = self._draw_gap()
            self.gaps.append(g)
            for _ in range(g):
                await self._edge()
                self.valid.value = 0
            await self._edge()
            self.payload.value = word
            self.valid.value = 1
            await ReadOnly()
            while not int(self.ready.value):
                await self._edge()
                await ReadOnly()
            self.accepted.append(self._now())
            hook = after(j) if after is not None else None
            if hook is not None:
                await self._edge()
                self.valid.value = 0
                await hook
        await self._edge()
        self.valid.value = 0
