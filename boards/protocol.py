"""The framed event protocol between the host and the board (over the UART): the host codec.

Both directions use the same framing; docs/protocol.md has the tables. This module is
plain Python (no Amaranth): the host tool and the board emulator parse and build frames
with it. The board side of the same rules is :mod:`boards.protocol_rtl`.

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
    CRC (4 bytes, little endian)``; at most :data:`MAX_BODY` bytes.

CRC
    CRC-32/ISO-HDLC, the 32-bit frame check sequence of HDLC (RFC 1662, FCS-32) and of
    zlib (:func:`zlib.crc32`): polynomial 0x04C11DB7 (reflected 0xEDB88320), initial
    value 0xFFFFFFFF, input and output reflected, final XOR 0xFFFFFFFF; check value
    ``crc32(b"123456789") = 0xCBF43926`` (:data:`CRC_CHECK`). It covers TYPE, LEN and
    the payload and is sent least significant byte first, so the CRC of the whole body
    including its CRC is the constant :data:`CRC_RESIDUE` (the board's check). It
    detects every error burst of up to 32 bits and every error of up to 4 bits in one
    frame (Hamming distance 5 up to 2,974 data bits in Koopman's tables; the longest
    body covers 2,064); any other corruption passes with probability 2**-32. (CRC-8
    let about 1 in 256 corrupted frames through, and a fuzz run found dozens; CRC-16
    would still let 1 in 65,536 of the corrupted frames with a legal type and length
    through, about 3 in the 10^6 mutated frames of bench/protocol_fuzz.py.)

Frame checks (a failure counts one *bad frame* and drops the frame)
    the body has at least :data:`MIN_BODY` and at most :data:`MAX_BODY` bytes; TYPE is
    known to the receiver; LEN is allowed for TYPE; the body has exactly
    ``MIN_BODY + 4 * LEN`` bytes; the CRC matches; the frame does not end in a dangling
    escape byte. A receiver keeps no more than the longest legal body of a piece (the
    host :class:`Parser` at most ``2 * MAX_BODY`` stuffed bytes, the board's deframer
    counts to ``MAX_BODY + 1``), so a stream without flags costs no memory.

Frame types, host to board
    ``EVENTS`` (0x01, LEN 1..64): input event words. ``RESET`` (0x02), ``STATUS`` (0x03),
    ``VERSION`` (0x04): commands, LEN 0. RESET clears the network state, the event
    buffer, the error flags and the counters, and is answered by a STATUS frame.

Frame types, board to host
    ``RESULT`` (0x81, LEN 3 + n_classes): sent after every end-of-sample token.
    ``STATUS_ANSWER`` (0x82, LEN 6) and ``VERSION_ANSWER`` (0x83, LEN 5).

Event words (32 bits, :data:`WORD_FIELDS` from bit 0 up; ``kind`` in bits 31:30)
    kind :data:`~sim.geometry.SPIKE` (0), an input event: ``p`` in bits 29:28, ``y`` in
    bits 27:14, ``x`` in bits 13:0; kind :data:`~sim.geometry.END_STEP` (1): step index
    (mod 2**16) in bits 15:0; kind :data:`~sim.geometry.END_SAMPLE` (2): sample id in
    bits 15:0; kind :data:`~sim.geometry.RESERVED` (3) is reserved. The kinds are those
    of every token stream of the project (:mod:`sim.geometry`). The fields allow inputs
    of up to 16384 x 16384 pixels and 4 polarities. (Two full 16-bit coordinates, a
    polarity and a kind tag do not fit one 32-bit word; 14 bits cover every event
    sensor made so far, the largest being 1280 x 720.)

One sample
    the host bins the sample with :func:`sim.events.bin_events` and sends, for every
    step ``k = 0 .. T-1``, the step's distinct sources in ascending flat index (a
    count ``c`` as ``c`` copies of the event word) followed by an end-of-step word,
    empty steps included, then one end-of-sample word. The words are packed into
    ``EVENTS`` frames of at most :data:`MAX_WORDS` words. The board answers with one
    ``RESULT`` frame.
"""

from __future__ import annotations

import hashlib
import re
import zlib
from dataclasses import dataclass, field

import numpy as np

from sim.geometry import END_SAMPLE, END_STEP, KIND_BITS, SPIKE

