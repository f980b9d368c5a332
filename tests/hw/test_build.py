"""python -m hw.build: writes the Verilog; bad input gives one line, exit 2, no file."""

import numpy as np

from hw.build import main
from hw.generate import generate
from sim.model import save_model
from sim.randmodel import model_from_spec


def _model():
    rng = np.random.default_rng(3)
    return model_from_spec([("conv2d", 2, 3, 2, 1), ("linear", 3)], rng,
                           input_shape=(2, 6, 6), timesteps=2)


def test_cli_writes_file_and_rejects_bad_input(tmp_path, capsys):
    save_model(_model(), tmp_path / "m")
    out = tmp_path / "top.v"
    assert main([str(tmp_path / "m"), "-o", str(out)]) == 0
    assert out.read_text() == generate(tmp_path / "m")
    assert main([str(tmp_path / "missing"), "-o", str(tmp_path / "x.v")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "missing" in err[0]
    assert not (tmp_path / "x.v").exists()
    assert main([str(tmp_path / "m"), "-o", str(tmp_path / "y.v"), "--lanes", "0"]) == 2
    assert not (tmp_path / "y.v").exists()


def test_cli_module_name_permissions_and_replacing_its_own_file(tmp_path):
    import os

    from hw.build import check_module_name
    from sim.cli import CliError
    save_model(_model(), tmp_path / "m")
    out = tmp_path / "top.v"
    out.write_text("an older top.v")
    mask = os.umask(0o022)
    try:
        assert main([str(tmp_path / "m"), "-o", str(out), "--name", "net_2a"]) == 0
    finally:
        os.umask(mask)
    assert out.read_text() == generate(tmp_path / "m", name="net_2a")
    assert "\nmodule net_2a(" in out.read_text()
    assert out.stat().st_mode & 0o777 == 0o644
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m", "top.v"]
    for bad in ("snn top", "", "1top", "$top", "top$1", "module", "a-b", "top\n"):
        try:
            check_module_name(bad)
        except CliError as e:
            assert repr(bad) in str(e)
        else:
            raise AssertionError(f"{bad!r} was accepted")


def test_cli_banks(tmp_path, capsys):
    """--banks N or LAYER=N: the Verilog of the banked network; a layer that cannot be
    banked, an unknown layer or a bad spec is one line naming it, exit 2, no file."""
    model = _model()
    conv, lin = (layer.name for layer in model.layers)
    save_model(model, tmp_path / "m")
    out = tmp_path / "top.v"
    assert main([str(tmp_path / "m"), "-o", str(out), "--banks", f"{conv}=2"]) == 0
    text = out.read_text()
    assert text == generate(tmp_path / "m", banks={conv: 2})
    assert text != generate(tmp_path / "m")
    assert main([str(tmp_path / "m"), "-o", str(tmp_path / "n.v"), "--banks", "3"]) == 0
    capsys.readouterr()
    for spec, words in [(f"{lin}=2", [lin, "linear"]), ("nope=2", ["nope"]),
                        ("two", ["two"]), (f"{conv}=9", [conv, "more than"])]:
        bad = tmp_path / "bad.v"
        assert main([str(tmp_path / "m"), "-o", str(bad), "--banks", spec]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and all(w in err[0] for w in words), err
        assert not bad.exists()
