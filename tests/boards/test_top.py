"""The board top: elaborates for every board, answers like the reference at its pins,
shows the prediction and the flags on the LEDs, and recovers from a reset mid-sample."""

import numpy as np
import pytest
from amaranth.sim import Simulator

from boards import protocol as pr
from boards.platforms import BOARDS, get_board
from boards.top import BoardTop, led_plan
from sim.events import BinnedEvents
from sim.randmodel import model_from_spec
from sim.reference import run as reference_run

DIV = 4


def small_model(seed=3):
    rng = np.random.default_rng(seed)
    return model_from_spec([("conv2d", 2, 3, 2, 1), ("linear", 4)], rng, input_shape=(2, 5, 5),
                           timesteps=3, thresholds=[150, 300])


def frames_of(model, rng, density):
    P, H, W = model.input.shape
    return (rng.random((model.input.timesteps, P, H, W)) < density).astype(np.int64)


@pytest.mark.parametrize("name", sorted(BOARDS))
def test_top_elaborates_for_every_board(name):
    board = get_board(name)
    model = small_model()
    top = BoardTop(model, board.uart_divisor(), board=board)
    plan = board.platform().build(top, name="snn_board", do_build=False)
    files = set(plan.files)
    if board.toolchain == "vivado":
        assert {"snn_board.v", "snn_board.xdc", "snn_board.tcl", "build_snn_board.sh"} <= files
        constraints = plan.files["snn_board.xdc"]
    else:
        assert "snn_board.il" in files and "build_snn_board.sh" in files
        constraints = plan.files["snn_board.lpf" if "snn_board.lpf" in files
                                 else "snn_board.pcf"]
    if isinstance(constraints, bytes):
        constraints = constraints.decode()
    # the pins the top asked for: UART, every LED of the registry, the button
    for pin in ["uart_0__rx__io", "uart_0__tx__io",
                *[f"{n}_{i}__io" for n, i in board.leds],
                f"{board.button[0]}_{board.button[1]}__io"]:
        assert pin in constraints, pin


def test_led_plan():
    assert led_plan(10, 4) == ["pred0", "pred1", "pred2", "pred3"]
    assert led_plan(10, 8) == ["pred0", "pred1", "pred2", "pred3", "error", "overflow", "result"]
    assert led_plan(4, 8)[:4] == ["pred0", "pred1", "error", "overflow"]
    assert led_plan(2, 2) == ["pred0", "error"]


class PinBench:
    """Bit-bangs host bytes onto ``rx`` and decodes ``tx`` into board frames."""

    def __init__(self, top):
        self.top = top
        self.parser = pr.Parser(pr.BOARD_TYPES)
        self.answers = []

    async def send(self, ctx, data):
        for b in data:
            for level in [0] + [(b >> i) & 1 for i in range(8)] + [1]:
                ctx.set(self.top.rx, level)
                await ctx.tick().repeat(DIV)

    async def monitor(self, ctx):
        while True:
            await ctx.negedge(self.top.tx)
            await ctx.tick().repeat(DIV + DIV // 2)
            byte = 0
            for i in range(8):
                byte |= ctx.get(self.top.tx) << i
                await ctx.tick().repeat(DIV)
            self.answers += [pr.decode_answer(f) for f in self.parser.feed(bytes([byte]))]

    async def wait_answers(self, ctx, n, limit=100_000):
        for _ in range(limit // 16):
            if len(self.answers) >= n:
                return
            await ctx.tick().repeat(16)
        raise AssertionError(f"waited for {n} answers, got {self.answers}")


def test_top_at_the_pins_reset_and_leds():
    model = small_model()
    rng = np.random.default_rng(5)
    busy = frames_of(model, rng, 0.6)            # an interrupted sample (lots of state)
    samples = [frames_of(model, rng, 0.4) for _ in range(2)]
    refs = [reference_run(model, BinnedEvents.from_frames(f), record=False) for f in samples]
    assert len({r.prediction for r in refs} | {tuple(r.scores) for r in refs}) > 2
    top = BoardTop(model, DIV, n_leds=8)
    assert top.plan == ["pred0", "pred1", "error", "overflow", "result"]
    pins = PinBench(top)
    seen = {}

    def words(frames, sid):
        return pr.sample_words(BinnedEvents.from_frames(frames), sid)

    def check_result(answer, k, sid):
        assert answer.sample_id == sid
        assert answer.prediction == refs[k].prediction
        assert list(answer.scores) == [int(s) for s in refs[k].scores]

    async def bench(ctx):
        ctx.set(top.rx, 1)
        await ctx.tick().repeat(20)
        # 1. a sample cut short by the button: the next sample starts from zero states
        part = words(busy, 9)
        await pins.send(ctx, pr.words_to_frames(part[:len(part) * 2 // 3]))
        await ctx.tick().repeat(400)
        ctx.set(top.button, 1)
        await ctx.tick().repeat(5)
        ctx.set(top.button, 0)
        await ctx.tick().repeat(50)
        await pins.send(ctx, pr.words_to_frames(words(samples[0], 1)))
        await pins.wait_answers(ctx, 1)
        check_result(pins.answers[0], 0, 1)
        await ctx.tick().repeat(20)
        leds = ctx.get(top.leds)
        seen["leds"] = leds
        assert leds & 3 == refs[0].prediction
        assert leds >> 4 & 1 == 1            # a result was sent
        # 2. a sample cut short by a RESET frame (answered with a zeroed STATUS)
        await pins.send(ctx, pr.words_to_frames(part[:len(part) // 2]))
        await ctx.tick().repeat(400)
        await pins.send(ctx, pr.encode_frame(pr.RESET))
        await pins.wait_answers(ctx, 2)
        st = pins.answers[1]
        assert isinstance(st, pr.StatusAnswer) and st.samples == 0 and st.flags == 0
        assert ctx.get(top.leds) >> 4 & 1 == 0   # reset clears the result LED
        await pins.send(ctx, pr.words_to_frames(words(samples[1], 2)))
        await pins.wait_answers(ctx, 3)
        check_result(pins.answers[2], 1, 2)
        # 3. an out-of-range event lights the error LED
        assert ctx.get(top.leds) >> 2 & 1 == 0
        await pins.send(ctx, pr.encode_frame(pr.EVENTS, [pr.event_word(0, 7, 0)]))
        await ctx.tick().repeat(100)
        assert ctx.get(top.leds) >> 2 & 1 == 1
        assert ctx.get(top.rgb_error) == 1

    sim = Simulator(top)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.add_testbench(pins.monitor, background=True)
    sim.run()
    assert "leds" in seen
