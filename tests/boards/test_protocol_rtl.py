"""The Amaranth deframer, framer, answerer, CRC and word layout against the Python codec
(amaranth.sim)."""

import random

import pytest
from amaranth import Module, Signal
from amaranth.hdl import Elaboratable
from amaranth.lib import wiring

from boards import protocol as pr
from boards.protocol_rtl import WORD_LAYOUT, Answerer, Deframer, Framer, crc32_next, crc32_step
from tests.boards.simutil import run_sim, stream_recv, stream_send

SPECIALS = [0x7E7E7E7E, 0x7D7D7D7D, 0x007E7D00, 0x4000007E]


def test_crc_step_is_the_codec_crc():
    rng = random.Random(7)
    for n in [0, 1, 9, 100, pr.MAX_BODY]:
        data = bytes(rng.getrandbits(8) for _ in range(n))
        reg = pr.CRC_INIT
        for b in data:
            reg = crc32_step(reg, b)
        assert reg ^ pr.CRC_XOROUT == pr.crc32(data)
    reg = pr.CRC_INIT
    for b in b"123456789":
        reg = crc32_step(reg, b)
    assert reg ^ pr.CRC_XOROUT == pr.CRC_CHECK


def test_crc_xor_network_in_simulation():
    # the gateware expression, fed a body and its CRC byte by byte, against the codec
    rng = random.Random(8)
    reg = Signal(32, init=pr.CRC_INIT)
    byte = Signal(8)
    m = Module()
    m.d.sync += reg.eq(crc32_next(reg, byte))
    bodies = [b"123456789"] + [bytes(rng.getrandbits(8) for _ in range(rng.randint(1, 40)))
                                for _ in range(20)]
    seen = []

    async def tb(ctx):
        for body in bodies:
            ctx.set(reg, pr.CRC_INIT)
            for b in body:
                ctx.set(byte, b)
                await ctx.tick()
            seen.append(ctx.get(reg) ^ pr.CRC_XOROUT)
            for b in pr.crc32(body).to_bytes(pr.CRC_BYTES, "little"):
                ctx.set(byte, b)
                await ctx.tick()
            seen.append(ctx.get(reg) ^ pr.CRC_XOROUT)

    run_sim(m, tb)
    assert seen[0] == pr.CRC_CHECK
    assert seen == [c for body in bodies for c in (pr.crc32(body), pr.CRC_RESIDUE)]


def random_frames(rng, n, commands=True, foreign=True):
    """Host frames (events, commands) plus some frames the board must reject."""
    frames = []
    for _ in range(n):
        r = rng.random()
        if r < 0.7 or not commands:
            k = rng.randint(1, 20)
            words = [rng.choice(SPECIALS) if rng.random() < 0.2 else rng.getrandbits(32)
                     for _ in range(k)]
            frames.append((pr.EVENTS, words))
        elif r < 0.85:
            frames.append((rng.choice([pr.STATUS, pr.VERSION]), []))
        elif foreign:
            frames.append((rng.choice([pr.RESULT, 0x00, 0x33]), [rng.getrandbits(32)] * 4))
    return frames


def corrupt(rng, data, n_ops):
    data = bytearray(data)
    for _ in range(n_ops):
        pos = rng.randrange(len(data))
        op = rng.choice(["sub", "ins", "del"])
        v = rng.choice([rng.randrange(256), pr.FLAG, pr.ESC])
        if op == "sub":
            data[pos] = v
        elif op == "ins":
            data.insert(pos, v)
        else:
            del data[pos]
    return bytes(data)


@pytest.mark.parametrize("seed,n_ops", [(1, 0), (2, 6), (3, 12), (4, 25), (5, 40), (6, 3)])
def test_deframer_matches_python_parser(seed, n_ops):
    rng = random.Random(seed)
    frames = random_frames(rng, 60)
    data = b"".join(pr.encode_frame(t, w) for t, w in frames)
    data = corrupt(rng, data, n_ops) + bytes([pr.FLAG])
    parser = pr.Parser(pr.HOST_TYPES)
    expect = parser.feed(data)
    expect_words = [w for f in expect if f.type == pr.EVENTS for w in f.words]
    expect_cmds = [f.type for f in expect if f.type != pr.EVENTS]
    assert pr.RESET not in expect_cmds        # RESET is tested on its own

    dut = Deframer(depth=256)
    got_words, got_cmds = [], []

    async def feeder(ctx):
        await stream_send(ctx, dut.bytes_in, data, rng=rng, p_idle=0.3)

    async def reader(ctx):
        got_words.extend(await stream_recv(ctx, dut.events, len(expect_words), rng=rng,
                                           p_stall=0.4, timeout=2000))

    async def commands(ctx):
        got_cmds.extend(await stream_recv(ctx, dut.commands, len(expect_cmds), rng=rng,
                                          p_stall=0.3, timeout=len(data) * 3 + 100))

    async def final(ctx):
        await ctx.tick().repeat(len(data) * 3 + 200)
        assert ctx.get(dut.events.valid) == 0          # nothing more than expected
        assert ctx.get(dut.bad_frames) == parser.bad_frames
        assert ctx.get(dut.dropped_events) == 0 and ctx.get(dut.overflow) == 0

    run_sim(dut, feeder, reader, commands, final)
    assert got_words == expect_words
    assert got_cmds == expect_cmds
    if n_ops:
        assert parser.bad_frames > 0


