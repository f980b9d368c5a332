"""The framed event protocol between the host and the board (over the UART).

Both directions use the same framing; docs/protocol.md has the tables.

Framing (byte stuffing as in asynchronous HDLC, RFC 1662)
    Every frame is sent as ``FLAG body' FLAG`` with ``FLAG = 0x7E``. Inside ``body'``
    each ``0x7E`` or ``0x7D`` byte of the body is sent as ``0x7D, byte ^ 0x20``, so a
    ``FLAG`` never occurs inside a frame. A receiver cuts the byte stream at every
    ``FLAG``: each non-empty piece between two flags is one frame candidate, checked
    whole; empty pieces (two flags in a row) are ignored. A corrupted, inserted or lost
    byte therefore spoils only the frame it falls in: the next ``FLAG`` resynchronizes
    the link, and since every frame carries its own leading and trailing flag, no
    intact frame before or after it is lost. (A length-prefixed format without
    stuffing cannot promise that: a corrupted length swallows the following frames.)

Body
    ``TYPE (1 byte) | LEN (1 byte, payload words) | LEN x 32-bit words, little endian |
    CRC (1 byte)``.

CRC
    CRC-8 with polynomial ``x^8 + x^2 + x + 1`` (0x07), initial value 0, no reflection,
    no final XOR (CRC-8/SMBUS) over TYPE, LEN and the payload; the receiver runs it over
    the whole body including the CRC byte and checks that the remainder is 0. Chosen
    over an additive checksum because it catches every burst error of up to 8 bits
    (so every single corrupted byte), every odd number of bit errors and swapped
    bytes, which a sum misses; in hardware it is one byte-wide XOR network. Several
    corrupted bytes in one frame can cancel (about 1 in 256 such frames passes).

Frame checks (a failure counts one *bad frame* and drops the frame)
    the body has at least 3 bytes; TYPE is known to the receiver; LEN is allowed for
    TYPE; the body has exactly ``3 + 4 * LEN`` bytes; the CRC remainder is 0; the
    frame does not end in a dangling escape byte.

Frame types, host to board
    ``EVENTS`` (0x01, LEN 1..64): input event words. ``RESET`` (0x02), ``STATUS`` (0x03),
    ``VERSION`` (0x04): commands, LEN 0. RESET clears the network state, the event
    buffer, the error flags and the counters, and is answered by a STATUS frame.

Frame types, board to host
    ``RESULT`` (0x81, LEN 3 + n_classes): sent after every end-of-sample token.
    ``STATUS_ANSWER`` (0x82, LEN 6) and ``VERSION_ANSWER`` (0x83, LEN 5).

Event words (32 bits; ``kind`` in bits 31:30)
    ``kind 0`` input event: ``p`` in bits 29:28, ``y`` in bits 27:14, ``x`` in bits 13:0;
    ``kind 1`` end of step: step index (mod 2**16) in bits 15:0;
    ``kind 2`` end of sample: sample id in bits 15:0; ``kind 3`` is reserved.
    The fields allow inputs of up to 16384 x 16384 pixels and 4 polarities. (Two full
    16-bit coordinates, a polarity and a kind tag do not fit one 32-bit word; 14 bits
    cover every event sensor made so far, the largest being 1280 x 720.)

One sample
    the host bins the sample with :func:`sim.events.bin_events` and sends, for every
    step ``k = 0 .. T-1``, the step's distinct sources in ascending flat index (a
    count ``c`` as ``c`` copies of the event word) followed by an end-of-step word,
    empty steps included, then one end-of-sample word. The words are packed into
    ``EVENTS`` frames of at most :data:`MAX_WORDS` words. The board answers with one
    ``RESULT`` frame.

This module holds the plain Python codec (:func:`encode_frame`, :class:`Parser`,
word and answer helpers) used by the host tool and the board emulator, and the
Amaranth blocks of the board side: :class:`Deframer` (bytes to event words and
commands), :class:`Framer` (frame items to bytes) and :class:`Answerer` (answer
fields to frame items).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

import numpy as np
from amaranth import Array, Cat, Const, Module, Mux, Signal, signed
from amaranth.lib import data, stream, wiring
from amaranth.lib.fifo import SyncFIFOBuffered
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

__all__ = [
    "FLAG", "ESC", "PROTOCOL_VERSION", "MAX_WORDS",
    "EVENTS", "RESET", "STATUS", "VERSION", "RESULT", "STATUS_ANSWER", "VERSION_ANSWER",
    "HOST_TYPES", "BOARD_TYPES", "WORD_LAYOUT", "KIND_EVENT", "KIND_END_STEP", "KIND_END_SAMPLE",
    "FLAG_STATE_OVERFLOW", "FLAG_EVENT_RANGE", "FLAG_DROPPED", "FLAG_BAD_FRAME",
    "FLAG_UART", "FLAG_SEQUENCE", "FLAG_NAMES", "LINK_ERROR_FLAGS",
    "ProtocolError", "crc8", "encode_frame", "Frame", "Parser",
    "event_word", "end_step_word", "end_sample_word", "decode_word", "sample_words",
    "words_to_frames", "ResultAnswer", "StatusAnswer", "VersionAnswer", "decode_answer",
    "model_id", "describe_flags",
    "Deframer", "Framer", "Answerer",
]

FLAG = 0x7E
ESC = 0x7D
ESC_XOR = 0x20
PROTOCOL_VERSION = 1
#: Largest number of words in one frame.
MAX_WORDS = 64

# frame types
EVENTS, RESET, STATUS, VERSION = 0x01, 0x02, 0x03, 0x04
RESULT, STATUS_ANSWER, VERSION_ANSWER = 0x81, 0x82, 0x83

#: Allowed LEN range (inclusive) of each frame type the board accepts.
HOST_TYPES = {EVENTS: (1, MAX_WORDS), RESET: (0, 0), STATUS: (0, 0), VERSION: (0, 0)}
#: Allowed LEN range of each frame type the host accepts.
BOARD_TYPES = {RESULT: (4, MAX_WORDS), STATUS_ANSWER: (6, 6), VERSION_ANSWER: (5, 5)}

# event word kinds
KIND_EVENT, KIND_END_STEP, KIND_END_SAMPLE, KIND_RESERVED = 0, 1, 2, 3
X_BITS = Y_BITS = 14
P_BITS = 2

# sticky error flags (RESULT and STATUS_ANSWER word "flags"); cleared by RESET
FLAG_STATE_OVERFLOW = 1 << 0   # some layer clamped its state (contract step 3)
FLAG_EVENT_RANGE = 1 << 1      # an input event outside the input shape was dropped
FLAG_DROPPED = 1 << 2          # event words were dropped: the event buffer was full
FLAG_BAD_FRAME = 1 << 3        # a malformed frame was received and dropped
FLAG_UART = 1 << 4             # the UART saw a framing error or an overrun
FLAG_SEQUENCE = 1 << 5         # tokens out of order (step count != T, reserved kind)
#: Flags that mean lost or damaged input (the host tool fails on them); a state overflow
#: is defined behaviour of the integer rules and only reported.
LINK_ERROR_FLAGS = FLAG_EVENT_RANGE | FLAG_DROPPED | FLAG_BAD_FRAME | FLAG_UART | FLAG_SEQUENCE
FLAG_NAMES = {FLAG_STATE_OVERFLOW: "state overflow", FLAG_EVENT_RANGE: "event out of range",
              FLAG_DROPPED: "events dropped", FLAG_BAD_FRAME: "bad frames",
              FLAG_UART: "UART errors", FLAG_SEQUENCE: "token sequence"}


#: The event word as an Amaranth layout (fields from bit 0 up), for the board top:
#: ``data.View(WORD_LAYOUT, word)`` gives ``.x``, ``.y``, ``.p``, ``.kind``; for tokens the
#: step index or sample id is ``word[:16]``.
WORD_LAYOUT = data.StructLayout({"x": X_BITS, "y": Y_BITS, "p": P_BITS, "kind": 2})


class ProtocolError(ValueError):
    """A value that the protocol cannot carry, or an answer that makes no sense."""


def describe_flags(flags):
    """Human-readable list of the set error flags (``"none"`` when clear)."""
    names = [name for bit, name in FLAG_NAMES.items() if flags & bit]
    unknown = flags & ~sum(FLAG_NAMES)
    if unknown:
        names.append(f"unknown 0x{unknown:x}")
    return ", ".join(names) or "none"


# -- CRC and framing ----------------------------------------------------------------------

def _crc8_table():
    table = []
    for b in range(256):
        c = b
        for _ in range(8):
            c = ((c << 1) ^ 0x07) & 0xFF if c & 0x80 else (c << 1) & 0xFF
        table.append(c)
    return table


_CRC_TABLE = _crc8_table()


def crc8(body, crc=0):
    """CRC-8/SMBUS (poly 0x07, init 0) of ``body``; 0 over a body that ends in its CRC."""
    for b in body:
        crc = _CRC_TABLE[crc ^ b]
    return crc


def encode_frame(ftype, words=()):
    """One frame as bytes: ``FLAG, stuffed(TYPE, LEN, words LE, CRC), FLAG``."""
    words = [int(w) for w in words]
    if not 0 <= ftype <= 0xFF:
        raise ProtocolError(f"frame type {ftype} is not a byte")
    if len(words) > MAX_WORDS:
        raise ProtocolError(f"{len(words)} words do not fit one frame (max {MAX_WORDS})")
    body = bytearray([ftype, len(words)])
    for w in words:
        if not 0 <= w <= 0xFFFFFFFF:
            raise ProtocolError(f"word {w} does not fit 32 bits")
        body += w.to_bytes(4, "little")
    body.append(crc8(body))
    out = bytearray([FLAG])
    for b in body:
        if b in (FLAG, ESC):
            out += bytes([ESC, b ^ ESC_XOR])
        else:
            out.append(b)
    out.append(FLAG)
    return bytes(out)


@dataclass(frozen=True)
class Frame:
    """A received, checked frame."""
    type: int
    words: tuple


class Parser:
    """Streaming frame decoder: feed bytes in any pieces, get checked frames.

    Parameters
    ----------
    accept : dict
        ``{type: (min_len, max_len)}`` of the frame types this end accepts
        (:data:`HOST_TYPES` on the board, :data:`BOARD_TYPES` on the host).

    Attributes
    ----------
    bad_frames : int
        Non-empty pieces between flags that failed a check (see the module docstring).
    frames : int
        Good frames decoded.
    """

    def __init__(self, accept):
        self.accept = dict(accept)
        self.bad_frames = 0
        self.frames = 0
        self._body = bytearray()
        self._esc = False
        self._open = False          # bytes (or an escape) seen since the last flag

    def feed(self, chunk):
        """Decode ``chunk`` (bytes); returns the list of good :class:`Frame` completed."""
        out = []
        for b in chunk:
            if b == FLAG:
                if self._open:
                    frame = self._check()
                    if frame is None:
                        self.bad_frames += 1
                    else:
                        self.frames += 1
                        out.append(frame)
                self._body = bytearray()
                self._esc = False
                self._open = False
            elif b == ESC and not self._esc:
                self._esc = True
                self._open = True
            else:
                self._body.append(b ^ ESC_XOR if self._esc else b)
                self._esc = False
                self._open = True
        return out

    def _check(self):
        body = self._body
        if self._esc or len(body) < 3:
            return None
        ftype, n = body[0], body[1]
        if ftype not in self.accept:
            return None
        lo, hi = self.accept[ftype]
        if not lo <= n <= hi or len(body) != 3 + 4 * n or crc8(body) != 0:
            return None
        words = tuple(int.from_bytes(body[2 + 4 * i:6 + 4 * i], "little") for i in range(n))
        return Frame(ftype, words)


# -- event words ----------------------------------------------------------------------------

def event_word(p, y, x):
    """The 32-bit word of one input event (checks the field widths)."""
    if not (0 <= x < 1 << X_BITS and 0 <= y < 1 << Y_BITS and 0 <= p < 1 << P_BITS):
        raise ProtocolError(f"event (p={p}, y={y}, x={x}) does not fit the event word "
                            f"(x, y < {1 << X_BITS}, p < {1 << P_BITS})")
    return (KIND_EVENT << 30) | (p << 28) | (y << 14) | x


def end_step_word(k):
    return (KIND_END_STEP << 30) | (k & 0xFFFF)


def end_sample_word(sample_id):
    return (KIND_END_SAMPLE << 30) | (sample_id & 0xFFFF)


def decode_word(w):
    """``(kind, fields)``: ``(0, (p, y, x))``, ``(1, step)``, ``(2, sample_id)`` or ``(3, w)``."""
    kind = (w >> 30) & 3
    if kind == KIND_EVENT:
        return kind, ((w >> 28) & 3, (w >> 14) & 0x3FFF, w & 0x3FFF)
    if kind in (KIND_END_STEP, KIND_END_SAMPLE):
        return kind, w & 0xFFFF
    return kind, w


def check_shape(shape):
    """Raise :class:`ProtocolError` when an input shape ``(P, H, W)`` does not fit the words."""
    P, H, W = shape
    if P > 1 << P_BITS or H > 1 << Y_BITS or W > 1 << X_BITS:
        raise ProtocolError(f"input shape {tuple(shape)} does not fit the event word "
                            f"(P <= {1 << P_BITS}, H, W <= {1 << X_BITS})")


def sample_words(binned, sample_id):
    """All words of one binned sample, in sending order (``uint32`` array).

    Every step's sources in ascending flat index, each repeated ``count`` times, then
    an end-of-step word; after the last step an end-of-sample word.
    """
    check_shape(binned.shape)
    P, H, W = binned.shape
    out = []
    for k in range(binned.timesteps):
        src, count = binned.step(k)
        p, y, x = src // (H * W), (src // W) % H, src % W
        ev = (p.astype(np.uint64) << 28) | (y.astype(np.uint64) << 14) | x.astype(np.uint64)
        out.append(np.repeat(ev, count))
        out.append(np.array([end_step_word(k)], dtype=np.uint64))
    out.append(np.array([end_sample_word(sample_id)], dtype=np.uint64))
    return np.concatenate(out).astype(np.uint32)


def words_to_frames(words, max_words=MAX_WORDS):
    """Pack words into ``EVENTS`` frames of at most ``max_words`` words (bytes)."""
    words = [int(w) for w in words]
    return b"".join(encode_frame(EVENTS, words[i:i + max_words])
                    for i in range(0, len(words), max_words))


# -- answers --------------------------------------------------------------------------------

def _s32(w):
    return w - (1 << 32) if w & 0x80000000 else w


@dataclass
class ResultAnswer:
    """``RESULT``: one sample's outcome."""
    sample_id: int
    prediction: int
    cycles: int
    flags: int
    scores: list = field(default_factory=list)

    def words(self):
        return [(self.sample_id & 0xFFFF) | (self.prediction & 0xFFFF) << 16,
                self.cycles & 0xFFFFFFFF, self.flags & 0xFFFFFFFF,
                *[int(s) & 0xFFFFFFFF for s in self.scores]]

    def encode(self):
        return encode_frame(RESULT, self.words())


