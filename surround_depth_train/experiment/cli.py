"""``python -m surround_depth_train.experiment``: the command line (see the package docstring)."""
from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path

from surround_depth_train.command_line import prog
from surround_depth_train.config import ConfigError
from surround_depth_train.experiment.config import ExperimentError, load_experiment, plan_runs, resolve_config
from surround_depth_train.experiment.report import write_report
from surround_depth_train.experiment.runs import collect, execute, run_status
from surround_depth_train.experiment.shipping import ship

__all__ = ['main']


def _package_doc() -> str:
    import surround_depth_train.experiment as pkg

    return pkg.__doc__ or ''


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog=prog('surround_depth_train.experiment'), description=_package_doc(),
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('config', type=Path, help='experiment YAML (config/experiments/*.yaml)')
    parser.add_argument('--only', nargs='+', default=(), metavar='NAME',
                        help='train only these runs (spec names or <name>_s<seed>); the report covers every '
                             'finished run')
    parser.add_argument('--out-dir', help='the experiment\'s run folder (default: the YAML\'s out_dir)')
    parser.add_argument('--report', help='the report\'s Markdown path (default: the YAML\'s report)')
    parser.add_argument('--dry-run', action='store_true', help='print the plan (runs, status, overrides) and stop')
    parser.add_argument('--report-only', action='store_true', help='write the report from the finished runs only')
    parser.add_argument('--debug', action='store_true', help='show the traceback of an error')
    args = parser.parse_args(argv)
    command = 'python -m surround_depth_train.experiment ' + shlex.join(
        [str(args.config)] + (['--out-dir', args.out_dir] if args.out_dir else []) +
        (['--report', args.report] if args.report else []))
    try:
        exp = load_experiment(args.config, args.out_dir, args.report)
        planned = plan_runs(exp)
        unknown = [n for n in args.only if not any(n in (r.spec.name, r.name) for r in planned)]
        if unknown:
            raise ConfigError(f'--only {unknown}: no such run; the runs are {[r.name for r in planned]}')
        if args.dry_run:
            for run in planned:
                print(f'{run.name}: {run_status(run, resolve_config(run))}; {run.spec.config} '
                      f'{shlex.join(run.overrides)}')
            return 0

        def report() -> None:  # after every run, so an interrupted experiment leaves the tables it has
            results = collect(exp, planned)
            if results:
                write_report(exp, str(args.config), planned, results, command, ship(exp, planned, results, command))

        if not args.report_only:
            execute(exp, planned, args.only, after_run=report)
        report()
    except (ConfigError, ExperimentError) as exc:
        if args.debug:
            raise
        print(f'error: {exc}', file=sys.stderr)
        return 2
    print(f'[experiment] report in {exp.report} (+ {Path(exp.report).with_suffix(".json").name})')
    return 0

