"""The command line of ``bench/hw_resources.py``: bad sweep points and worker options are
one-line errors with exit status 2 and nothing written (the syntheses themselves run in
``python bench/hw_resources.py``; the Ray path of ``--sweep`` shares
:mod:`bench.distributed` with ``bench.e2e``, tested in test_distributed.py)."""

import sys

import pytest

from bench.hw_resources import main
from sim.cli import main_guard


@pytest.mark.parametrize("args, words", [
    (["--sweep", "3,x"], ["--sweep", "'3,x'"]),
    (["--sweep", "3,2", "6"], ["--sweep", "'6'"]),
    (["--sweep", "3,2", "0,2"], ["--sweep", "'0,2'"]),
    (["--digits-lanes", "3,2,1"], ["--digits-lanes", "'3,2,1'"]),
    (["--workers", "2"], ["--workers", "--sweep"]),
    (["--sweep", "3,2", "--workers", "0"], ["--workers", "at least 1"]),
])
def test_bad_input(tmp_path, capsys, args, words):
    out = tmp_path / "hw.json"
    rc = main_guard(main, [*args, "--out", str(out)], prog="python bench/hw_resources.py")
    err = capsys.readouterr().err
    assert rc == 2
    assert all(w in err for w in words), err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert not out.exists()


def test_sweep_workers_need_ray(tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)          # import ray -> ImportError
    out = tmp_path / "hw.json"
    rc = main_guard(main, ["--sweep", "3,2", "6,2", "--workers", "2", "--out", str(out)],
                    prog="python bench/hw_resources.py")
    err = capsys.readouterr().err
    assert rc == 2
    assert "--workers 2" in err and "pip install -e .[scale]" in err
    assert len(err.strip().splitlines()) == 1
    assert not out.exists()


def test_only_choices_and_groups():
    from bench.hw_resources import GROUPS, V2_FREE
    from bench.v2_models import MODELS
    assert set(V2_FREE) == set(MODELS)
    assert GROUPS["v2"] == tuple(V2_FREE) and GROUPS["chains"] == ("camera", "digits")


def test_delay_memory_sizing():
    """The delay lines' memory from the sizing rule (S = d + D slots of N * m events of
    the c, y, x bits of the source shape), counted here from the model's shapes."""
    from bench.hw_resources import BRAM36_BITS, delay_memory
    from bench.v2_models import delay_net, recurrent_net, sts_resnet

    def bits(n):
        return max(1, (n - 1).bit_length())

    dn = delay_net()
    syn = dn.layers[0].synapses[0]
    C, H, W = dn.input.shape
    want = (syn.delay + syn.taps) * (C * H * W * dn.input.count_clip) * (bits(C) + bits(H) +
                                                                         bits(W))
    mem = delay_memory(dn)
    assert [(m["layer"], m["synapse"]) for m in mem["lines"]] == [("conv", 0)]
    assert mem["bits"] == want and mem["bram36_equiv"] == want / BRAM36_BITS
    rn = recurrent_net()
    rec = rn.layers[0]
    mem = delay_memory(rn)
    assert [(m["layer"], m["source"], m["delay"]) for m in mem["lines"]] == [("rec", "rec", 1)]
    assert mem["lines"][0]["slots"] == 2 and mem["lines"][0]["capacity"] == rec.n_out
    assert delay_memory(sts_resnet())["bits"] == 0


def test_fit_and_baseline():
    from bench.hw_resources import CHAIN_BASELINE, XC7A35T, fit_xc7a35t, vs_baseline
    base = CHAIN_BASELINE["camera"]
    r = {"lut": int(base["lut"] * 1.05), "bram36": base["bram36"], "dsp": 0, "ff": 100}
    assert vs_baseline("camera", dict(r))["within_5pct"]
    assert not vs_baseline("camera", dict(r, lut=int(base["lut"] * 1.06)))["within_5pct"]
    assert not vs_baseline("camera", dict(r, bram36=base["bram36"] * 1.06))["within_5pct"]
    half = {"lut": XC7A35T["lut"] // 2, "bram36": XC7A35T["bram36"] / 2, "dsp": 0, "ff": 0}
    assert fit_xc7a35t(dict(half), 0.30)["pass"]
    assert not fit_xc7a35t(dict(half, lut=int(XC7A35T["lut"] * 0.71)), 0.30)["pass"]
    assert fit_xc7a35t(dict(half, lut=XC7A35T["lut"]), 0.0)["pass"]
    assert not fit_xc7a35t(dict(half, lut=XC7A35T["lut"] + 1), 0.0)["pass"]
    assert not fit_xc7a35t(dict(half, dsp=XC7A35T["dsp"] + 1), 0.0)["pass"]
