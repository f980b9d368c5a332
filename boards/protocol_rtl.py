"""The board side of the host protocol in Amaranth: deframer, framer and answerer.

The rules (framing, CRC, frame checks, event words) are those of the host codec
:mod:`boards.protocol`; every constant here comes from it, and the tests check these
blocks byte for byte against it in ``amaranth.sim``.

- :class:`Deframer`: bytes from the UART to checked event words and commands;
- :class:`Framer`: frame items (``TYPE | LEN << 8``, then ``LEN`` words) to stuffed bytes;
- :class:`Answerer`: answer fields to frame items for the framer;
- :data:`WORD_LAYOUT`: the event word as an Amaranth layout;
- :func:`crc32_next`: one byte of the frame CRC as an XOR network.
"""

from __future__ import annotations

from amaranth import Array, Cat, Const, Module, Mux, Signal, signed
from amaranth.lib import data, stream, wiring
from amaranth.lib.fifo import SyncFIFOBuffered
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from .protocol import (CRC_BYTES, CRC_INIT, CRC_POLY, CRC_RESIDUE, CRC_XOROUT, ESC, ESC_XOR,
                       EVENTS, FLAG, HOST_TYPES, MAX_BODY, MAX_WORDS, MIN_BODY,
                       RESET, RESULT, STATUS_ANSWER, VERSION_ANSWER, WORD_BYTES, WORD_FIELDS)

__all__ = ["WORD_LAYOUT", "crc32_step", "crc32_next", "Deframer", "Framer", "Answerer"]

#: The event word as an Amaranth layout (fields from bit 0 up, :data:`boards.protocol.WORD_FIELDS`):
#: ``data.View(WORD_LAYOUT, word)`` gives ``.x``, ``.y``, ``.p``, ``.kind``; for tokens the
#: step index or sample id is ``word[:TOKEN_BITS]``.
WORD_LAYOUT = data.StructLayout(dict(WORD_FIELDS))

_CRC_WIDTH = 8 * CRC_BYTES
#: The CRC polynomial bit-reversed: the register shifts right (a reflected CRC).
_POLY_REFLECTED = int(f"{CRC_POLY:0{_CRC_WIDTH}b}"[::-1], 2)
#: The CRC register after a body that ends in its own CRC (the residue before the final XOR).
_REGISTER_RESIDUE = CRC_RESIDUE ^ CRC_XOROUT


def crc32_step(register, byte):
    """The CRC register after one more byte, bit by bit (plain Python).

    Starting from :data:`~boards.protocol.CRC_INIT`, the register after a body XOR
    :data:`~boards.protocol.CRC_XOROUT` is :func:`boards.protocol.crc32` of it.
    """
    register ^= byte
    for _ in range(8):
        register = (register >> 1) ^ (_POLY_REFLECTED if register & 1 else 0)
    return register


def _crc_matrix():
    # the step is linear over GF(2) in c = register ^ byte: output bit i is the XOR of
    # the bits j of c whose unit vector's step has bit i set
    columns = [crc32_step(1 << j, 0) for j in range(_CRC_WIDTH)]
    return [[j for j in range(_CRC_WIDTH) if columns[j] >> i & 1] for i in range(_CRC_WIDTH)]


_CRC_MATRIX = _crc_matrix()


def crc32_next(register, byte):
    """The CRC register after one more byte as an Amaranth expression (an XOR network)."""
    c = register ^ byte
    bits = []
    for taps in _CRC_MATRIX:
        e = Const(0, 1)
        for j in taps:
            e = e ^ c[j]
        bits.append(e)
    return Cat(*bits)


def _saturating_inc(m, counter, amount=1):
    top = (1 << len(counter)) - 1
    total = counter + amount
    m.d.sync += counter.eq(Mux(total > top, top, total))


