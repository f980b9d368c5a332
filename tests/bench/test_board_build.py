"""bench/board_build.py without the builds (minutes each, run by hand): bad input is a
one-line error with exit status 2 and nothing written, and the version-2 target's model
directory is the model of bench.v2_models."""

import numpy as np
import pytest

from bench.board_build import BUILDS, main, v2_model_dir
from sim.cli import main_guard
from sim.model import load_model

PROG = "python bench/board_build.py"


def test_bad_out(tmp_path, capsys):
    rc = main_guard(main, ["--only", "arty_a7", "--out", str(tmp_path / "no" / "b.json")],
                    prog=PROG)
    err = capsys.readouterr().err
    assert rc == 2 and "does not exist" in err and len(err.strip().splitlines()) == 1
    bad = tmp_path / "b.json"
    bad.write_text("[")
    rc = main_guard(main, ["--only", "arty_a7", "--out", str(bad)], prog=PROG)
    assert rc == 2 and "not a JSON file" in capsys.readouterr().err
    assert bad.read_text() == "["


def test_bad_only(tmp_path, capsys):
    with pytest.raises(SystemExit) as e:
        main(["--only", "nope", "--out", str(tmp_path / "b.json")])
    assert e.value.code == 2 and "nope" in capsys.readouterr().err
    assert not (tmp_path / "b.json").exists()


def test_v2_model_dir(tmp_path):
    from bench.v2_models import INPUT_ACTIVITY, sts_resnet
    assert BUILDS["sts_resnet"] == ("ulx3s_85f", "sts_resnet")
    d, extra = v2_model_dir("sts_resnet", tmp_path)
    assert extra == ["--inputs", "random", "--activity", str(INPUT_ACTIVITY)]
    got, want = load_model(d), sts_resnet()
    assert [l.name for l in got.layers] == [l.name for l in want.layers]
    for a, b in zip(got.layers, want.layers):
        assert np.array_equal(a.threshold, b.threshold)
        for sa, sb in zip(a.synapses, b.synapses):
            assert (sa.weights is None and sb.weights is None) or \
                np.array_equal(sa.weights, sb.weights)