@dataclass
class StatusAnswer:
    """``STATUS_ANSWER``: sticky flags and counters since the last RESET."""
    flags: int
    bad_frames: int
    dropped_events: int
    uart_errors: int
    samples: int
    last_cycles: int

    def words(self):
        return [self.flags, self.bad_frames, self.dropped_events, self.uart_errors,
                self.samples, self.last_cycles]

    def encode(self):
        return encode_frame(STATUS_ANSWER, [w & 0xFFFFFFFF for w in self.words()])


@dataclass
class VersionAnswer:
    """``VERSION_ANSWER``: what the board runs (checked by the host before sending)."""
    protocol: int
    max_words: int
    n_classes: int
    shape: tuple          # (P, H, W)
    timesteps: int
    count_clip: int
    dt_us: int
    model_id: int

    def words(self):
        P, H, W = self.shape
        return [self.protocol | self.max_words << 8 | self.n_classes << 16,
                W | H << 16, P | self.count_clip << 8 | self.timesteps << 16,
                self.dt_us, self.model_id]

    def encode(self):
        return encode_frame(VERSION_ANSWER, self.words())

    @classmethod
    def for_model(cls, model):
        return cls(PROTOCOL_VERSION, MAX_WORDS, model.n_classes, tuple(model.input.shape),
                   model.input.timesteps, model.input.count_clip, model.input.dt_us,
                   model_id(model))


