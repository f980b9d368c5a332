"""The board's host link: UART pins to checked input words, results back to the host.

:class:`HostLink` holds everything between the UART pins and the network top:

``rx -> UART -> Deframer -> input check -> events`` (to the network), and
``result_valid / scores -> Answerer -> Framer -> UART -> tx``.

It answers ``STATUS`` and ``VERSION`` itself, turns ``RESET`` into a one-cycle
``net_reset`` pulse (and clears its flags and counters), and checks the input words
before the network sees them (docs/protocol.md, "Error flags"):

- an event outside the input shape ``(P, H, W)`` is dropped (flag *event out of range*);
- an event or end-of-step after ``T`` end-of-step tokens, and any word of the reserved
  kind, are dropped (flag *token sequence*); an end-of-sample after a number of steps
  other than ``T`` is passed on but flagged.

So the network receives only in-range events and, per sample, ``T`` end-of-step
tokens followed by one end-of-sample token. When it has the scores of the sample it
raises ``result_valid`` for one cycle; the link latches prediction and scores then
and sends the ``RESULT`` frame with the sample id of the end-of-sample token, the
cycles from the sample's first word to ``result_valid``, and the sticky flags. (One
result may wait while an earlier answer is on the line; a second ``result_valid``
before it has started replaces it: at 2 Mbaud a RESULT of 10 classes takes 0.4 ms.)
"""

from amaranth import Module, Mux, Signal, signed
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from sim.geometry import END_SAMPLE, END_STEP, RESERVED, SPIKE

from . import protocol as pr
from .protocol_rtl import WORD_LAYOUT, Answerer, Deframer, Framer
from .uart import UART, pin_members

__all__ = ["HostLink"]