def test_deframer_overlong_pieces_like_the_parser():
    # a long flagless piece, the longest legal frame (every byte stuffed), a legal-looking
    # body one word too long with a good CRC, and pieces at the counter's saturation point
    rng = random.Random(9)
    longest = [0x7E7D7E7D] * pr.MAX_WORDS
    junk = bytes(b for b in (rng.getrandbits(8) for _ in range(1200)) if b != pr.FLAG)
    body = bytes([pr.EVENTS, pr.MAX_WORDS]) + bytes(pr.WORD_BYTES * (pr.MAX_WORDS + 1))
    too_long = bytes([pr.FLAG]) + body + pr.crc32(body).to_bytes(4, "little") + bytes([pr.FLAG])
    data = (bytes([pr.FLAG]) + junk + pr.encode_frame(pr.EVENTS, longest) + too_long
            + bytes([pr.FLAG]) + bytes(pr.MAX_BODY) + bytes([pr.FLAG])
            + bytes([pr.FLAG]) + bytes(pr.MAX_BODY + 1) + bytes([pr.FLAG])
            + pr.encode_frame(pr.EVENTS, [1, 2, 3]))
    parser = pr.Parser(pr.HOST_TYPES)
    expect = [w for f in parser.feed(data) for w in f.words]
    assert expect == longest + [1, 2, 3] and parser.bad_frames == 4
    dut = Deframer(depth=128)
    got = []

    async def feeder(ctx):
        await stream_send(ctx, dut.bytes_in, data)

    async def reader(ctx):
        got.extend(await stream_recv(ctx, dut.events, len(expect), timeout=len(data) + 100))
        await ctx.tick().repeat(5)
        assert ctx.get(dut.bad_frames) == parser.bad_frames

    run_sim(dut, feeder, reader)
    assert got == expect


def test_deframer_full_buffer_drops_whole_frames():
    dut = Deframer(depth=64)
    f1 = list(range(1, 41))
    f2 = list(range(100, 140))
    f3 = list(range(200, 210))
    got = []

    async def tb(ctx):
        ctx.set(dut.events.ready, 0)
        await stream_send(ctx, dut.bytes_in, pr.encode_frame(pr.EVENTS, f1)
                          + pr.encode_frame(pr.EVENTS, f2))
        await ctx.tick().repeat(3)
        assert ctx.get(dut.dropped_events) == 40 and ctx.get(dut.overflow) == 1
        got.extend(await stream_recv(ctx, dut.events, 40, timeout=50))
        await stream_send(ctx, dut.bytes_in, pr.encode_frame(pr.EVENTS, f3))
        got.extend(await stream_recv(ctx, dut.events, 10, timeout=50))
        assert ctx.get(dut.bad_frames) == 0
        ctx.set(dut.clear, 1)
        await ctx.tick()
        ctx.set(dut.clear, 0)
        assert ctx.get(dut.dropped_events) == 0 and ctx.get(dut.overflow) == 0

    run_sim(dut, tb)
    assert got == f1 + f3


def test_deframer_reset_flushes_and_clears():
    dut = Deframer(depth=64)
    got, cmds = [], []

    async def tb(ctx):
        ctx.set(dut.events.ready, 0)
        await stream_send(ctx, dut.bytes_in, b"\x7Egarbage\x7E" + pr.encode_frame(pr.EVENTS, [1, 2, 3]))
        await ctx.tick().repeat(2)
        assert ctx.get(dut.bad_frames) == 1
        await stream_send(ctx, dut.bytes_in, pr.encode_frame(pr.RESET)
                          + pr.encode_frame(pr.EVENTS, [7, 8]))
        await ctx.tick().repeat(2)
        assert ctx.get(dut.bad_frames) == 0
        got.extend(await stream_recv(ctx, dut.events, 5, timeout=30))
        cmds.extend(await stream_recv(ctx, dut.commands, 2, timeout=30))

    run_sim(dut, tb)
    assert got == [7, 8]
    assert cmds == [pr.RESET]


