"""hw.arith: canonical signed digits and the shift-and-add constant multiplier, against
plain integer products (every input of a small width, in amaranth.sim)."""

import pytest
from amaranth.hdl import Module, Signal, signed, unsigned
from amaranth.sim import Simulator

from hw.arith import count_upto, csd_digits, mul_const


def test_csd_digits_sum_to_k_and_are_non_adjacent():
    for k in range(0, 1 << 12):
        d = csd_digits(k)
        assert sum(sign << shift for shift, sign in d) == k
        shifts = [s for s, _ in d]
        assert all(b - a >= 2 for a, b in zip(shifts, shifts[1:])), k   # non-adjacent
        assert all(sign in (1, -1) for _, sign in d)
        # the non-adjacent form has the fewest non-zero digits: never more than binary
        assert len(d) <= bin(k).count("1"), k


def test_csd_digits_of_a_negative_constant_is_an_error():
    with pytest.raises(ValueError, match="-3"):
        csd_digits(-3)


@pytest.mark.parametrize("shape", [signed(6), unsigned(5)])
@pytest.mark.parametrize("k", [1, 2, 3, 5, 7, 12, 15, 21, 23, 45, 127, 0b1011011])
def test_mul_const_equals_the_product(shape, k):
    x = Signal(shape)
    prod = mul_const(x, k)
    out = Signal(signed(len(prod) + 1))
    m = Module()
    m.d.comb += out.eq(prod)
    lo, hi = (-(1 << 5), 1 << 5) if shape.signed else (0, 1 << 5)
    seen = []

    async def bench(ctx):
        for v in range(lo, hi):
            ctx.set(x, v)
            seen.append((v, ctx.get(out)))

    sim = Simulator(m)
    sim.add_testbench(bench)
    sim.run()
    assert seen == [(v, v * k) for v in range(lo, hi)]
    # shifts and adds where the constant has few signed digits, the plain product beyond
    assert (len(csd_digits(k)) > 3) == ("*" in repr(prod))


@pytest.mark.parametrize("n,cap", [(1, 3), (5, 2), (7, 3), (8, 3), (10, 1)])
def test_count_upto_is_the_saturated_popcount(n, cap):
    v = Signal(n)
    out = Signal(4)
    m = Module()
    m.d.comb += out.eq(count_upto(v, cap))
    seen = []

    async def bench(ctx):
        for x in range(1 << n):
            ctx.set(v, x)
            seen.append(ctx.get(out))

    sim = Simulator(m)
    sim.add_testbench(bench)
    sim.run()
    assert seen == [min(bin(x).count("1"), cap) for x in range(1 << n)]
