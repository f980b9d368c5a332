"""bench.report.v2_section: the version-2 targets' figures of the benchmark JSONs appear
in the report lines and the summary, and a missing JSON names the command to run."""

from bench.report import V2_NAMES, v2_section


def _hw(name, lut, bram, free, ok):
    return {"neurons": 100, "lanes": [4, 2], "lut": lut, "ff": 10, "bram36": bram, "dsp": 0,
            "lut_left": 1 - lut / 20800, "bram_left": 1 - bram / 50, "required_free": free,
            "pass": ok, "delay_memory": {"bits": 180224, "bram36_equiv": 4.89, "lines": []}}


def test_section_with_figures():
    hw = {"sts_resnet": _hw("sts_resnet", 12345, 20.5, 0.3, True),
          "camera": {"lut": 8000, "bram36": 16.5, "sweep": "sparse", "lut_ratio": 1.025,
                     "bram_ratio": 1.0, "within_5pct": True,
                     "baseline": {"lut": 7805, "bram36": 16.5}}}
    m = {"sweep": "sparse", "lanes": [4], "latency_us_mean": 321.5, "latency_cycles_min": 30000,
         "latency_cycles_max": 34000, "samples_per_s": 3110.0, "stream_duration_s": 0.008,
         "real_time_factor": 24.9}
    lat = {"command": "python -m bench.v2_latency", "date": "today", "method": "cycle model",
           "clock_hz": 1e8,
           "models": {"delay_net": {"inputs": "2 random samples", "sweeps": {"sparse": m}}},
           "digits": {"baseline_us": 39.427, "sweeps": {"dense": {
               "latency_us_mean": 39.43, "samples": 360, "ratio_to_baseline": 1.0,
               "within_5pct": True}}}}
    boards = {"cpus": 2, "ulx3s_85f_sts_resnet": {
        "command": "python -m hw.build --board ulx3s_85f", "wall_s": 900.0,
        "report": {"place_and_route": {"fmax_mhz": 101.5, "fmax_target_mhz": 100.0,
                                       "fmax_met": True}}}}
    summary = {}
    text = "\n".join(v2_section(hw, lat, boards, summary))
    assert "| sts_resnet | 100 | [4, 2] | 12,345 (41 %)" in text
    assert "180,224 (4.89)" in text
    assert "x1.025 of 7,805" in text
    assert "| delay_net | 2 random samples | sparse | 321.5 (30,000..34,000)" in text
    assert "24.9" not in text and "25 x" in text           # real-time factor, no decimals
    assert "39.43 µs mean of 360 samples (x1.000): within 5 %" in text
    assert "101.50 MHz after routing" in text and "met" in text
    assert summary["v2_sts_resnet_lut"] == 12345 and summary["v2_sts_resnet_pass"] is True
    assert summary["v2_delay_net_sparse_real_time_factor"] == 24.9
    assert summary["v2_sts_resnet_ecp5_fmax_mhz"] == 101.5


def test_section_without_json():
    text = "\n".join(v2_section(None, None, None, {}))
    assert "python bench/hw_resources.py --only v2" in text
    assert "python -m bench.v2_latency" in text
    assert "python bench/board_build.py --only sts_resnet" in text
    assert list(V2_NAMES) == ["sts_resnet", "delay_net", "recurrent_net"]
