"""bench.v2_models: the version-2 target networks are valid graphs of the documented
shapes, and calibration puts their activity near the target."""

import numpy as np
import pytest

from bench import v2_models
from sim import reference
from sim.model import load_model


@pytest.mark.parametrize("name", sorted(v2_models.MODELS))
def test_model_valid_and_active(name, tmp_path):
    model = v2_models.MODELS[name]()
    assert v2_models.main([str(tmp_path)]) == 0
    again = load_model(tmp_path / name)
    assert [l.name for l in again.layers] == [l.name for l in model.layers]
    for a, b in zip(again.layers, model.layers):
        assert np.array_equal(a.threshold, b.threshold)
    result = reference.run(model, v2_models.sample(model, np.random.default_rng(11)))
    fire = [l for l in model.layers if not (model.readout == "membrane" and l is model.layers[-1])]
    # every firing layer is neither silent nor saturated on a fresh random input
    for layer in fire:
        rate = float(np.mean(result.spikes[layer.name] > 0))
        assert 0.002 < rate < 0.5, (layer.name, rate)


def test_shapes():
    sts = v2_models.sts_resnet()
    assert sts.input.shape == (2, 128, 128)
    joins = [l for l in sts.layers if len(l.synapses) == 2]
    assert len(joins) == 2 and all(l.synapses[1].type == "identity" for l in joins)
    assert sts.layers[-2].synapses[0].type == "sumpool2d" and sts.layers[-1].out_shape == (11,)
    dn = v2_models.delay_net()
    assert dn.input.shape == (2, 32, 32) and dn.layers[0].synapses[0].taps == 8
    rn = v2_models.recurrent_net()
    rec = rn.layers[0]
    assert rec.out_shape == (38,) and rec.current is not None
    assert any(s.source == "rec" and s.delay >= 1 for s in rec.synapses)
    assert rn.layers[-1].out_shape == (7,)


def test_cli_refuses_missing_dir(tmp_path, capsys):
    from sim.cli import run_main
    with pytest.raises(SystemExit) as e:
        run_main(v2_models.main, [str(tmp_path / "nope")], prog="python -m bench.v2_models")
    assert e.value.code == 2
    assert "nope" in capsys.readouterr().err