__all__ = [
    "FLAG", "ESC", "ESC_XOR", "PROTOCOL_VERSION", "MAX_WORDS", "WORD_BYTES",
    "HEADER_BYTES", "CRC_BYTES", "MIN_BODY", "MAX_BODY", "CRC_POLY", "CRC_INIT", "CRC_XOROUT",
    "CRC_CHECK", "CRC_RESIDUE",
    "EVENTS", "RESET", "STATUS", "VERSION", "RESULT", "STATUS_ANSWER", "VERSION_ANSWER",
    "HOST_TYPES", "BOARD_TYPES", "WORD_FIELDS", "X_BITS", "Y_BITS", "P_BITS", "TOKEN_BITS",
    "FLAG_STATE_OVERFLOW", "FLAG_EVENT_RANGE", "FLAG_DROPPED", "FLAG_BAD_FRAME",
    "FLAG_UART", "FLAG_SEQUENCE", "FLAG_NAMES", "LINK_ERROR_FLAGS",
    "ProtocolError", "crc32", "encode_frame", "Frame", "Parser",
    "event_word", "end_step_word", "end_sample_word", "decode_word", "check_shape",
    "sample_words", "words_to_counts", "words_to_frames", "ResultAnswer", "StatusAnswer", "VersionAnswer",
    "decode_answer", "model_id", "describe_flags",
]

FLAG = 0x7E
ESC = 0x7D
ESC_XOR = 0x20
PROTOCOL_VERSION = 2
#: Largest number of words in one frame.
MAX_WORDS = 64
#: Bytes of one payload word.
WORD_BYTES = 4
#: TYPE and LEN.
HEADER_BYTES = 2
#: Bytes of the frame CRC (CRC-32, sent least significant byte first).
CRC_BYTES = 4
#: Shortest body (a frame without payload words).
MIN_BODY = HEADER_BYTES + CRC_BYTES
#: Longest body: :data:`MAX_WORDS` payload words. Every receiver stops buffering here.
MAX_BODY = MIN_BODY + WORD_BYTES * MAX_WORDS
#: CRC-32/ISO-HDLC parameters (as in the CRC catalogue; reflected input and output).
CRC_POLY = 0x04C11DB7
CRC_INIT = 0xFFFFFFFF
CRC_XOROUT = 0xFFFFFFFF
#: CRC-32/ISO-HDLC of ``b"123456789"`` (the catalogue's check value).
CRC_CHECK = 0xCBF43926
#: CRC-32 of any body that ends in its own CRC (little endian): what a receiver checks.
CRC_RESIDUE = 0x2144DF1C

# frame types
EVENTS, RESET, STATUS, VERSION = 0x01, 0x02, 0x03, 0x04
RESULT, STATUS_ANSWER, VERSION_ANSWER = 0x81, 0x82, 0x83

#: Allowed LEN range (inclusive) of each frame type the board accepts.
HOST_TYPES = {EVENTS: (1, MAX_WORDS), RESET: (0, 0), STATUS: (0, 0), VERSION: (0, 0)}
#: Allowed LEN range of each frame type the host accepts.
BOARD_TYPES = {RESULT: (4, MAX_WORDS), STATUS_ANSWER: (6, 6), VERSION_ANSWER: (5, 5)}

X_BITS = Y_BITS = 14
P_BITS = 2
#: The event word's fields from bit 0 up, ``(name, width)``; the board's
#: :data:`boards.protocol_rtl.WORD_LAYOUT` is built from it.
WORD_FIELDS = (("x", X_BITS), ("y", Y_BITS), ("p", P_BITS), ("kind", KIND_BITS))
#: Width of the step index / sample id field (bits 15:0) of a token word.
TOKEN_BITS = 16
_WORD_BITS = 32
_SHIFT = {}
_bit = 0
for _name, _width in WORD_FIELDS:
    _SHIFT[_name] = _bit
    _bit += _width
assert _bit == _WORD_BITS, "the event word fields must fill 32 bits"
del _bit, _name, _width
_TOKEN_MASK = (1 << TOKEN_BITS) - 1

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

def crc32(data, crc=0):
    """CRC-32/ISO-HDLC of ``data`` (:func:`zlib.crc32`), continuing from ``crc``.

    ``crc32(body + crc32(body).to_bytes(4, "little")) == CRC_RESIDUE`` for every body.
    """
    return zlib.crc32(data, crc)


_STUFF = ((bytes([ESC]), bytes([ESC, ESC ^ ESC_XOR])), (bytes([FLAG]), bytes([ESC, FLAG ^ ESC_XOR])))
_ESCAPED = re.compile(re.escape(bytes([ESC])) + b"(.)", re.DOTALL)