@pytest.mark.parametrize("seed", [1, 2])
def test_framer_bytes_equal_python_encoder(seed):
    rng = random.Random(seed)
    frames = []
    for _ in range(25):
        t = rng.choice([pr.RESULT, pr.STATUS_ANSWER, pr.VERSION_ANSWER, pr.FLAG, pr.ESC])
        n = rng.randint(0, 12)
        frames.append((t, [rng.choice(SPECIALS) if rng.random() < 0.3 else rng.getrandbits(32)
                           for _ in range(n)]))
    frames.append((pr.RESULT, [0x7E] * pr.MAX_WORDS))
    items = []
    for t, words in frames:
        items += [t | len(words) << 8, *words]
    expect = b"".join(pr.encode_frame(t, w) for t, w in frames)
    dut = Framer()
    got = []

    async def feeder(ctx):
        await stream_send(ctx, dut.items, items, rng=rng, p_idle=0.3)

    async def reader(ctx):
        got.extend(await stream_recv(ctx, dut.bytes_out, len(expect), rng=rng, p_stall=0.4,
                                     timeout=100))

    run_sim(dut, feeder, reader)
    assert bytes(got) == expect


class AnswerPath(Elaboratable):
    def __init__(self, n_classes, version):
        self.answerer = Answerer(n_classes, 20, version)
        self.framer = Framer()

    def elaborate(self, platform):
        m = Module()
        m.submodules.answerer = self.answerer
        m.submodules.framer = self.framer
        wiring.connect(m, self.answerer.items, self.framer.items)
        return m


def test_answerer_fields_decode_in_python():
    rng = random.Random(5)
    version = pr.VersionAnswer(pr.PROTOCOL_VERSION, pr.MAX_WORDS, 5, (2, 34, 34), 12, 2, 1000,
                               0x7E7D1234)
    dut = AnswerPath(5, version)
    a = dut.answerer
    scores = [-3, 0, 2**19 - 1, -2**19, 126]
    expect = [
        pr.ResultAnswer(0x7E7E, 3, 0x7D00FF7E, pr.FLAG_STATE_OVERFLOW, scores),
        pr.StatusAnswer(0x21, 2, 7, 1, 33, 4242),
        version,
    ]
    got = []

    async def driver(ctx):
        ctx.set(a.sample_id, 0x7E7E)
        ctx.set(a.prediction, 3)
        ctx.set(a.cycles, 0x7D00FF7E)
        ctx.set(a.flags, pr.FLAG_STATE_OVERFLOW)
        ctx.set(a.scores, scores)
        await stream_send(ctx, a.request, [pr.RESULT])
        # fields are latched: changing them now must not change the RESULT answer
        ctx.set(a.prediction, 1)
        for name, v in [("flags", 0x21), ("bad_frames", 2), ("dropped_events", 7),
                        ("uart_errors", 1), ("samples", 33), ("last_cycles", 4242)]:
            ctx.set(getattr(a, name), v)
        await stream_send(ctx, a.request, [pr.STATUS_ANSWER, pr.VERSION_ANSWER])

    async def reader(ctx):
        n = sum(len(x.encode()) for x in expect)
        got.extend(await stream_recv(ctx, dut.framer.bytes_out, n, rng=rng, p_stall=0.3,
                                     timeout=200))

    run_sim(dut, driver, reader)
    parser = pr.Parser(pr.BOARD_TYPES)
    assert [pr.decode_answer(f) for f in parser.feed(bytes(got))] == expect
    assert parser.bad_frames == 0


def test_word_layout_matches_python_packing():
    from amaranth.lib import data
    from amaranth.sim import Simulator

    w = Signal(32)
    view = data.View(WORD_LAYOUT, w)
    m = Module()
    sim = Simulator(m)
    seen = []

    async def tb(ctx):
        for p, y, x in [(0, 0, 0), (3, 16383, 1), (1, 2, 16383), (2, 77, 5)]:
            ctx.set(w, pr.event_word(p, y, x))
            seen.append((ctx.get(view.kind), ctx.get(view.p), ctx.get(view.y), ctx.get(view.x)))
        ctx.set(w, pr.end_sample_word(9))
        seen.append((ctx.get(view.kind), ctx.get(w) & 0xFFFF))

    sim.add_testbench(tb)
    sim.run()
    assert seen == [(0, 0, 0, 0), (0, 3, 16383, 1), (0, 1, 2, 16383), (0, 2, 77, 5), (2, 9)]
