"""The whole chain on a fresh machine, no download: ``make demo`` = ``python -m surround_depth_ros.demo --out outputs/demo``.

1. ``train``: the training demo at toy scale (``surround_depth_train.demo``: SurroundSim contact sheets
   ``world/sheet_*.png``, the dense depth fused into one cloud ``cloud_bev.png``, fine-tuned teacher, LiDAR-only
   baseline student, CKD + VRKD distilled student, ``results.md`` and ``comparison.png``);
2. ``bag``: a SurroundSim drive converted to a rosbag2 (``surround_depth_ros.convert``), with its ego-body masks;
3. ``offline``: ``evaluate_bag`` of the baseline and of the distilled student on that bag (the node's code path);
4. ``live``: the node as a process (its params file) on the distilled student, the live evaluator as a process, and
   the bag replayed into them over DDS (``surround_depth_ros.replay``);
5. ``report.md``: the metrics table (offline baseline and distilled, live distilled), the node's latency from its
   /diagnostics, depth mosaics, the node's fused cloud over the LiDAR, the diagnostics seen and the training table.

Every number in the report comes from this run. ``--baseline`` and ``--distilled`` deploy given model files
(e.g. the experiment's ``model.pt``) instead of training at toy scale. ``--quick`` uses the tiny test models and a shorter bag (the test
suite runs it). Logs of the processes go to ``<out>/logs``.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

from surround_depth_train.command_line import prog
from surround_depth_train.resources import resource_path

__all__ = ['main', 'run_chain']

#: The folder holding this package and surround_depth_train (the checkout, or site-packages when installed): the
#: processes the demo starts import the same code.
CODE_ROOT = Path(__file__).resolve().parents[1]
#: Where the experiment ships its students (a package file: surround_depth_train.resources).
SHIPPED_DIR = 'docs/results/surroundsim_models'
#: Training at the chain's scale (``surround_depth_train.demo.run_distill_stage``): on 2 busy cores a ViT-S teacher
#: step takes 20-30 s and a Monodepth2 + MB step about 13 s (batch 2 x 6 cameras at 160 x 96), so each of the three
#: runs gets one epoch of 16 samples (8 steps).
CHAIN_TRAINING = {'train_samples': 16, 'val_samples': 4, 'teacher_epochs': 1, 'student_epochs': 1}


def _env(domain: str) -> dict:
    env = dict(os.environ, ROS_DOMAIN_ID=domain, PYTHONUNBUFFERED='1')
    env.setdefault('FASTDDS_BUILTIN_TRANSPORTS', 'LARGE_DATA')  # images between processes (REFERENCE section 7)
    env['PYTHONPATH'] = os.pathsep.join(p for p in (str(CODE_ROOT), env.get('PYTHONPATH', '')) if p)
    return env


def _wait_for_text(path: Path, text: str, proc: subprocess.Popen, what: str, timeout: float = 300.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if text in path.read_text(errors='replace'):
            return
        if proc.poll() is not None:
            tail = '\n'.join(path.read_text(errors='replace').splitlines()[-15:])
            raise RuntimeError(f'{what} stopped (exit {proc.returncode}) before it was ready; its log {path}:\n{tail}')
        time.sleep(0.2)
    raise RuntimeError(f'{what} was not ready after {timeout:g} s; see {path}')


def run_live(out: Path, bag: Path, model: Path, masks: list[str], *, rate: float, domain: str,
             idle_timeout: float) -> dict:
    """Node + live evaluator processes, the bag replayed into them; returns the live result dict."""
    import yaml

    logs = out / 'logs'
    logs.mkdir(parents=True, exist_ok=True)
    params = out / 'node_params.yaml'
    params.write_text(yaml.safe_dump({'/**': {'ros__parameters': {
        'model_file': str(model), 'rig_file': str(bag / 'rig.yaml'), 'mask_files': list(masks),
        'lidar_topic': '/lidar/points', 'diagnostics_period': 0.5, 'publish': ['depth', 'depth_info', 'cloud']}}},
        sort_keys=False))
    env = _env(domain)
    procs: list[subprocess.Popen] = []

    def start(name: str, cmd: list[str]) -> tuple[subprocess.Popen, Path]:
        log = logs / f'{name}.log'
        procs.append(subprocess.Popen(cmd, env=env, stdout=open(log, 'w'), stderr=subprocess.STDOUT))
        return procs[-1], log

    try:
        print(f'[demo] starting the node (params {params}) and the live evaluator on ROS_DOMAIN_ID {domain}',
              flush=True)
        node, node_log = start('node', [sys.executable, '-m', 'surround_depth_ros.node', '--ros-args',
                                        '--params-file', str(params)])
        live, live_log = start('live_evaluator', [
            sys.executable, '-m', 'surround_depth_ros.evaluate_live', '--rig', str(bag / 'rig.yaml'),
            '--out', str(out / 'live'), '--idle-timeout', str(idle_timeout), '--mask-files', *masks])
        _wait_for_text(live_log, '[evaluate_live] ready', live, 'the live evaluator')
        _wait_for_text(node_log, 'allocator:', node, 'the node')  # its start-up line: model loaded, subscribed
        print(f'[demo] replaying {bag} into the node at rate {rate:g}', flush=True)
        replay = subprocess.run([sys.executable, '-m', 'surround_depth_ros.replay', str(bag), '--rate', str(rate),
                                 '--wait-for-subscribers', '60', '--delay', '2'], env=env)
        if replay.returncode != 0:
            raise RuntimeError(f'the replay failed (exit {replay.returncode})')
        print(f'[demo] replay done; the live evaluator stops {idle_timeout:g} s after the last depth image',
              flush=True)
        if live.wait(300) != 0:
            raise RuntimeError(f'the live evaluator failed; see {live_log}')
        if node.poll() is not None:
            raise RuntimeError(f'the node stopped during the replay; see {node_log}')
    finally:
        for p in procs:
            if p.poll() is None:
                p.terminate()
                try:
                    p.wait(10)
                except subprocess.TimeoutExpired:
                    p.kill()
    return json.loads((out / 'live' / 'results.json').read_text())


def _rows(runs: list[tuple[str, dict]]) -> list:
    from surround_depth_train.metrics import delta_t

    base = runs[0][1]['lidar']['mean']
    rows = []
    for i, (name, r) in enumerate(runs):
        mean = r['lidar']['mean']
        rows.append((name, r['model'].get('parameters'), (r.get('latency') or {}).get('median_ms'), mean,
                     None if i == 0 or mean is None or base is None else delta_t(mean, base)))
    return rows


def shipped_section(shipped, results: dict[str, dict]) -> list[str]:
    """The report's section on the experiment's shipped students: this run's test-split metrics next to the ones
    recorded when they were shipped."""
    from surround_depth_train.evaluation.report import metrics_table
    from surround_depth_train.metrics import delta_t

    ev = shipped.manifest['evaluation']
    rows = [(f'{m.model} {m.role} (`{m.run}`, this run)', results[m.role]['model'].get('parameters'),
             (results[m.role].get('latency') or {}).get('median_ms'), results[m.role]['lidar']['mean'],
             None if m.role == 'baseline' else delta_t(results['distilled']['lidar']['mean'],
                                                       results['baseline']['lidar']['mean']))
            for m in (shipped.baseline, shipped.distilled)]
    recorded = ' / '.join(f'{m.role} AbsRel {m.test_metrics["abs_rel"]:.4f}' for m in (shipped.baseline,
                                                                                        shipped.distilled))
    return ['## The experiment\'s shipped students, evaluated in this run', '',
            f'`{shipped.folder}`: the baseline and the distilled student of `{shipped.manifest["command"]}` (seed '
            f'{shipped.baseline.seed}; weights stored in {shipped.manifest["dtype"]}). Evaluated here on the '
            f'SurroundSim **{ev["split"]}** split of their world ({ev["samples"]} camera sets at '
            f'{ev["image_size"]}, LiDAR ground truth), the experiment\'s evaluation. Recorded when shipped (float32 '
            f'weights): {recorded}. These two files are also the ones the bag rows below deploy.', '',
            metrics_table(rows), '']


def reading_guide(shipped, bag_sets: int) -> list[str]:
    """One sentence per table of the report: what each measures, so their numbers do not seem to contradict."""
    who = 'the shipped pair' if shipped is not None else 'the two toy-trained students'
    lines = ['What each table measures:', '',
             f'- **The table below**: {who} on this demo\'s one short drive ({bag_sets} camera sets of one scene): '
             f'it checks that the node, the offline evaluator and the live one agree; one drive is far too little to '
             f'rank two students, so their difference here says nothing about distillation.']
    if shipped is not None:
        lines.append('- **The shipped students\' table**: the same two files on the held-out test split of their '
                     'experiment (many scenes), one seed: the numbers to quote for these files. Whether distillation '
                     'helps is decided over many seeds by the experiment itself (`docs/results/distillation.md`).')
    lines += ['- **The training table** (at the end): a toy run trained here in seconds from a random teacher, to '
              'show the training machinery; its numbers measure nothing about the method.', '']
    return lines


def write_demo_report(out: Path, *, offline_base: dict, offline_kd: dict, live: dict, training_md: str,
                      wall_s: float, bag: Path, rate: float, shipped=None, shipped_results: dict | None = None
                      ) -> Path:
    """``report.md`` (module docstring); every number from the results of this run."""
    from surround_depth_ros.bag.live_evaluator import diagnostics_table
    from surround_depth_train.atomic import atomic_write
    from surround_depth_train.evaluation.report import metrics_table

    what = 'shipped' if shipped is not None else 'toy-trained'
    runs = [(f'{offline_base["model"]["name"]} baseline, {what} (offline, bag)', offline_base),
            (f'{offline_kd["model"]["name"]} + CKD + VRKD, {what} (offline, bag)', offline_kd),
            ('the same, live: node over DDS', live)]
    diag = live['live']['diagnostics']
    pipeline = next((d['values'] for n, d in diag.items() if n.endswith(': pipeline')), {})  # counters: at the end
    off = {(r['camera'], round(r['stamp'], 6)): r['metrics'] for r in offline_kd['frames'] if r['metrics']}
    on = {(r['camera'], round(r['stamp'], 6)): r['metrics'] for r in live['frames'] if r['metrics']}
    common = sorted(set(off) & set(on))
    agree = ''
    if common:
        a = sum(on[k]['abs_rel'] for k in common) / len(common)
        b = sum(off[k]['abs_rel'] for k in common) / len(common)
        agree = (f'On the {len(common)} images present in both, live abs_rel {a:.4f} vs offline {b:.4f} '
                 f'({100 * (a / b - 1):+.2f} %).')
    md = [f'# surround-depth demo: train, bag, node, replay, evaluation ({wall_s / 60:.1f} min)', '',
          f'SurroundSim drive `{bag}` ({offline_kd["bag"]["sets"]} camera sets, images and GT at '
          f'{offline_kd["dataset"]["gt_resolution"]}). Depth against the bag\'s LiDAR, each image against the newest '
          f'sweep before it moved to the image\'s stamp by the bag\'s odometry; ego body masked; '
          f'{offline_kd["dataset"]["min_depth"]:g}-{offline_kd["dataset"]["max_depth"]:g} m, no median scaling. '
          f'Offline rows: `python -m surround_depth_ros.evaluate_bag` (the node\'s code path, every set). Live row: '
          f'the node process on the distilled student, the bag replayed at rate {rate:g} over DDS, scored by '
          f'`python -m surround_depth_ros.evaluate_live` ({len(live["frames"])} depth images scored; sets the node '
          f'dropped under load are missing). {agree} Latency: offline rows, median model time per set in the '
          f'evaluation; live row, the node\'s /diagnostics `model_ms_median`.', '',
          *reading_guide(shipped, offline_kd["bag"]["sets"]),
          metrics_table(_rows(runs)), '',
          *(shipped_section(shipped, shipped_results) if shipped is not None else []),
          '## The node (from its /diagnostics)', '',
          f'- model time per set, median: {pipeline.get("model_ms_median", "-")} ms; end to end (image in to '
          f'depth out), median: {pipeline.get("end_to_end_ms_median", "-")} ms',
          f'- sets emitted by the synchroniser {pipeline.get("sets_emitted", "-")}, published '
          f'{pipeline.get("sets_published", "-")}, dropped under load {pipeline.get("dropped_sets", "-")}, '
          f'partial {pipeline.get("partial_sets", "-")}; allocator: {pipeline.get("allocator", "-")}', '',
          diagnostics_table(live['live'], at_the_end=False)]
    md += ['', '## Depth (distilled student, offline on the bag)', '']
    md += [f'![{Path(p).stem}](offline_kd/{p})' for p in offline_kd.get('pictures', []) if 'mosaic' in p]
    md += ['', '## The fused cloud over the LiDAR (bird\'s-eye view)', '']
    if (out / 'live' / 'pictures' / 'bev_live.png').is_file():
        md.append('The node\'s published cloud (live):\n\n![bev_live](live/pictures/bev_live.png)\n')
    md += [f'![{Path(p).stem}](offline_kd/{p})' for p in offline_kd.get('pictures', []) if 'bev' in p]
    training = '\n'.join('### ' + line[2:] if line.startswith('# ') else line for line in training_md.splitlines())
    md += ['', '## Training', '', training.strip(), '',
           'Full reports: `offline_baseline/results.md`, `offline_kd/results.md`, `live/results.md`; logs in '
           '`logs/`.']
    path = out / 'report.md'
    with atomic_write(path, 'w') as f:
        f.write('\n'.join(md) + '\n')
    return path


def _in_repo(world: str) -> str:
    """A world YAML path relative to the repository (as the experiment wrote it) made absolute, so the demo runs
    from any folder: the package's file (the checkout's, or the installed one in the share directory)."""
    if Path(world).is_absolute():
        return world
    found = resource_path(world)
    return str(found) if found.is_file() else world


def evaluate_shipped(out: Path, shipped) -> dict[str, dict]:
    """Both shipped students on the split they were shipped with (the experiment's evaluation), in this run."""
    from surround_depth_train.evaluate import run_evaluation

    ev = shipped.manifest['evaluation']
    overrides = [f'data.world={_in_repo(o.partition("=")[2])}' if o.startswith('data.world=') else o
                 for o in ev['overrides']]
    results = {}
    for m in (shipped.baseline, shipped.distilled):
        results[m.role] = run_evaluation(m.path, config=shipped.folder / f'{m.role}.yaml',
                                         overrides=overrides, split=ev['split'],
                                         out_dir=out / f'shipped_{m.role}', pictures=1, latency_runs=3,
                                         consistency=False, progress=False)
        got, rec = results[m.role]['lidar']['mean']['abs_rel'], m.test_metrics['abs_rel']
        print(f'[demo] shipped {m.role} ({m.model}): {ev["split"]} abs_rel {got:.4f} in this run, {rec:.4f} '
              f'recorded when shipped', flush=True)
    return results


def run_chain(out: Path, *, quick: bool = False, frames: int | None = None, rate: float | None = None,
              domain: str | None = None, baseline: Path | None = None, distilled: Path | None = None,
              shipped=None) -> Path:
    """The whole chain (module docstring); returns the report's path. With ``baseline`` and ``distilled`` model
    files (e.g. the experiment's), those are deployed and the training stage is left out. With ``shipped`` (a
    :class:`~surround_depth_train.shipped.ShippedPair`), the toy training still runs, the shipped pair is evaluated
    on its test split and deployed on a bag of its world."""
    from surround_depth_ros.bag.evaluation import evaluate_bag, write_report
    from surround_depth_ros.bag.surroundsim import SurroundSimDrive
    from surround_depth_ros.convert import main as convert_main
    from surround_depth_train import demo as train_demo

    start = time.monotonic()
    out.mkdir(parents=True, exist_ok=True)
    frames = frames or (6 if quick else 20)
    rate = rate or (0.5 if quick else 0.25)
    domain = domain or os.environ.get('ROS_DOMAIN_ID') or str(1 + os.getpid() % 100)
    size = (96, 64) if quick else (320, 192)

    if baseline is not None and distilled is not None:
        missing = [str(p) for p in (baseline, distilled) if not Path(p).is_file()]
        if missing:
            raise RuntimeError(f'model file(s) {missing} do not exist; pass model.pt files of training runs')
        print(f'[demo] 1/5 deploying the given models: baseline {baseline}, distilled {distilled}', flush=True)
        training_md = f'Not run: the given model files `{baseline}` (baseline) and `{distilled}` (distilled).'
    else:
        print('[demo] 1/5 training at toy scale (surround_depth_train.demo)', flush=True)
        sheet_size = (160, 96) if quick else (640, 384)
        train_demo.run_world_stage(out, 0, 2 if quick else 3, sheet_size)
        print(f'[cloud] fused {train_demo.run_cloud_stage(out, sheet_size)} points from six cameras -> '
              f'{out / "cloud_bev.png"}', flush=True)
        # the whole chain's 15 minutes on 2 cores: fewer samples and epochs than the training demo alone
        train_demo.run_distill_stage(out, quick, None if quick else CHAIN_TRAINING)
        runs = out / 'runs'
        baseline, distilled = runs / 'student_baseline' / 'model.pt', runs / 'student_ckd_vrkd' / 'model.pt'
        training_md = (out / 'results.md').read_text()
    world, split, shipped_results = None, 'val', None
    if shipped is not None:
        import yaml

        print(f'[demo] 1/5 (continued) the shipped students of the experiment ({shipped.folder}) on their test '
              f'split', flush=True)
        shipped_results = evaluate_shipped(out, shipped)
        baseline, distilled = shipped.baseline.path, shipped.distilled.path
        world = (yaml.safe_load((shipped.folder / 'baseline.yaml').read_text()).get('data') or {}).get('world')
        world = _in_repo(world) if world else None
        split = 'test'  # a drive the shipped students never trained on
        training_md += ('\n\nThe bag rows deploy the shipped students (see above), not these toy-trained ones.')

    print(f'[demo] 2/5 converting a {frames}-frame SurroundSim drive at {size[0]}x{size[1]} to a rosbag2', flush=True)
    bag = out / 'bag'
    if bag.exists():  # a previous run's bag: the converter refuses to overwrite, so start it afresh
        import shutil

        shutil.rmtree(bag)
    if convert_main(['surroundsim', '--frames', str(frames), '--size', f'{size[0]}x{size[1]}', '--out',
                     str(bag), '--split', split] + (['--world', str(world)] if world else [])) != 0:
        raise RuntimeError('the SurroundSim conversion failed (see above)')
    masks = SurroundSimDrive(frames=frames, image_size=size, world=world, split=split).write_masks(out / 'bag_masks')

    print('[demo] 3/5 offline evaluation on the bag: baseline and distilled student', flush=True)
    from surround_depth_train.data.rosbag.topic_map import TopicMap

    offline = {}
    for name, model in (('offline_baseline', baseline), ('offline_kd', distilled)):
        result, pictures = evaluate_bag(bag, model, topic_map=TopicMap(mask_files=masks), pictures=1)
        write_report(out / name, result, pictures)
        offline[name] = json.loads((out / name / 'results.json').read_text())

    print('[demo] 4/5 live: node + live evaluator processes, the bag replayed over DDS', flush=True)
    live = run_live(out, bag, distilled, masks, rate=rate, domain=domain, idle_timeout=5.0 if quick else 8.0)

    print('[demo] 5/5 writing the report', flush=True)
    report = write_demo_report(out, offline_base=offline['offline_baseline'], offline_kd=offline['offline_kd'],
                               live=live, training_md=training_md,
                               wall_s=time.monotonic() - start, bag=bag, rate=rate, shipped=shipped,
                               shipped_results=shipped_results)
    return report


def check_arguments(args: argparse.Namespace) -> str | None:
    """What makes the chain fail later (a model file the node cannot run, an output folder that cannot be
    written, counts below 1), found in the first seconds, before anything is written; None when fine."""
    from surround_depth_train.config import ConfigError
    from surround_depth_train.models.modelfile import ModelFileError, ModelInfo, is_onnx_file
    from surround_depth_train.output_path import check_output_dir

    if args.frames is not None and args.frames < 1:
        return f'--frames {args.frames}: the bag needs at least one frame'
    if args.rate is not None and not args.rate > 0:
        return f'--rate {args.rate:g}: the replay rate must be positive (e.g. 0.25)'
    for option in ('baseline', 'distilled'):
        path = getattr(args, option)
        if path is None:
            continue
        fix = 'pass the model.pt of a training run (or leave --baseline and --distilled out)'
        if not path.is_file():
            return f'--{option} {path}: no such file; {fix}'
        if is_onnx_file(path):
            return f'--{option} {path} is an ONNX export; the demo deploys model files: {fix}'
        try:
            info = ModelInfo.read(path)
        except ModelFileError as exc:
            return f'--{option}: {exc}'
        if info.is_teacher:
            return f'--{option} {path} holds the teacher {info.name}, which the node does not deploy; {fix}'
    try:
        check_output_dir(args.out, '--out')
    except ConfigError as exc:
        return str(exc)
    return None


def main(argv: list[str] | None = None) -> int:
    import surround_depth_train

    parser = argparse.ArgumentParser(
        prog=prog('surround_depth_ros.demo'), description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=f'surround_depth_train {surround_depth_train.__version__} from '
               f'{Path(surround_depth_train.__file__).parent}; surround_depth_ros from {Path(__file__).parent}')
    parser.add_argument('--out', type=Path, default=Path('outputs/demo'), help='output folder')
    parser.add_argument('--quick', action='store_true', help='tiny models, a 6-frame bag (the test suite)')
    parser.add_argument('--frames', type=int, help='frames of the SurroundSim bag (default 20, quick 6)')
    parser.add_argument('--rate', type=float, help='replay rate (default 0.25, quick 0.5)')
    parser.add_argument('--baseline', type=Path, help='a baseline model file to deploy instead of training one')
    parser.add_argument('--distilled', type=Path, help='a distilled model file (e.g. the experiment\'s) to deploy')
    parser.add_argument('--shipped', type=Path, default=None,
                        help='a folder of shipped students (surround_depth_train.shipped; default: the '
                             f'experiment\'s, {SHIPPED_DIR} of the package (installed: in its share directory), '
                             'when it exists and not --quick)')
    parser.add_argument('--no-shipped', action='store_true', help='deploy the toy-trained students even when '
                                                                  'shipped ones exist')
    args = parser.parse_args(argv)
    if (args.baseline is None) != (args.distilled is None):
        parser.error('give both --baseline and --distilled (or neither: the demo trains both at toy scale)')
    problem = check_arguments(args)
    if problem:
        print(f'error: {problem}', file=sys.stderr)
        return 2
    from surround_depth_train.shipped import ShippingError, read_shipped

    start = time.monotonic()
    try:
        shipped = None
        if args.baseline is None and not args.no_shipped and (args.shipped is not None or not args.quick):
            shipped = read_shipped(args.shipped if args.shipped is not None else resource_path(SHIPPED_DIR))
            if shipped is None and args.shipped is not None:
                raise RuntimeError(f'--shipped {args.shipped}: no models.json there; point it at a folder the '
                                   f'experiment command wrote (ship.dir)')
        report = run_chain(args.out, quick=args.quick, frames=args.frames, rate=args.rate, baseline=args.baseline,
                           distilled=args.distilled, shipped=shipped)
    except (RuntimeError, ShippingError) as exc:
        print(f'error: {exc}', file=sys.stderr)
        return 1
    print(f'[demo] done in {(time.monotonic() - start) / 60:.1f} min; the report: {report}', flush=True)
    return 0


if __name__ == '__main__':
    sys.exit(main())