class Deframer(wiring.Component):
    """Board side: bytes from the UART to checked event words and commands.

    Applies the framing rules and frame checks of :mod:`boards.protocol` to ``bytes_in``
    (always ready, one byte per cycle); it counts at most ``MAX_BODY + 1`` body bytes of
    a piece, so a longer piece is a bad frame whatever its length. The words of an
    ``EVENTS`` frame are written into a buffer as they arrive and become visible on
    ``events`` only when the frame has passed every check; a malformed frame is rolled
    back and counted in ``bad_frames``. A good frame that does not fit the free space of
    the buffer is dropped whole and its words are counted in ``dropped_events`` (sticky
    ``overflow``). Good command frames put their TYPE on ``commands`` (a 4-deep queue;
    ``command_overrun`` when it is full); a good ``RESET`` frame also empties the buffer
    and clears the counters and flags here.

    Parameters
    ----------
    depth : int
        Buffer depth in words (a power of two, at least :data:`MAX_WORDS`).
    counter_width : int

    Attributes
    ----------
    bytes_in : In(stream.Signature(8))
    events : Out(stream.Signature(32))
        Event and token words, in order.
    commands : Out(stream.Signature(8))
        Frame type of each good command frame (``RESET``, ``STATUS``, ``VERSION``).
    bad_frames, dropped_events : Out(counter_width)
        Saturating counters.
    overflow, command_overrun : Out(1)
        Sticky flags.
    clear : In(1)
        Clear counters and flags (the buffer is kept).
    """

    def __init__(self, depth=256, counter_width=32):
        if depth < MAX_WORDS or depth & (depth - 1):
            raise ValueError(f"depth must be a power of two >= {MAX_WORDS}, not {depth}")
        self.depth = depth
        super().__init__({
            "bytes_in": In(stream.Signature(8)),
            "events": Out(stream.Signature(32)),
            "commands": Out(stream.Signature(8)),
            "bad_frames": Out(counter_width),
            "dropped_events": Out(counter_width),
            "overflow": Out(1),
            "command_overrun": Out(1),
            "clear": In(1),
        })

    def elaborate(self, platform):
        m = Module()
        depth = self.depth
        abits = depth.bit_length() - 1
        m.submodules.mem = mem = Memory(shape=32, depth=depth, init=[])
        wp = mem.write_port()
        rp = mem.read_port()
        m.submodules.cmdq = cmdq = SyncFIFOBuffered(width=8, depth=4)
        wiring.connect(m, wiring.flipped(self.commands), cmdq.r_stream)

        # pointers carry one extra wrap bit
        rd = Signal(abits + 1)
        wr = Signal(abits + 1)
        commit = Signal(abits + 1)
        out_valid = Signal()

        # -- read side: committed words to the event stream
        advance = (~out_valid | self.events.ready) & (rd != commit)
        m.d.comb += [rp.addr.eq(rd[:abits]), rp.en.eq(advance),
                     self.events.valid.eq(out_valid), self.events.payload.eq(rp.data)]
        with m.If(advance):
            m.d.sync += [rd.eq(rd + 1), out_valid.eq(1)]
        with m.Elif(self.events.ready):
            m.d.sync += out_valid.eq(0)

        # -- write side: parse bytes
        n = Signal(range(MAX_BODY + 2))     # body bytes so far (saturating: too long)
        esc = Signal()
        opened = Signal()
        crc = Signal(_CRC_WIDTH, init=CRC_INIT)
        ftype = Signal(8)
        length = Signal(8)
        word = Signal(32)
        nbyte = Signal(range(WORD_BYTES))   # bytes of the current word so far
        nword = Signal(range(MAX_WORDS + 2))    # words seen (saturating; the CRC is one)
        frame_ovf = Signal()

        b = self.bytes_in.payload
        d = Signal(8)
        m.d.comb += [self.bytes_in.ready.eq(1), d.eq(Mux(esc, b ^ ESC_XOR, b))]
        is_events = ftype == EVENTS
        # the header's checks are registered when LEN arrives (TYPE came before it): the
        # frame-end decision then compares two registers, not LEN * 4 + MIN_BODY (that
        # carry chain into the counters' clear was the slowest path of an ECP5 build)
        hdr_ok = Signal()                   # a known type, a length it allows
        n_end = Signal(range(MIN_BODY + 255 * WORD_BYTES + 1))    # body bytes it needs
        len_ok_d = Signal()                 # the byte d as that type's length
        with m.Switch(ftype):
            for t, (lo, hi) in HOST_TYPES.items():
                with m.Case(t):
                    m.d.comb += len_ok_d.eq((d >= lo) & (d <= hi))
        good = Signal()
        m.d.comb += good.eq(~esc & hdr_ok & (n == n_end) & (crc == _REGISTER_RESIDUE))

        def reset_frame():
            m.d.sync += [n.eq(0), esc.eq(0), opened.eq(0), crc.eq(CRC_INIT), nbyte.eq(0),
                         nword.eq(0), frame_ovf.eq(0), hdr_ok.eq(0)]

        # the buffer is full when wr is a whole depth ahead of rd: the same address, the
        # other wrap bit (a compare, not the subtraction depth - (wr - rd): that was the
        # slowest path of the ECP5 build)
        full = Signal()
        m.d.comb += full.eq((wr ^ rd) == depth)
        flush = Signal()

        with m.If(self.bytes_in.valid):
            with m.If(b == FLAG):
                reset_frame()
                with m.If(opened):
                    with m.If(good & is_events):
                        with m.If(frame_ovf):
                            m.d.sync += [wr.eq(commit), self.overflow.eq(1)]
                            _saturating_inc(m, self.dropped_events, length)
                        with m.Else():
                            m.d.sync += commit.eq(wr)
                    with m.Elif(good):
                        m.d.comb += [cmdq.w_data.eq(ftype), cmdq.w_en.eq(1)]
                        with m.If(~cmdq.w_rdy):
                            m.d.sync += self.command_overrun.eq(1)
                        m.d.sync += wr.eq(commit)
                        with m.If(ftype == RESET):
                            m.d.comb += flush.eq(1)
                    with m.Else():
                        m.d.sync += wr.eq(commit)
                        _saturating_inc(m, self.bad_frames)
            with m.Elif((b == ESC) & ~esc):
                m.d.sync += [esc.eq(1), opened.eq(1)]
            with m.Else():
                m.d.sync += [esc.eq(0), opened.eq(1), crc.eq(crc32_next(crc, d))]
                with m.If(n != MAX_BODY + 1):
                    m.d.sync += n.eq(n + 1)
                with m.If(n == 0):              # TYPE, LEN, then the words and the CRC
                    m.d.sync += ftype.eq(d)
                with m.Elif(n == 1):
                    m.d.sync += [length.eq(d), hdr_ok.eq(len_ok_d),
                                 n_end.eq(MIN_BODY + d * WORD_BYTES)]
                with m.Else():
                    m.d.sync += [word.eq(Cat(word[8:], d)), nbyte.eq(nbyte + 1)]
                    with m.If(nbyte == WORD_BYTES - 1):
                        with m.If(nword != MAX_WORDS + 1):
                            m.d.sync += nword.eq(nword + 1)
                        with m.If(is_events & (nword < length) & (length <= MAX_WORDS)):
                            with m.If(~full):
                                m.d.comb += [wp.addr.eq(wr[:abits]), wp.data.eq(Cat(word[8:], d)),
                                             wp.en.eq(1)]
                                m.d.sync += wr.eq(wr + 1)
                            with m.Else():
                                m.d.sync += frame_ovf.eq(1)

        # a RESET frame clears the counters and flags one cycle after its end (registered:
        # the frame-end decision fanned out to every counter bit's clear was the slowest
        # ECP5 path); the byte after a frame's closing FLAG cannot close a frame, so no
        # count is lost. ``clear`` acts at once, as before.
        flush_q = Signal()
        m.d.sync += flush_q.eq(flush)
        with m.If(self.clear | flush_q):
            m.d.sync += [self.bad_frames.eq(0), self.dropped_events.eq(0),
                         self.overflow.eq(0), self.command_overrun.eq(0)]
        with m.If(flush):
            m.d.sync += [rd.eq(0), wr.eq(0), commit.eq(0), out_valid.eq(0)]
        return m


