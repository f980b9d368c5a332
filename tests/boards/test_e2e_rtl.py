"""End to end without a board: the host tool talks through a pseudo-terminal to the RTL
board top (UART, protocol, input checks, the generated network) in simulation, and its
answers equal the NumPy reference."""

import numpy as np

from boards.simboard import SimBoard
from sim.events import bin_events, make_events
from sim.randmodel import model_from_spec
from sim.reference import run as reference_run
from tests.boards.simutil import assert_answers_equal_reference, host_against_board


def test_host_against_rtl_board_top(tmp_path, capsys):
    rng = np.random.default_rng(3)
    model = model_from_spec([("conv2d", 2, 3, 2, 1), ("linear", 4)], rng, input_shape=(2, 5, 5),
                            timesteps=3, thresholds=[150, 300])
    inp = model.input
    erng = np.random.default_rng(8)
    samples = [(make_events(inp.shape, 40, 3000, erng), i % 4) for i in range(4)]
    refs = [reference_run(model, bin_events(ev, inp.shape, 3, inp.dt_us), record=False)
            for ev, _ in samples]
    # the samples are not all alike (a test that could fail on a wrong arg-max or score)
    assert len({tuple(int(s) for s in r.scores) for r in refs}) > 1
    board = SimBoard(model, divisor=4)                 # BoardTop: HostLink + Network
    assert board.top is not None
    rc, res = host_against_board(board, model, samples, tmp_path, timeout=120)
    text = capsys.readouterr().out
    assert rc == 0, text
    assert_answers_equal_reference(res, refs)
    assert res["summary"]["status"]["flags"] == 0
    assert "4/4 answers equal" in text
    # the LEDs show the last prediction (4 classes: two LEDs) and "a result was sent"
    plan = board.top.plan
    assert board.leds & 3 == int(refs[-1].prediction)
    assert board.leds >> plan.index("result") & 1 == 1