def decode_answer(frame):
    """The answer dataclass of a board-to-host :class:`Frame`."""
    w = frame.words
    if frame.type == RESULT:
        return ResultAnswer(w[0] & 0xFFFF, w[0] >> 16, w[1], w[2], [_s32(s) for s in w[3:]])
    if frame.type == STATUS_ANSWER:
        return StatusAnswer(*w)
    if frame.type == VERSION_ANSWER:
        return VersionAnswer(w[0] & 0xFF, (w[0] >> 8) & 0xFF, w[0] >> 16,
                             (w[2] & 0xFF, w[1] >> 16, w[1] & 0xFFFF), w[2] >> 16,
                             (w[2] >> 8) & 0xFF, w[3], w[4])
    raise ProtocolError(f"frame type 0x{frame.type:02x} is not an answer")


def model_id(model):
    """A 32-bit fingerprint of a model's integer content (input, layers, readout).

    The board reports it in ``VERSION_ANSWER`` so that the host can check that the
    board runs the model it was given.
    """
    h = hashlib.sha256()
    inp = model.input
    h.update(repr((tuple(inp.shape), inp.dt_us, inp.timesteps, inp.count_clip,
                   model.readout)).encode())
    for layer in model.layers:
        h.update(repr((layer.name, layer.type, tuple(layer.in_shape), tuple(layer.out_shape),
                       layer.kernel, layer.stride, layer.padding, layer.weight_bits,
                       layer.state_bits, layer.acc_bits, layer.beta_num,
                       layer.beta_frac_bits, layer.reset)).encode())
        for arr in (layer.weights, layer.bias, layer.threshold):
            h.update(b"-" if arr is None else np.ascontiguousarray(arr, dtype=np.int64).tobytes())
    return int.from_bytes(h.digest()[:4], "little")


