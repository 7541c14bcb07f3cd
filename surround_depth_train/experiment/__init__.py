"""The distillation experiment as one resumable command: train every run of an experiment YAML, evaluate each on the
held-out split, and write the tables.

    python -m surround_depth_train.experiment config/experiments/surroundsim.yaml [--only NAME ...]
        [--out-dir DIR] [--report PATH] [--dry-run] [--debug]

An experiment YAML (:class:`ExperimentConfig`) lists runs; each run is a training config (``config/train/*.yaml``)
plus ``key=value`` overrides (the experiment's ``common`` ones, then its named ``presets``, then its own). A run
marked ``seeded`` is repeated for every seed of ``seeds`` (``<name>_s<seed>``; the same seeds for every seeded
run, so runs are paired: same initialisation, same data order). Overrides may name ``{out_dir}`` (the experiment's
folder) and ``{run:NAME}`` (the folder of an earlier run, e.g. ``teacher.checkpoint={run:teacher_ft}/model.pt``).

Each run trains in its own process (``python -m surround_depth_train.train``; log in ``<run>/train.log``) on the
GPU when one is available (``device: auto``), then is evaluated in this process by the evaluation command's
:func:`~surround_depth_train.evaluate.run_evaluation` on ``evaluation.split`` (the held-out test split). The
command is resumable:

- a run whose ``result.json`` says it finished (and whose saved config equals the planned one) is skipped;
- a run with ``checkpoints/last.pt`` but no finished result is continued with ``--resume`` (the trainer refuses a
  checkpoint whose config differs);
- a finished run whose saved config differs from the planned one is refused (delete its folder, or use another
  ``--out-dir``), so a table never mixes two settings;
- an evaluation newer than the run's ``model.pt`` is reused.

Rendered SurroundSim samples are cached by the dataset (``data.cache_dir``), the teacher's outputs by the trainer
(``teacher.cache``). Runs are executed in ``(priority, seed index, order in the file)`` order, so the runs a
partial experiment needs most finish first. One line per run reports progress.

The report (``report``, Markdown, and the same path with ``.json``) holds the teacher's own rows, each table
(mean +- standard deviation over seeds; ``Delta_T`` per seed against the ``compare.baseline`` run of the same seed,
then mean +- std), the cross-view consistency, the training loss terms, a picture of predictions side by side, the
wall time of every run and the command, seeds and config that produced it.
"""
from surround_depth_train.experiment.config import (CompareSpec, DecisionSpec, EvaluationSpec, ExperimentConfig,
                                                    ExperimentError, GateSpec, PictureSpec, PlannedRun, RunSpec,
                                                    load_experiment, plan_runs, resolve_config)
from surround_depth_train.experiment.runs import check_gate, collect, execute, run_status
from surround_depth_train.experiment.statistics import decide, paired_delta_t, summarise, verdict
from surround_depth_train.experiment.shipping import seed_by_validation, ship
from surround_depth_train.experiment.report import write_report
from surround_depth_train.experiment.cli import main

__all__ = ['RunSpec', 'EvaluationSpec', 'CompareSpec', 'GateSpec', 'DecisionSpec', 'PictureSpec', 'ExperimentConfig',
           'PlannedRun', 'ExperimentError', 'load_experiment', 'plan_runs', 'resolve_config', 'run_status', 'execute',
           'collect', 'check_gate', 'summarise', 'paired_delta_t', 'verdict', 'decide', 'seed_by_validation', 'ship',
           'write_report', 'main']
