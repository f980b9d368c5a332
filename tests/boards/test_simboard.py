"""The host tool against the board's RTL link in simulation (reference as the network)."""

import numpy as np

from boards.simboard import SimBoard
from sim.events import bin_events, make_events
from sim.randmodel import model_from_spec
from sim.reference import run as reference_run
from tests.boards.simutil import assert_answers_equal_reference, host_against_board


def test_host_against_simulated_link(tmp_path, capsys):
    rng = np.random.default_rng(12)
    model = model_from_spec([("conv2d", 2, 3, 2, 1), ("linear", 4)], rng, input_shape=(2, 5, 5),
                            timesteps=3, thresholds=[3, 2])
    inp = model.input
    samples = [(make_events(inp.shape, 25, 3000, rng), i % 4) for i in range(3)]
    refs = [reference_run(model, bin_events(ev, inp.shape, 3, inp.dt_us), record=False)
            for ev, _ in samples]
    board = SimBoard(model, divisor=4, network="reference")
    rc, res = host_against_board(board, model, samples, tmp_path, timeout=60)
    text = capsys.readouterr().out
    assert rc == 0, text
    # the RTL counted cycles from each sample's first word to its result
    assert_answers_equal_reference(res, refs)
    assert "3/3 answers equal" in text