class Framer(wiring.Component):
    """Board side: frame items to stuffed bytes.

    An item stream describes frames: a header item ``TYPE | LEN << 8`` followed by
    ``LEN`` payload words. The framer sends ``FLAG``, the stuffed body with its CRC and
    a closing ``FLAG``.

    Attributes
    ----------
    items : In(stream.Signature(32))
    bytes_out : Out(stream.Signature(8))
    """

    def __init__(self):
        super().__init__({
            "items": In(stream.Signature(32)),
            "bytes_out": Out(stream.Signature(8)),
        })

    def elaborate(self, platform):
        m = Module()
        # raw bytes (before stuffing) with a marker for the unstuffed flags
        raw_data = Signal(8)
        raw_flag = Signal()
        raw_valid = Signal()
        raw_ready = Signal()

        # stuffing stage
        second = Signal()
        need = ~raw_flag & ((raw_data == FLAG) | (raw_data == ESC))
        out = self.bytes_out
        m.d.comb += [
            out.valid.eq(raw_valid),
            out.payload.eq(Mux(need & ~second, ESC, Mux(need, raw_data ^ ESC_XOR, raw_data))),
            raw_ready.eq(out.ready & (~need | second)),
        ]
        with m.If(out.valid & out.ready):
            m.d.sync += second.eq(need & ~second)

        ftype = Signal(8)
        length = Signal(8)
        word = Signal(32)
        nbyte = Signal(range(max(WORD_BYTES, CRC_BYTES)))
        nword = Signal(8)
        crc = Signal(_CRC_WIDTH)
        sent = raw_valid & raw_ready

        with m.FSM():
            with m.State("IDLE"):
                m.d.comb += self.items.ready.eq(1)
                with m.If(self.items.valid):
                    m.d.sync += [ftype.eq(self.items.payload[:8]),
                                 length.eq(self.items.payload[8:16]), nword.eq(0),
                                 crc.eq(CRC_INIT)]
                    m.next = "SOF"
            with m.State("SOF"):
                m.d.comb += [raw_valid.eq(1), raw_flag.eq(1), raw_data.eq(FLAG)]
                with m.If(sent):
                    m.next = "TYPE"
            with m.State("TYPE"):
                m.d.comb += [raw_valid.eq(1), raw_data.eq(ftype)]
                with m.If(sent):
                    m.d.sync += crc.eq(crc32_next(crc, ftype))
                    m.next = "LEN"
            with m.State("LEN"):
                m.d.comb += [raw_valid.eq(1), raw_data.eq(length)]
                with m.If(sent):
                    m.d.sync += crc.eq(crc32_next(crc, length))
                    m.next = "LEN_NEXT"
            with m.State("LEN_NEXT"):
                with m.If(nword == length):
                    m.d.sync += [word.eq(crc ^ CRC_XOROUT), nbyte.eq(0)]
                    m.next = "CRC"
                with m.Else():
                    m.next = "LOAD"
            with m.State("LOAD"):
                m.d.comb += self.items.ready.eq(1)
                with m.If(self.items.valid):
                    m.d.sync += [word.eq(self.items.payload), nbyte.eq(0)]
                    m.next = "BYTES"
            with m.State("BYTES"):
                m.d.comb += [raw_valid.eq(1), raw_data.eq(word[:8])]
                with m.If(sent):
                    m.d.sync += [crc.eq(crc32_next(crc, word[:8])), word.eq(word >> 8),
                                 nbyte.eq(nbyte + 1)]
                    with m.If(nbyte == WORD_BYTES - 1):
                        m.d.sync += nword.eq(nword + 1)
                        m.next = "LEN_NEXT"
            with m.State("CRC"):        # the CRC, least significant byte first
                m.d.comb += [raw_valid.eq(1), raw_data.eq(word[:8])]
                with m.If(sent):
                    m.d.sync += [word.eq(word >> 8), nbyte.eq(nbyte + 1)]
                    with m.If(nbyte == CRC_BYTES - 1):
                        m.next = "EOF"
            with m.State("EOF"):
                m.d.comb += [raw_valid.eq(1), raw_flag.eq(1), raw_data.eq(FLAG)]
                with m.If(sent):
                    m.next = "IDLE"
        return m