# -- Amaranth blocks ------------------------------------------------------------------------

def _crc8_matrix():
    # the CRC step is linear over GF(2): output bit i is the XOR of the input bits
    # j (of crc ^ byte) whose single-bit CRC has bit i set
    return [[j for j in range(8) if _CRC_TABLE[1 << j] >> i & 1] for i in range(8)]


_CRC_MATRIX = _crc8_matrix()


def crc8_next(crc, byte):
    """CRC-8/SMBUS of one more byte as an Amaranth expression (8 bits, an XOR network)."""
    c = crc ^ byte
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

    Applies the framing rules of the module docstring to ``bytes_in`` (always ready,
    one byte per cycle). The words of an ``EVENTS`` frame are written into a buffer
    as they arrive and become visible on ``events`` only when the frame has passed
    every check; a malformed frame is rolled back and counted in ``bad_frames``. A
    good frame that does not fit the free space of the buffer is dropped whole and
    its words are counted in ``dropped_events`` (sticky ``overflow``). Good command
    frames put their TYPE on ``commands`` (a 4-deep queue; ``command_overrun`` when
    it is full); a good ``RESET`` frame also empties the buffer and clears the
    counters and flags here.

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
        n = Signal(9)               # body bytes so far (saturating)
        esc = Signal()
        opened = Signal()
        crc = Signal(8)
        ftype = Signal(8)
        length = Signal(8)
        word = Signal(32)
        nbyte = Signal(2)           # bytes of the current word so far
        nword = Signal(7)           # payload words seen (saturating at 127)
        frame_ovf = Signal()

        b = self.bytes_in.payload
        d = Signal(8)
        m.d.comb += [self.bytes_in.ready.eq(1), d.eq(Mux(esc, b ^ ESC_XOR, b))]
        is_events = ftype == EVENTS
        type_ok = Signal()
        len_ok = Signal()
        with m.Switch(ftype):
            for t, (lo, hi) in HOST_TYPES.items():
                with m.Case(t):
                    m.d.comb += [type_ok.eq(1), len_ok.eq((length >= lo) & (length <= hi))]
        good = Signal()
        m.d.comb += good.eq(~esc & (n >= 3) & type_ok & len_ok
                            & (n == 3 + (length << 2)) & (crc == 0))

        def reset_frame():
            m.d.sync += [n.eq(0), esc.eq(0), opened.eq(0), crc.eq(0), nbyte.eq(0),
                         nword.eq(0), frame_ovf.eq(0)]

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
                m.d.sync += [esc.eq(0), opened.eq(1), crc.eq(crc8_next(crc, d))]
                with m.If(n != 511):
                    m.d.sync += n.eq(n + 1)
                with m.If(n == 0):
                    m.d.sync += ftype.eq(d)
                with m.Elif(n == 1):
                    m.d.sync += length.eq(d)
                with m.Else():
                    m.d.sync += [word.eq(Cat(word[8:], d)), nbyte.eq(nbyte + 1)]
                    with m.If(nbyte == 3):
                        with m.If(nword != 127):
                            m.d.sync += nword.eq(nword + 1)
                        with m.If(is_events & (nword < length) & (length <= MAX_WORDS)):
                            with m.If(~full):
                                m.d.comb += [wp.addr.eq(wr[:abits]), wp.data.eq(Cat(word[8:], d)),
                                             wp.en.eq(1)]
                                m.d.sync += wr.eq(wr + 1)
                            with m.Else():
                                m.d.sync += frame_ovf.eq(1)

        with m.If(self.clear | flush):
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
        nbyte = Signal(2)
        nword = Signal(8)
        crc = Signal(8)
        sent = raw_valid & raw_ready

        with m.FSM():
            with m.State("IDLE"):
                m.d.comb += self.items.ready.eq(1)
                with m.If(self.items.valid):
                    m.d.sync += [ftype.eq(self.items.payload[:8]),
                                 length.eq(self.items.payload[8:16]), nword.eq(0), crc.eq(0)]
                    m.next = "SOF"
            with m.State("SOF"):
                m.d.comb += [raw_valid.eq(1), raw_flag.eq(1), raw_data.eq(FLAG)]
                with m.If(sent):
                    m.next = "TYPE"
            with m.State("TYPE"):
                m.d.comb += [raw_valid.eq(1), raw_data.eq(ftype)]
                with m.If(sent):
                    m.d.sync += crc.eq(crc8_next(crc, ftype))
                    m.next = "LEN"
            with m.State("LEN"):
                m.d.comb += [raw_valid.eq(1), raw_data.eq(length)]
                with m.If(sent):
                    m.d.sync += crc.eq(crc8_next(crc, length))
                    m.next = "LEN_NEXT"
            with m.State("LEN_NEXT"):
                with m.If(nword == length):
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
                    m.d.sync += [crc.eq(crc8_next(crc, word[:8])), word.eq(word >> 8),
                                 nbyte.eq(nbyte + 1)]
                    with m.If(nbyte == 3):
                        m.d.sync += nword.eq(nword + 1)
                        m.next = "LEN_NEXT"
            with m.State("CRC"):
                m.d.comb += [raw_valid.eq(1), raw_data.eq(crc)]
                with m.If(sent):
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
