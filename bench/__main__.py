"""``python -m bench [--rerun-all [--dry-run]] [--samples N]``: the benchmark report.

Recomputes the cheap figures (latency from the cycle model, energy), reuses the saved
JSON of the expensive benchmarks (with ``--rerun-all`` they are rerun first, each with its
own command, and the synthesis sweep is redone),
and writes ``bench/results/report.md`` with PNG plots (see :mod:`bench.report`). The
other benchmarks keep their own commands (``python -m bench.e2e``,
``python -m bench.reference_speed``, ``python bench/hw_throughput.py``,
``python bench/hw_resources.py``, ``python -m bench.v2_latency``,
``python bench/board_build.py``, ``python -m bench.sim_speed``,
``python -m bench.neurobench_metrics``); the report reads their JSONs and states their
dates.
"""

from sim.cli import ArgumentParser, CliError, run_main


def main(argv=None):
    ap = ArgumentParser(prog="python -m bench", description=__doc__.split("\n")[0])
    ap.add_argument("--rerun-all", action="store_true",
                    help="rerun every expensive benchmark first (e2e, reference speed, "
                         "throughput, resources, simulation speed, NeuroBench metrics, "
                         "synthesis sweep: "
                         "tens of minutes)")
    ap.add_argument("--dry-run", action="store_true",
                    help="with --rerun-all: list the benchmark commands, run nothing")
    ap.add_argument("--samples", type=int, default=8,
                    help="test samples per model for the latency figures (default 8)")
    args = ap.parse_args(argv)
    if args.samples < 1:
        raise CliError(f"--samples: {args.samples} must be at least 1")
    from .report import RESULTS, build, rerun_expensive
    if args.rerun_all:
        ran = rerun_expensive(dry_run=args.dry_run)
        if args.dry_run:
            return 0
        failed = [c for c, rc in ran if rc]
        if failed:
            print(f"failed: {', '.join(failed)}")
    summary = build(rerun_all=args.rerun_all, samples=args.samples)
    for k, v in summary.items():
        print(f"{k:32s} {v:,.3f}" if isinstance(v, float) else f"{k:32s} {v}")
    print(f"wrote {RESULTS / 'report.md'}")
    return 0


if __name__ == "__main__":
    run_main(main, prog="python -m bench")