def _stuff(body):
    for byte, escaped in _STUFF:          # ESC first: the FLAG's escape adds ESC bytes
        body = body.replace(byte, escaped)
    return body


def _unstuff(raw):
    """``(body, dangling)``: ``raw`` with every escape pair resolved; ``dangling`` when it
    ends in an escape byte that has no partner."""
    if ESC not in raw:
        return raw, False
    run = len(raw) - len(raw.rstrip(bytes([ESC])))
    body = _ESCAPED.sub(lambda m: bytes([m.group(1)[0] ^ ESC_XOR]), raw)
    return body, run % 2 == 1


def encode_frame(ftype, words=()):
    """One frame as bytes: ``FLAG, stuffed(TYPE, LEN, words LE, CRC LE), FLAG``."""
    words = [int(w) for w in words]
    if not 0 <= ftype <= 0xFF:
        raise ProtocolError(f"frame type {ftype} is not a byte")
    if len(words) > MAX_WORDS:
        raise ProtocolError(f"{len(words)} words do not fit one frame (max {MAX_WORDS})")
    body = bytearray([ftype, len(words)])
    for w in words:
        if not 0 <= w < 1 << _WORD_BITS:
            raise ProtocolError(f"word {w} does not fit {_WORD_BITS} bits")
        body += w.to_bytes(WORD_BYTES, "little")
    body += crc32(body).to_bytes(CRC_BYTES, "little")
    return bytes([FLAG]) + _stuff(bytes(body)) + bytes([FLAG])


@dataclass(frozen=True)
class Frame:
    """A received, checked frame."""
    type: int
    words: tuple


