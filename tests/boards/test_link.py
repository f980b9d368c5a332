"""The host link (UART + protocol + input checks) end to end at the pins, with the
bit-exact reference standing in for the network."""

import numpy as np

from boards import protocol as pr
from boards.link import HostLink
from sim.events import BinnedEvents, bin_events, make_events
from sim.geometry import END_SAMPLE
from sim.randmodel import model_from_spec
from sim.reference import run as reference_run
from tests.boards.simutil import run_sim, uart_capture, uart_drive

DIVISOR = 4


def test_link_end_to_end_at_the_pins():
    rng = np.random.default_rng(3)
    model = model_from_spec([("conv2d", 2, 3, 2, 1), ("linear", 5)], rng, input_shape=(2, 6, 7),
                            timesteps=3, thresholds=[3, 2])
    inp = model.input
    P, H, W = inp.shape
    T = inp.timesteps
    version = pr.VersionAnswer.for_model(model)
    dut = HostLink(DIVISOR, version, score_width=16, depth=64)

    binned = bin_events(make_events(inp.shape, 40, 3000, rng), inp.shape, T, inp.dt_us)
    words = pr.sample_words(binned, sample_id=0x1234).tolist()
    # inject words the link must drop: an event below the input, a reserved word,
    # an event after the T-th end-of-step token
    words.insert(3, pr.event_word(0, H, 0))
    words.insert(5, 0xC0000000)
    words.insert(len(words) - 1, pr.event_word(0, 0, 0))
    corrupted = bytearray(pr.encode_frame(pr.EVENTS, [pr.event_word(1, 1, 1)]))
    corrupted[2] ^= 0x40
    first = (pr.encode_frame(pr.VERSION) + pr.encode_frame(pr.RESET) + bytes(corrupted)
             + pr.words_to_frames(words, max_words=16))
    ref = reference_run(model, binned, record=False)

    got_words, answer_bytes, done = [], [], []

    async def host(ctx):
        await ctx.tick().repeat(10)
        await uart_drive(ctx, dut.rx, first, DIVISOR)
        # ask for the status once the result is back
        while not done:
            await ctx.tick().repeat(50)
        await uart_drive(ctx, dut.rx, pr.encode_frame(pr.STATUS), DIVISOR)

    async def network(ctx):
        ctx.set(dut.events.ready, 1)
        while True:
            _, _, valid, payload = await ctx.tick().sample(dut.events.valid, dut.events.payload)
            if valid:
                got_words.append(payload)
                if pr.decode_word(payload)[0] == END_SAMPLE:
                    break
        # the "network": the reference on the words it was given
        res = reference_run(model, BinnedEvents.from_frames(pr.words_to_counts(
            got_words, inp.shape, T)), record=False)
        await ctx.tick().repeat(20)
        ctx.set(dut.prediction, res.prediction)
        ctx.set(dut.scores, [int(s) for s in res.scores])
        ctx.set(dut.result_valid, 1)
        await ctx.tick()
        ctx.set(dut.result_valid, 0)
        ctx.set(dut.scores, [0] * model.n_classes)       # the link latched them

    def stop():
        frames = pr.Parser(pr.BOARD_TYPES).feed(bytes(answer_bytes))
        if any(f.type == pr.RESULT for f in frames) and not done:
            done.append(1)
        return len(frames) >= 4

    async def monitor(ctx):
        await uart_capture(ctx, dut.tx, DIVISOR, answer_bytes, stop)

    async def net_reset(ctx):
        assert not ctx.get(dut.net_reset)
        await ctx.tick().until(dut.net_reset)

    run_sim(dut, host, network, monitor, net_reset)

    # the network saw exactly the checked words: the injected ones are gone
    assert got_words == pr.sample_words(binned, 0x1234).tolist()
    parser = pr.Parser(pr.BOARD_TYPES)
    answers = [pr.decode_answer(f) for f in parser.feed(bytes(answer_bytes))]
    assert parser.bad_frames == 0 and len(answers) == 4
    assert answers[0] == version
    assert answers[1] == pr.StatusAnswer(0, 0, 0, 0, 0, 0)            # after RESET
    flags = pr.FLAG_BAD_FRAME | pr.FLAG_EVENT_RANGE | pr.FLAG_SEQUENCE
    result = answers[2]
    assert (result.sample_id, result.prediction, result.scores) == \
        (0x1234, ref.prediction, [int(s) for s in ref.scores])
    assert result.flags == flags and result.cycles > 0
    status = answers[3]
    assert (status.flags, status.bad_frames, status.samples, status.last_cycles) == \
        (flags, 1, 1, result.cycles)

    # the Python board model gives the same answers (it does not count cycles)
    from boards.emulator import BoardEmulator
    emu = BoardEmulator(model)
    emu_bytes = emu.feed(first) + emu.feed(pr.encode_frame(pr.STATUS))
    emu_answers = [pr.decode_answer(f) for f in pr.Parser(pr.BOARD_TYPES).feed(emu_bytes)]
    answers[2].cycles = 0
    answers[3].last_cycles = 0
    assert emu_answers == answers


def test_link_converts_to_verilog():
    from amaranth.back import verilog
    version = pr.VersionAnswer(pr.PROTOCOL_VERSION, pr.MAX_WORDS, 10, (2, 128, 128), 20, 1,
                               1000, 0x12345678)
    text = verilog.convert(HostLink(50, version, score_width=16, depth=256), name="host_link")
    assert "module host_link" in text and "input rx" in text.replace("wire ", "")
