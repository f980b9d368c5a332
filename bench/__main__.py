"""``python -m bench [--rerun-all] [--samples N]``: the benchmark report.

Recomputes the cheap figures (latency from the cycle model, energy), reuses the saved
JSON of the expensive benchmarks (the synthesis sweep; with ``--rerun-all`` it is redone),
and writes ``bench/results/report.md`` with PNG plots (see :mod:`bench.report`). The
other benchmarks keep their own commands (``python -m bench.e2e``,
``python -m bench.reference_speed``, ``python bench/hw_throughput.py``,
``python bench/hw_resources.py``, ``python -m bench.sim_speed``); the report reads their
JSONs and states their dates.
"""

from sim.cli import ArgumentParser, CliError, run_main


def main(argv=None):
    ap = ArgumentParser(prog="python -m bench", description=__doc__.split("\n")[0])
    ap.add_argument("--rerun-all", action="store_true",
                    help="recompute the expensive parts (synthesis sweep) too")
    ap.add_argument("--samples", type=int, default=8,
                    help="test samples per model for the latency figures (default 8)")
    args = ap.parse_args(argv)
    if args.samples < 1:
        raise CliError(f"--samples: {args.samples} must be at least 1")
    from .report import RESULTS, build
    summary = build(rerun_all=args.rerun_all, samples=args.samples)
    for k, v in summary.items():
        print(f"{k:32s} {v:,.3f}" if isinstance(v, float) else f"{k:32s} {v}")
    print(f"wrote {RESULTS / 'report.md'}")
    return 0


if __name__ == "__main__":
    run_main(main, prog="python -m bench")
