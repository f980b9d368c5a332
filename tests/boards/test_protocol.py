"""The Python protocol codec: CRC, framing, resynchronization, event words, answers."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from boards import protocol as pr
from sim.events import BinnedEvents, bin_events, make_events


# -- helpers --------------------------------------------------------------------------

# words rich in the special bytes 0x7E and 0x7D
SPECIAL = st.sampled_from([0x7E7E7E7E, 0x7D7D7D7D, 0x7E7D007E, 0x0000007D, 0x7E000000])
WORD = st.one_of(st.integers(0, 0xFFFFFFFF), SPECIAL)


@st.composite
def host_frames(draw, max_frames=8):
    frames = []
    for _ in range(draw(st.integers(1, max_frames))):
        t = draw(st.sampled_from([pr.EVENTS, pr.EVENTS, pr.EVENTS, pr.RESET, pr.STATUS,
                                  pr.VERSION]))
        lo, hi = pr.HOST_TYPES[t]
        n = draw(st.integers(lo, min(hi, 12)))
        frames.append(pr.Frame(t, tuple(draw(st.lists(WORD, min_size=n, max_size=n)))))
    return frames


def encode_all(frames):
    """Bytes of all frames and the (first, last) byte index of each frame."""
    out = bytearray()
    spans = []
    for f in frames:
        b = pr.encode_frame(f.type, f.words)
        spans.append((len(out), len(out) + len(b) - 1))
        out += b
    return bytes(out), spans


def parse_in_chunks(parser, data, cuts):
    frames = []
    prev = 0
    for c in sorted(set(cuts)) + [len(data)]:
        c = min(c, len(data))
        frames += parser.feed(data[prev:c])
        prev = max(prev, c)
    return frames


def is_subsequence(small, big):
    it = iter(big)
    return all(any(x == y for y in it) for x in small)


# -- CRC and framing --------------------------------------------------------------------

def test_crc32_catalogue_check_value():
    # CRC-32/ISO-HDLC check value from the CRC catalogue (reveng): crc("123456789") = 0xCBF43926
    assert pr.crc32(b"123456789") == 0xCBF43926 == pr.CRC_CHECK
    rng = np.random.default_rng(0)
    for n in [0, 1, 2, 7, 262]:
        body = rng.integers(0, 256, n, dtype=np.uint8).tobytes()
        assert pr.crc32(body + pr.crc32(body).to_bytes(4, "little")) == pr.CRC_RESIDUE


def _crc(body):
    return pr.crc32(body).to_bytes(pr.CRC_BYTES, "little")


def test_frame_bytes_by_hand():
    # STATUS command: body 03 00 and its CRC-32, least significant byte first
    assert pr.encode_frame(pr.STATUS) == bytes([0x7E, 0x03, 0x00]) + _crc(b"\x03\x00") + b"\x7E"
    # a word with both special bytes is stuffed: 7E -> 7D 5E, 7D -> 7D 5D (little endian)
    raw = pr.encode_frame(pr.EVENTS, [0x00007D7E])
    assert raw[1:4] == bytes([0x01, 0x01, 0x7D]) and raw[4] == 0x5E
    assert raw[5:7] == bytes([0x7D, 0x5D]) and raw[7:9] == b"\x00\x00"
    assert raw[0] == raw[-1] == pr.FLAG and pr.FLAG not in raw[1:-1]


def test_encode_rejects_unencodable():
    with pytest.raises(pr.ProtocolError):
        pr.encode_frame(pr.EVENTS, [0] * (pr.MAX_WORDS + 1))
    with pytest.raises(pr.ProtocolError):
        pr.encode_frame(pr.EVENTS, [1 << 32])


@settings(max_examples=150)
@given(host_frames(), st.lists(st.integers(0, 400), max_size=6))
def test_round_trip_any_chunking(frames, cuts):
    data, _ = encode_all(frames)
    assert pr.FLAG not in b"".join(pr.encode_frame(f.type, f.words)[1:-1] for f in frames)
    parser = pr.Parser(pr.HOST_TYPES)
    assert parse_in_chunks(parser, data, cuts) == frames
    assert parser.bad_frames == 0


def test_malformed_frames_are_counted_and_skipped():
    good = pr.Frame(pr.EVENTS, (1, 2, 3))
    g = pr.encode_frame(good.type, good.words)
    body = bytearray([pr.EVENTS, 2]) + (5).to_bytes(4, "little") + (6).to_bytes(4, "little")
    bad_crc = bytes([pr.FLAG]) + bytes(body) + bytes([_crc(body)[0] ^ 1]) + _crc(body)[1:] \
        + bytes([pr.FLAG])
    assert pr.FLAG not in bad_crc[1:-1] and pr.ESC not in bad_crc[1:-1]
    short = bytes([pr.FLAG]) + bytes(body[:-4]) + _crc(body[:-4]) + bytes([pr.FLAG])
    assert pr.FLAG not in short[1:-1] and pr.ESC not in short[1:-1]
    unknown = pr.encode_frame(0x55, [1])
    too_long_cmd = pr.encode_frame(pr.STATUS, [0])          # STATUS takes LEN 0
    answer_type = pr.encode_frame(pr.RESULT, [0, 0, 0, 0])   # the board does not accept it
    dangling = bytes([pr.FLAG, pr.STATUS, 0, pr.ESC, pr.FLAG])
    tiny = bytes([pr.FLAG, 0x01, pr.FLAG])
    stream = (b"junk" + g + bad_crc + g + short + unknown + g + too_long_cmd + answer_type
              + dangling + tiny + g + b"\x7E\x7E\x7E" + g)
    parser = pr.Parser(pr.HOST_TYPES)
    assert parser.feed(stream) == [good] * 5
    # junk before the first flag, bad crc, short, unknown, too long, answer type,
    # dangling escape, tiny: 8 bad pieces; the empty pieces between flags are not counted
    assert parser.bad_frames == 8


@st.composite
def corrupted_stream(draw, substitutions_only=False):
    frames = draw(host_frames(max_frames=10))
    data, spans = encode_all(frames)
    ops = []
    hit = set()
    for _ in range(draw(st.integers(1, 6))):
        pos = draw(st.integers(0, len(data) - 1))
        if substitutions_only:
            # one run of 1..4 corrupted bytes per frame, no flag or escape created or
            # destroyed: the CRC alone must catch it (CRC-32 detects every burst of up
            # to 32 bits; CRC-8 let one such pair in 256 through)
            run = draw(st.integers(1, pr.CRC_BYTES))
            frame = next(j for j, (a, b) in enumerate(spans) if a <= pos <= b)
            if (frame in hit or pos + run - 1 > spans[frame][1]
                    or any(v in (pr.FLAG, pr.ESC) for v in data[pos:pos + run])):
                continue
            hit.add(frame)
            for i in range(run):
                value = draw(st.integers(0, 255).filter(
                    lambda v, o=data[pos + i]: v != o and v not in (pr.FLAG, pr.ESC)))
                ops.append((pos + i, "sub", value))
            continue
        else:
            kind = draw(st.sampled_from(["sub", "ins", "del"]))
            value = draw(st.one_of(st.integers(0, 255), st.sampled_from([pr.FLAG, pr.ESC])))
        ops.append((pos, kind, value))
    # apply from the end so that earlier positions stay valid
    out = bytearray(data)
    touched = set()
    applied = 0
    seen = set()
    for pos, kind, value in sorted(ops, key=lambda o: -o[0]):
        if pos in seen:
            continue
        seen.add(pos)
        if kind == "sub":
            if out[pos] == value:
                continue
            out[pos] = value
        elif kind == "del":
            del out[pos]
        else:
            out.insert(pos, value)
        applied += 1
        for j, (a, b) in enumerate(spans):
            if (a <= pos <= b) if kind != "ins" else (a < pos <= b):
                touched.add(j)
    cuts = draw(st.lists(st.integers(0, len(out)), max_size=5))
    return frames, bytes(out), touched, applied, cuts


@settings(max_examples=300)
@given(corrupted_stream())
def test_resync_after_corruption_loses_no_intact_frame(case):
    frames, data, touched, applied, cuts = case
    parser = pr.Parser(pr.HOST_TYPES)
    got = parse_in_chunks(parser, data, cuts)
    intact = [f for j, f in enumerate(frames) if j not in touched]
    assert is_subsequence(intact, got)
    # every decoded frame that is not an intact one comes from a corrupted region
    assert len(got) - len(intact) <= applied


@settings(max_examples=200)
@given(corrupted_stream(substitutions_only=True))
def test_substituted_bytes_are_always_detected(case):
    frames, data, touched, applied, cuts = case
    parser = pr.Parser(pr.HOST_TYPES)
    got = parse_in_chunks(parser, data, cuts)
    assert got == [f for j, f in enumerate(frames) if j not in touched]
    assert parser.bad_frames == len(touched)


# -- event words ----------------------------------------------------------------------------

def test_event_word_layout_by_hand():
    assert pr.event_word(0, 0, 0) == 0
    assert pr.event_word(1, 2, 3) == (1 << 28) | (2 << 14) | 3
    assert pr.event_word(3, 16383, 16383) == 0x3FFFFFFF
    assert pr.end_step_word(5) == 0x40000005
    assert pr.end_sample_word(0x1234) == 0x80001234
    assert pr.decode_word(0x3FFFFFFF) == (0, (3, 16383, 16383))
    assert pr.decode_word(0x40000005) == (1, 5)
    assert pr.decode_word(0x80001234) == (2, 0x1234)
    for bad in [(4, 0, 0), (0, 16384, 0), (0, 0, 16384), (-1, 0, 0)]:
        with pytest.raises(pr.ProtocolError):
            pr.event_word(*bad)


def test_sample_words_order_counts_and_tokens():
    # shape (P, H, W) = (2, 3, 4), T = 3; step 0: (p=1, y=2, x=3) x2 and (0, 0, 1);
    # step 1 empty; step 2: (0, 1, 0)
    frames = np.zeros((3, 2, 3, 4), dtype=np.int64)
    frames[0, 1, 2, 3] = 2
    frames[0, 0, 0, 1] = 1
    frames[2, 0, 1, 0] = 1
    words = pr.sample_words(BinnedEvents.from_frames(frames), sample_id=7).tolist()
    ev = lambda p, y, x: (p << 28) | (y << 14) | x  # noqa: E731
    assert words == [ev(0, 0, 1), ev(1, 2, 3), ev(1, 2, 3), 0x40000000,
                     0x40000001,
                     ev(0, 1, 0), 0x40000002,
                     0x80000007]


def test_sample_words_match_binned_events():
    rng = np.random.default_rng(3)
    shape = (2, 20, 30)
    ev = make_events(shape, 600, 5000, rng)
    binned = bin_events(ev, shape, timesteps=6, dt_us=1000, count_clip=3)
    words = pr.sample_words(binned, 1)
    frames = np.zeros((6, *shape), dtype=np.int64)
    k = 0
    for w in words.tolist():
        kind, f = pr.decode_word(w)
        if kind == 0:
            frames[(k, *f)] += 1
        elif kind == 1:
            assert f == k
            k += 1
        else:
            assert f == 1 and k == 6
    assert np.array_equal(frames, binned.to_frames())
    assert np.array_equal(pr.words_to_counts(words, shape, 6), binned.to_frames())
    data = pr.words_to_frames(words)
    got = pr.Parser(pr.HOST_TYPES).feed(data)
    assert all(f.type == pr.EVENTS and 1 <= len(f.words) <= pr.MAX_WORDS for f in got)
    assert [w for f in got for w in f.words] == words.tolist()


def test_shape_too_big_for_words():
    with pytest.raises(pr.ProtocolError, match="does not fit"):
        pr.sample_words(BinnedEvents.from_frames(np.zeros((1, 5, 2, 2))), 0)


# -- answers ----------------------------------------------------------------------------

def test_answers_round_trip():
    answers = [
        pr.ResultAnswer(513, 9, 123456, pr.FLAG_DROPPED, [-5, 0, 7, -2**31, 2**31 - 1]),
        pr.StatusAnswer(0x3F, 4, 1000, 2, 17, 99999),
        pr.VersionAnswer(1, 64, 10, (2, 128, 96), 20, 3, 1000, 0xDEADBEEF),
    ]
    data = b"".join(a.encode() for a in answers)
    parser = pr.Parser(pr.BOARD_TYPES)
    got = [pr.decode_answer(f) for f in parser.feed(data)]
    assert got == answers and parser.bad_frames == 0


def test_describe_flags():
    assert pr.describe_flags(0) == "none"
    assert pr.describe_flags(pr.FLAG_STATE_OVERFLOW | pr.FLAG_BAD_FRAME) == \
        "state overflow, bad frames"


# -- limits and dependencies -----------------------------------------------------------

def test_longest_legal_body_and_a_flagless_stream():
    longest = pr.encode_frame(pr.EVENTS, [0x7E7D7E7D] * pr.MAX_WORDS)    # every byte stuffed
    assert len(longest) - 2 > pr.MAX_BODY
    parser = pr.Parser(pr.HOST_TYPES)
    assert parser.feed(longest) == [pr.Frame(pr.EVENTS, (0x7E7D7E7D,) * pr.MAX_WORDS)]
    # 64 MB without a flag: one bad frame at the next flag, and the parser never holds
    # more than the longest stuffed body
    chunk = bytes(range(256)).replace(bytes([pr.FLAG]), b"") * 4096
    held = 0
    for _ in range(64):
        assert parser.feed(chunk) == []
        held = max(held, parser.buffered)
    assert held <= 2 * pr.MAX_BODY
    assert parser.feed(longest) == [pr.Frame(pr.EVENTS, (0x7E7D7E7D,) * pr.MAX_WORDS)]
    assert (parser.frames, parser.bad_frames) == (2, 1)
    # a body one word longer than the longest legal one is a bad frame even with a good CRC
    body = bytes([pr.EVENTS, pr.MAX_WORDS]) + bytes(pr.WORD_BYTES * (pr.MAX_WORDS + 1))
    piece = bytes([pr.FLAG]) + body + _crc(body) + bytes([pr.FLAG])
    assert parser.feed(piece) == [] and parser.bad_frames == 2


def test_crc_errors_are_counted_apart():
    frame = bytearray(pr.encode_frame(pr.STATUS))
    frame[3] ^= 0x01                   # a CRC byte (not a flag or an escape)
    parser = pr.Parser(pr.HOST_TYPES)
    assert parser.feed(bytes(frame) + b"\x7Ex\x7E") == []
    assert (parser.bad_frames, parser.crc_errors) == (2, 1)


@pytest.mark.parametrize("module", ["boards.protocol", "boards.host", "boards.emulator"])
def test_host_side_does_not_import_amaranth(module):
    import subprocess
    import sys
    code = (f"import sys, {module}; "
            "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('amaranth', 'hw')); "
            "assert not bad, bad")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_model_id_covers_graphs():
    """Every synapse and version-2 neuron field enters the fingerprint: changing any one
    of them changes the id (a board running another graph is detected)."""
    import copy

    from sim.model import Current
    from sim.randmodel import random_graph
    model = next(m for m in (random_graph(np.random.default_rng(s), n_layers=3)
                             for s in range(50)) if len(m.layers[-1].synapses) > 1)
    base = pr.model_id(model)
    assert pr.model_id(copy.deepcopy(model)) == base

    def changed(edit):
        m = copy.deepcopy(model)
        edit(m)
        return pr.model_id(m)

    last = -1
    edits = [
        lambda m: setattr(m.layers[last].synapses[1], "delay", m.layers[last].synapses[1].delay + 1),
        lambda m: setattr(m.layers[last].synapses[1], "source", "input"
                          if m.source_of(len(m.layers) - 1, m.layers[last].synapses[1]) != "input"
                          else m.layers[0].name),
        lambda m: m.layers[last].synapses.pop(),
        lambda m: setattr(m.layers[0], "spike_limit", m.layers[0].spike_limit + 1),
        lambda m: setattr(m.layers[0], "v_min", -1 if m.layers[0].v_min != -1 else -2),
        lambda m: setattr(m.layers[0], "current", Current(beta_num=1, beta_frac_bits=1,
                                                          state_bits=7)
                          if m.layers[0].current is None else None),
    ]
    for k, edit in enumerate(edits):
        assert changed(edit) != base, k
    w = next(s for layer in model.layers for s in layer.synapses if s.weights is not None)

    def bump(m):
        ws = next(s for layer in m.layers for s in layer.synapses if s.weights is not None)
        ws.weights.flat[0] += 1
    assert w is not None and changed(bump) != base
