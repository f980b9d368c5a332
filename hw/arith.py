"""Constant multiplication by shifts and adds; a shallow saturating bit count.

The leak of every neuron lane is a product ``u * num`` by a constant of the model
(``beta = num / 2**frac``). A plain ``*`` makes synthesis take a DSP block for each lane
(``synth_ecp5`` and ``synth_xilinx`` both do for a 16-bit operand), and the route to and
from the DSP column was the slowest path of the ECP5 build. Typical constants have few
non-zero digits in canonical signed-digit form (``7 = 8 - 1``, ``15/16``, ``0.75``), so
one or two adders in the fabric are faster and smaller. Amaranth has no such helper,
hence this one.
"""

from amaranth.hdl import Const, Mux, Value

__all__ = ["csd_digits", "mul_const", "MAX_TERMS", "count_upto"]

#: Constants with more non-zero signed digits than this keep the plain ``*`` (a DSP).
MAX_TERMS = 3


def csd_digits(k):
    """Canonical signed-digit form of the integer ``k >= 0``: a list of
    ``(shift, sign)`` with ``sum(sign << shift) == k``, no two shifts adjacent, and the
    fewest non-zero digits of any signed-binary form."""
    if k < 0:
        raise ValueError(f"csd_digits: {k} is negative")
    digits, shift = [], 0
    while k:
        if k & 1:
            sign = 2 - (k & 3)          # +1 when k % 4 == 1, -1 when k % 4 == 3
            digits.append((shift, sign))
            k -= sign
        k >>= 1
        shift += 1
    return digits


def mul_const(x, k, *, max_terms=MAX_TERMS):
    """``x * k`` for a value ``x`` and an integer constant ``k >= 0``, exact, with the
    width and signedness ``x * k`` would have at most: shifts and at most
    ``max_terms - 1`` adders when ``k`` has at most ``max_terms`` signed digits,
    otherwise the plain product."""
    x = Value.cast(x)
    digits = csd_digits(k)
    if not digits:
        return x * 0
    if len(digits) > max_terms:
        return x * k
    total = None
    for shift, sign in digits:
        term = x << shift
        if total is None:
            total = term if sign > 0 else -term
        else:
            total = total + term if sign > 0 else total - term
    return total


def count_upto(bits, cap):
    """``min(popcount(bits), cap)`` as a balanced tree of saturating adds.

    For ``cap = 3`` every node adds two 2-bit counts (four inputs, so one LUT4 per output
    bit) and the depth grows with ``log2(len(bits))``, without the carry chain of
    ``v & (v - 1)`` or of a full population count: the sweep uses it for "at most one
    (two) spikes left", which must settle within a cycle.
    """
    bits = Value.cast(bits)
    nodes = [bits[i] for i in range(len(bits))] or [Const(0, 1)]
    while len(nodes) > 1:
        nxt = []
        for a, b in zip(nodes[0::2], nodes[1::2]):
            total = a + b
            nxt.append(Mux(total > cap, cap, total)[:max(1, cap.bit_length())])
        if len(nodes) % 2:
            nxt.append(nodes[-1])
        nodes = nxt
    return nodes[0]