#: Stuffed bytes of the longest legal body (every byte escaped); the :class:`Parser`
#: stops buffering a piece beyond this.
_RAW_LIMIT = 2 * MAX_BODY
_FLAG_BYTE = bytes([FLAG])


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
    crc_errors : int
        Those of the bad frames that passed every check but the CRC.
    frames : int
        Good frames decoded.

    Notes
    -----
    A piece longer than the longest legal body is a bad frame; the parser keeps at most
    ``2 * MAX_BODY`` bytes of it (the stuffed longest body), so memory stays bounded
    however long the line goes without a flag.
    """

    def __init__(self, accept):
        self.accept = dict(accept)
        self.bad_frames = 0
        self.crc_errors = 0
        self.frames = 0
        self._raw = bytearray()         # stuffed bytes since the last flag
        self._overlong = False          # ... and there were more than _RAW_LIMIT

    @property
    def buffered(self):
        """Bytes of the open piece held (at most ``2 * MAX_BODY``)."""
        return len(self._raw)

    def feed(self, chunk):
        """Decode ``chunk`` (bytes); returns the list of good :class:`Frame` completed."""
        out = []
        for i, piece in enumerate(bytes(chunk).split(_FLAG_BYTE)):
            if i:                       # a flag ended the open piece
                if self._raw or self._overlong:
                    frame = self._check()
                    if frame is None:
                        self.bad_frames += 1
                    else:
                        self.frames += 1
                        out.append(frame)
                self._raw = bytearray()
                self._overlong = False
            if not self._overlong:
                self._raw += piece
                if len(self._raw) > _RAW_LIMIT:
                    self._overlong = True
                    self._raw = bytearray()
        return out

    def _check(self):
        if self._overlong:
            return None
        body, dangling = _unstuff(bytes(self._raw))
        if dangling or not MIN_BODY <= len(body) <= MAX_BODY:
            return None
        ftype, n = body[0], body[1]
        if ftype not in self.accept:
            return None
        lo, hi = self.accept[ftype]
        if not lo <= n <= hi or len(body) != MIN_BODY + WORD_BYTES * n:
            return None
        if crc32(body) != CRC_RESIDUE:
            self.crc_errors += 1
            return None
        words = tuple(int.from_bytes(body[HEADER_BYTES + WORD_BYTES * i:
                                          HEADER_BYTES + WORD_BYTES * (i + 1)], "little")
                      for i in range(n))
        return Frame(ftype, words)


# -- event words ----------------------------------------------------------------------------

def _field(w, name, width):
    return (w >> _SHIFT[name]) & ((1 << width) - 1)


def event_word(p, y, x):
    """The 32-bit word of one input event (checks the field widths)."""
    if not (0 <= x < 1 << X_BITS and 0 <= y < 1 << Y_BITS and 0 <= p < 1 << P_BITS):
        raise ProtocolError(f"event (p={p}, y={y}, x={x}) does not fit the event word "
                            f"(x, y < {1 << X_BITS}, p < {1 << P_BITS})")
    return (SPIKE << _SHIFT["kind"]) | (p << _SHIFT["p"]) | (y << _SHIFT["y"]) | x << _SHIFT["x"]


def end_step_word(k):
    """The end-of-step token of step ``k`` (the index mod ``2**TOKEN_BITS``)."""
    return (END_STEP << _SHIFT["kind"]) | (k & _TOKEN_MASK)


def end_sample_word(sample_id):
    """The end-of-sample token with ``sample_id`` (mod ``2**TOKEN_BITS``)."""
    return (END_SAMPLE << _SHIFT["kind"]) | (sample_id & _TOKEN_MASK)


def decode_word(w):
    """``(kind, fields)`` of a word: ``(SPIKE, (p, y, x))``, ``(END_STEP, step)``,
    ``(END_SAMPLE, sample_id)`` or ``(RESERVED, w)`` (kinds of :mod:`sim.geometry`)."""
    kind = _field(w, "kind", KIND_BITS)
    if kind == SPIKE:
        return kind, (_field(w, "p", P_BITS), _field(w, "y", Y_BITS), _field(w, "x", X_BITS))
    if kind in (END_STEP, END_SAMPLE):
        return kind, w & _TOKEN_MASK
    return kind, w


def check_shape(shape):
    """Raise :class:`ProtocolError` when an input shape ``(P, H, W)`` does not fit the words."""
    P, H, W = shape
    if P > 1 << P_BITS or H > 1 << Y_BITS or W > 1 << X_BITS:
        raise ProtocolError(f"input shape {tuple(shape)} does not fit the event word "
                            f"(P <= {1 << P_BITS}, H <= {1 << Y_BITS}, W <= {1 << X_BITS})")


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
        ev = ((np.uint64(SPIKE) << np.uint64(_SHIFT["kind"]))
              | (p.astype(np.uint64) << np.uint64(_SHIFT["p"]))
              | (y.astype(np.uint64) << np.uint64(_SHIFT["y"]))
              | (x.astype(np.uint64) << np.uint64(_SHIFT["x"])))
        out.append(np.repeat(ev, count))
        out.append(np.array([end_step_word(k)], dtype=np.uint64))
    out.append(np.array([end_sample_word(sample_id)], dtype=np.uint64))
    return np.concatenate(out).astype(np.uint32)


def words_to_counts(words, shape, timesteps):
    """The input of a word stream, the inverse of :func:`sample_words`.

    Parameters
    ----------
    words : iterable of int
        Event and token words of one sample (as a board's input check passes them:
        in range, at most ``timesteps`` end-of-step tokens before the events).
    shape : tuple
        ``(P, H, W)``.
    timesteps : int

    Returns
    -------
    numpy.ndarray of int64, shape ``(timesteps, P, H, W)``
        Events per step and source (``BinnedEvents.from_frames`` takes it); the step
        advances at every end-of-step token; other tokens are ignored.
    """
    P, H, W = shape
    counts = np.zeros((timesteps, P, H, W), dtype=np.int64)
    k = 0
    for w in words:
        kind, f = decode_word(w)
        if kind == SPIKE:
            counts[(k, *f)] += 1
        elif kind == END_STEP:
            k += 1
    return counts


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
    """A 32-bit fingerprint of a model's integer content (input, layers with every
    synapse and neuron field of contract version 2, readout).

    The board reports it in ``VERSION_ANSWER`` so that the host can check that the
    board runs the model it was given.
    """
    def array(arr):
        h.update(b"-" if arr is None else np.ascontiguousarray(arr, dtype=np.int64).tobytes())

    h = hashlib.sha256()
    inp = model.input
    h.update(repr((tuple(inp.shape), inp.dt_us, inp.timesteps, inp.count_clip,
                   model.readout)).encode())
    for i, layer in enumerate(model.layers):
        cur = layer.current
        h.update(repr((layer.name, tuple(layer.out_shape), layer.state_bits, layer.acc_bits,
                       layer.beta_num, layer.beta_frac_bits, layer.reset, layer.spike_limit,
                       layer.v_min, None if cur is None else
                       (cur.beta_num, cur.beta_frac_bits, cur.state_bits))).encode())
        array(layer.bias)
        array(layer.threshold)
        for syn in layer.synapses:
            h.update(repr((model.source_of(i, syn), syn.type, syn.kernel, syn.stride,
                           syn.padding, syn.weight_bits, syn.delay, syn.taps)).encode())
            array(syn.weights)
    return int.from_bytes(h.digest()[:4], "little")