class HostLink(wiring.Component):
    """UART, protocol and input checks between the pins and the network.

    Parameters
    ----------
    divisor : int
        UART clock cycles per bit (:func:`boards.uart.baud_divisor`).
    version : boards.protocol.VersionAnswer
        What the board runs (input shape, T, model id...), usually
        ``VersionAnswer.for_model(model)``.
    score_width : int
        Width of the network's signed scores.
    depth : int
        Event buffer depth in words.

    Attributes
    ----------
    rx : In(1), tx : Out(1)
        The UART pins.
    events : Out(stream.Signature(32))
        Checked event and token words for the network.
    net_reset : Out(1)
        One-cycle pulse on a good ``RESET`` frame.
    result_valid : In(1)
        One-cycle strobe from the network: ``prediction`` and ``scores`` hold the
        finished sample's outcome.
    prediction : In(16)
    scores : In(data.ArrayLayout(signed(score_width), n_classes))
    state_overflow : In(1)
        The network's overflow indication (any cycle it is high sets the sticky flag).
    flags : Out(32)
        The sticky error flags (for LEDs).
    """

    def __init__(self, divisor, version, score_width=32, depth=256):
        self.divisor = divisor
        self.version = version
        self.depth = depth
        self.score_width = score_width
        super().__init__({
            **pin_members(),
            "events": Out(stream.Signature(32)),
            "net_reset": Out(1),
            "result_valid": In(1),
            "prediction": In(16),
            "scores": In(data.ArrayLayout(signed(score_width), version.n_classes)),
            "state_overflow": In(1),
            "flags": Out(32),
        })

    def elaborate(self, platform):
        m = Module()
        v = self.version
        P, H, W = v.shape
        T = v.timesteps
        m.submodules.uart = uart = UART(self.divisor, counter_width=32)
        m.submodules.deframer = deframer = Deframer(depth=self.depth)
        m.submodules.answerer = answerer = Answerer(v.n_classes, self.score_width, v)
        m.submodules.framer = framer = Framer()
        m.d.comb += [uart.rx.eq(self.rx), self.tx.eq(uart.tx)]
        wiring.connect(m, uart.rx_stream, deframer.bytes_in)
        wiring.connect(m, answerer.items, framer.items)
        wiring.connect(m, framer.bytes_out, uart.tx_stream)

        flags = Signal(32)
        clear = Signal()
        m.d.comb += [uart.clear.eq(clear), deframer.clear.eq(clear)]

        # -- a register stage after the deframer's buffer: the block RAM's read data
        # (5.6 ns clock-to-output on ECP5) then drives nothing but flip-flops, which keeps
        # the input check off the critical path (one cycle of latency, full throughput)
        q_valid = Signal()
        q_word = Signal(32)
        q_ready = Signal()
        m.d.comb += deframer.events.ready.eq(~q_valid | q_ready)
        with m.If(deframer.events.valid & deframer.events.ready):
            m.d.sync += [q_valid.eq(1), q_word.eq(deframer.events.payload)]
        with m.Elif(q_ready):
            m.d.sync += q_valid.eq(0)
        with m.If(clear):
            m.d.sync += q_valid.eq(0)

        # -- input check between the deframer and the network
        w = q_word
        word = data.View(WORD_LAYOUT, w)
        kind = word.kind
        step = Signal(range(T + 1))
        out_of_range = (kind == SPIKE) & ((word.p >= P) | (word.y >= H) | (word.x >= W))
        late = ((kind == SPIKE) | (kind == END_STEP)) & (step == T)
        reserved = kind == RESERVED
        drop = out_of_range | late | reserved
        m.d.comb += [
            self.events.payload.eq(w),
            self.events.valid.eq(q_valid & ~drop),
            q_ready.eq(self.events.ready | drop),
        ]
        taken = q_valid & q_ready
        passed = taken & ~drop

        sample_id = Signal(16)
        running = Signal()
        cycles = Signal(32)
        last_cycles = Signal(32)
        samples = Signal(32)
        range_error = Signal()
        sequence_error = Signal()

        with m.If(taken):
            m.d.comb += [range_error.eq(out_of_range), sequence_error.eq(late | reserved)]
        with m.If(passed):
            m.d.sync += running.eq(1)
            with m.If(kind == END_STEP):
                m.d.sync += step.eq(step + 1)
            with m.If(kind == END_SAMPLE):
                m.d.sync += [step.eq(0), sample_id.eq(w[:pr.TOKEN_BITS])]
                with m.If(step != T):
                    m.d.comb += sequence_error.eq(1)
        with m.If(running & (cycles != 0xFFFFFFFF)):
            m.d.sync += cycles.eq(cycles + 1)
        new_flags = Signal(32)
        for cond, bit in ((self.state_overflow, pr.FLAG_STATE_OVERFLOW),
                          (range_error, pr.FLAG_EVENT_RANGE),
                          (deframer.overflow, pr.FLAG_DROPPED),
                          (deframer.bad_frames != 0, pr.FLAG_BAD_FRAME),
                          (uart.framing_error | (uart.overruns != 0), pr.FLAG_UART),
                          (sequence_error, pr.FLAG_SEQUENCE)):
            m.d.comb += new_flags[bit.bit_length() - 1].eq(cond)
        m.d.sync += flags.eq(flags | new_flags)
        m.d.comb += self.flags.eq(flags | new_flags)

        # -- answers: one pending request of each kind, RESULT first
        want_result = Signal()
        want_status = Signal()
        want_version = Signal()
        # the outcome is latched here: the network may start the next sample at once
        res_id = Signal(16)
        res_pred = Signal(16)
        res_scores = Signal.like(self.scores)
        res_flags = Signal(32)
        with m.If(self.result_valid):
            m.d.sync += [want_result.eq(1), running.eq(0), cycles.eq(0),
                         last_cycles.eq(cycles), samples.eq(samples + 1),
                         res_id.eq(sample_id), res_pred.eq(self.prediction),
                         res_scores.eq(self.scores), res_flags.eq(self.flags)]
        # a STATUS_ANSWER reports the state when its command arrived (after a RESET: zeros)
        st_flags, st_bad, st_dropped, st_uart, st_samples, st_last = (
            Signal(32, name=f"st_{n}") for n in ("flags", "bad", "dropped", "uart", "samples",
                                                 "last"))
        snapshot = [st_flags.eq(self.flags), st_bad.eq(deframer.bad_frames),
                    st_dropped.eq(deframer.dropped_events),
                    st_uart.eq(uart.framing_errors + uart.overruns),
                    st_samples.eq(samples), st_last.eq(last_cycles)]
        m.d.comb += deframer.commands.ready.eq(1)
        with m.If(deframer.commands.valid):
            with m.Switch(deframer.commands.payload):
                with m.Case(pr.RESET):
                    m.d.comb += [self.net_reset.eq(1), clear.eq(1)]
                    m.d.sync += [flags.eq(0), samples.eq(0), last_cycles.eq(0), step.eq(0),
                                 running.eq(0), cycles.eq(0), want_status.eq(1),
                                 *[st.eq(0) for st in (st_flags, st_bad, st_dropped, st_uart,
                                                       st_samples, st_last)]]
                with m.Case(pr.STATUS):
                    m.d.sync += [want_status.eq(1), *snapshot]
                with m.Case(pr.VERSION):
                    m.d.sync += want_version.eq(1)

        m.d.comb += [
            answerer.sample_id.eq(res_id), answerer.prediction.eq(res_pred),
            answerer.cycles.eq(last_cycles), answerer.scores.eq(res_scores),
            answerer.flags.eq(Mux(want_result, res_flags, st_flags)),
            answerer.bad_frames.eq(st_bad), answerer.dropped_events.eq(st_dropped),
            answerer.uart_errors.eq(st_uart), answerer.samples.eq(st_samples),
            answerer.last_cycles.eq(st_last),
        ]
        with m.If(want_result):
            m.d.comb += [answerer.request.valid.eq(1), answerer.request.payload.eq(pr.RESULT)]
            with m.If(answerer.request.ready):
                m.d.sync += want_result.eq(0)
        with m.Elif(want_status):
            m.d.comb += [answerer.request.valid.eq(1),
                         answerer.request.payload.eq(pr.STATUS_ANSWER)]
            with m.If(answerer.request.ready):
                m.d.sync += want_status.eq(0)
        with m.Elif(want_version):
            m.d.comb += [answerer.request.valid.eq(1),
                         answerer.request.payload.eq(pr.VERSION_ANSWER)]
            with m.If(answerer.request.ready):
                m.d.sync += want_version.eq(0)
        return m