class Answerer(wiring.Component):
    """Board side: answer fields to frame items for :class:`Framer`.

    On a request (the answer's frame type on ``request``) all fields are copied into
    registers, so they may change while the answer is being sent.

    Parameters
    ----------
    n_classes : int
    score_width : int
        Width of the signed class scores.
    version : VersionAnswer
        The constant ``VERSION_ANSWER`` content (model shape, model id, ...).

    Attributes
    ----------
    request : In(stream.Signature(8))
        ``RESULT``, ``STATUS_ANSWER`` or ``VERSION_ANSWER``; others are ignored.
    sample_id, prediction : In(16)
    cycles, flags, bad_frames, dropped_events, uart_errors, samples, last_cycles : In(32)
    scores : In(data.ArrayLayout(signed(score_width), n_classes))
    items : Out(stream.Signature(32))
    """

    def __init__(self, n_classes, score_width, version):
        if not 1 <= n_classes <= MAX_WORDS - 3:
            raise ValueError(f"n_classes {n_classes} outside 1..{MAX_WORDS - 3}")
        self.n_classes = n_classes
        self.version = version
        super().__init__({
            "request": In(stream.Signature(8)),
            "sample_id": In(16), "prediction": In(16),
            "cycles": In(32), "flags": In(32), "bad_frames": In(32),
            "dropped_events": In(32), "uart_errors": In(32), "samples": In(32),
            "last_cycles": In(32),
            "scores": In(data.ArrayLayout(signed(score_width), n_classes)),
            "items": Out(stream.Signature(32)),
        })

    def elaborate(self, platform):
        m = Module()
        nmax = max(3 + self.n_classes, 6)     # the longest answer: RESULT or STATUS_ANSWER
        regs = Array(Signal(32, name=f"w{i}") for i in range(nmax + 1))   # header + words
        count = Signal(range(nmax + 2))
        index = Signal(range(nmax + 2))
        busy = Signal()

        result = [RESULT | (3 + self.n_classes) << 8,
                  Cat(self.sample_id, self.prediction), self.cycles, self.flags,
                  *[self.scores[i] for i in range(self.n_classes)]]
        status = [STATUS_ANSWER | 6 << 8, self.flags, self.bad_frames, self.dropped_events,
                  self.uart_errors, self.samples, self.last_cycles]
        version = [VERSION_ANSWER | 5 << 8, *self.version.words()]

        m.d.comb += [self.request.ready.eq(~busy), self.items.valid.eq(busy),
                     self.items.payload.eq(regs[index])]
        with m.If(self.request.valid & ~busy):
            with m.Switch(self.request.payload):
                for t, words in ((RESULT, result), (STATUS_ANSWER, status),
                                 (VERSION_ANSWER, version)):
                    with m.Case(t):
                        m.d.sync += [busy.eq(1), index.eq(0), count.eq(len(words))]
                        for i, w in enumerate(words):
                            m.d.sync += regs[i].eq(w)
        with m.If(busy & self.items.ready):
            m.d.sync += index.eq(index + 1)
            with m.If(index + 1 == count):
                m.d.sync += busy.eq(0)
        return m
