"""What users run without flags: each path's default command before and after
the fast path became the default.

    python tools/benchmarks/defaults.py            # xception65 OS16, 513x513
    python tools/benchmarks/defaults.py --quick    # the demo config, tiny

Paths and their default commands, on the VOC-aug zoo config
(``deeplabv3plus_xception65-d16_4xb4-30k_voc12aug-513x513.py``; test inputs
padded to 513x513):

* test:  ``python tools/test.py CONFIG CKPT``
* tta:   ``python tools/test.py CONFIG CKPT --tta`` (6 scales x flip)
* infer: ``python tools/infer.py CONFIG CKPT IMAGES --out-dir DIR``

"before" is the same command with ``--no-fast``, which runs exactly what the
command ran by default before (the plain model); "after" is the command as
it is. Each run is a fresh process; the rounds go round-robin over every
(path, before/after), so drifting load hits all. Two times per run:

* command: the wall time of the whole process (interpreter start, imports,
  config, model build, checkpoint, data, forwards, metric, outputs);
* work: the tool's ``main()`` alone, i.e. the command less interpreter start
  and imports (measured inside the process);
* CPU: the CPU time of the whole command (all threads, data workers
  included): on a loaded machine a thread waiting for a core costs wall
  time but no CPU time (OpenMP threads spinning at a barrier do cost some).

A command's fixed costs (interpreter start and imports, about 4 s; runner,
model, checkpoint, the fast copy, data workers: 2-3 s) are the same however
many images it runs on, so the speed-up of a whole command grows with the
images towards that of its per-image work; the defaults (32 images for test
and infer, 3 for TTA, i.e. 36 forwards) are where most of a command's time
is spent on images, as in a real evaluation (VOC val: 1,449 images), while
``--images 8 --tta-images 1`` shows a short command.

Data: synthetic VOC-layout images of 375..500 px (VOC's sizes), a
checkpoint of the config's model with seeded random weights and BN
statistics measured on random images (realistic activations: no denormal
floats). Each run's log is checked for the path it took (the
``FastInferenceHook`` line, infer's ``model:`` line). The CPU time other
processes took during each run is reported (from ``/proc/stat``), with the
load average.
"""
import argparse
import os
import os.path as osp
import runpy
import shutil
import subprocess
import sys
import tempfile
import time

from deeplabplus_mm.apis import build_model
from deeplabplus_mm.utils import benchmark as common

ZOO_CONFIG = osp.join('configs', 'deeplabv3plus',
                      'deeplabv3plus_xception65-d16_4xb4-30k_voc12aug-'
                      '513x513.py')
DEMO_CONFIG = osp.join('configs', 'demo',
                       'deeplabv3plus_xception41-d16_1xb8-300it_synthvoc-'
                       '97x97.py')
PATHS = ('test', 'tta', 'infer')
VARIANTS = ('before', 'after')


def make_data(folder, config, num_images, size_range, quick):
    """Synthetic VOC data, a derived config on it, a calibrated checkpoint;
    returns ``(config path, checkpoint path, images folder)``."""
    import torch

    from deeplabplus_mm.datasets.synthetic import make_synthetic_voc
    root = osp.join(folder, 'voc')
    make_synthetic_voc(root, num_train=0, num_val=num_images,
                       size_range=size_range, seed=0)
    derived = osp.join(folder, 'config.py')
    with open(derived, 'w') as f:
        f.write(f"""_base_ = [{osp.join(common.REPO, config)!r}]
test_dataloader = dict(
    dataset=dict(type='PascalVOCAugDataset', data_root={root!r},
                 data_prefix=dict(img_path='JPEGImages',
                                  seg_map_path='SegmentationClass'),
                 ann_file='ImageSets/Segmentation/val.txt'))
""")
    model = common.calibrate_bn(build_model(derived, seed=0),
                                97 if quick else 257, batches=2, seed=0)
    ckpt = osp.join(folder, 'model.pth')
    torch.save(dict(state_dict=model.state_dict(), meta={}), ckpt)
    return derived, ckpt, osp.join(root, 'JPEGImages')


def command(path, variant, config, ckpt, images, out):
    """The tool and its arguments for one run."""
    if path == 'infer':
        args = ['tools/infer.py', config, ckpt, images, '--out-dir', out]
    else:
        args = ['tools/test.py', config, ckpt, '--work-dir', out]
        if path == 'tta':
            args.append('--tta')
    if variant == 'before':
        args.append('--no-fast')
    return args


def took_fast_path(path, log):
    """True / False from the run's log, None if it says neither."""
    if path == 'infer':
        if 'model: BN folded into the convs, channels_last' in log:
            return True
        return False if 'model: plain' in log else None
    if 'FastInferenceHook: test on a copy of the model' in log:
        return True
    return False if 'FastInferenceHook: off' in log else None


def child_run(spec):
    """Inside the measured process: import the tool's modules, then time
    its ``main()`` (what the command does less interpreter start and
    imports)."""
    tool = spec['argv'][0]
    # The tool's own imports, untimed, as the command does them.
    globs = runpy.run_path(tool, run_name='defaults_benchmark')
    sys.argv = list(spec['argv'])
    start = time.perf_counter()
    try:
        globs['main']()
    except SystemExit as e:  # infer.py exits with its status
        if e.code not in (0, None):
            raise
    work = time.perf_counter() - start
    return dict(work=work)


def run_once(argv, env):
    """One command as a fresh process; returns (wall s, work s, CPU s of
    the process and its children, other cores, log) or raises with the
    log's tail."""
    import json
    import resource
    cpu = resource.getrusage(resource.RUSAGE_CHILDREN)
    with common.Interference(children=True) as probe:
        proc = subprocess.run(
            [sys.executable, __file__, common.CHILD_FLAG,
             json.dumps(dict(kind='run', argv=argv))],
            cwd=common.REPO, env=env, stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT, text=True)
    wall, other = probe.wall, probe.cores
    end = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (end.ru_utime - cpu.ru_utime) + (end.ru_stime - cpu.ru_stime)
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith('{')]
    if proc.returncode != 0 or not lines:
        tail = '\n'.join(proc.stdout.splitlines()[-15:])
        raise RuntimeError(f'{" ".join(argv)} exited with '
                           f'{proc.returncode}:\n{tail}')
    return wall, json.loads(lines[-1])['work'], cpu, other, proc.stdout


def parse_args():
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    common.add_common_args(
        parser, 'smoke run: the demo config (xception41, 97x97 crops, no '
        'padding to 513), 2 small images, 1 round')
    parser.add_argument('--paths', default=','.join(PATHS),
                        help=f'comma-separated, from {PATHS}')
    parser.add_argument('--images', type=int, default=None,
                        help='images for test and infer (default 32; 2 '
                        'quick)')
    parser.add_argument('--tta-images', type=int, default=None,
                        help='images for the TTA path (default 3; 1 '
                        'quick)')
    parser.add_argument('--repeats', type=int, default=None,
                        help='rounds (default 3; 1 quick)')
    parser.add_argument('--keep', default=None,
                        help='keep the data, checkpoint and outputs here')
    args = parser.parse_args()
    args.paths = args.paths.split(',')
    for p in args.paths:
        if p not in PATHS:
            parser.error(f'unknown path {p!r}; choose from {PATHS}')
    args.images = args.images or (2 if args.quick else 32)
    args.tta_images = args.tta_images or (1 if args.quick else 3)
    args.repeats = args.repeats or (1 if args.quick else 3)
    return args


def main():
    args = parse_args()
    load, threads = common.start_run(args)
    config = DEMO_CONFIG if args.quick else ZOO_CONFIG
    size_range = (61, 83) if args.quick else (375, 500)
    folder = args.keep or tempfile.mkdtemp(prefix='deeplabplus_defaults_')
    os.makedirs(folder, exist_ok=True)
    try:
        return measure(args, load, threads, config, size_range, folder)
    finally:
        if not args.keep:
            shutil.rmtree(folder, ignore_errors=True)


def measure(args, load, threads, config, size_range, folder):
    num = max(args.images, args.tta_images)
    derived, ckpt, images = make_data(folder, config, num, size_range,
                                      args.quick)
    # test/infer on the first --images images, TTA on --tta-images.
    subsets = {}
    for path in PATHS:
        n = args.tta_images if path == 'tta' else args.images
        subsets[path] = subset(folder, derived, images, path, n)
    env = dict(os.environ, PYTHONUNBUFFERED='1')
    if args.threads:
        env['OMP_NUM_THREADS'] = str(args.threads)
    print(f'config {config}; load average at start {load:.2f}; images: '
          f'{args.images} for test and infer, {args.tta_images} for TTA '
          f'(12 views each), {size_range[0]}..{size_range[1]} px; '
          f'{args.repeats} round(s) round-robin over '
          f'{len(args.paths) * 2} commands', flush=True)
    results = {(p, v): [] for p in args.paths for v in VARIANTS}
    for r in range(args.repeats):
        for path in args.paths:
            cfg, imgs = subsets[path]
            for variant in VARIANTS:
                out = osp.join(folder, f'out_{path}_{variant}_{r}')
                argv = command(path, variant, cfg, ckpt, imgs, out)
                wall, work, cpu, other, log = run_once(argv, env)
                fast = took_fast_path(path, log)
                if fast is not (variant == 'after'):
                    raise RuntimeError(
                        f'{" ".join(argv)}: expected the '
                        f'{"fast" if variant == "after" else "plain"} path, '
                        f'the log says {fast}')
                results[path, variant].append((wall, work, cpu, other))
                print(f'  round {r + 1} {path:5s} {variant:6s}: command '
                      f'{wall:7.2f} s, work {work:7.2f} s, CPU {cpu:7.2f} s, '
                      f'other processes {other:.2f} cores, load '
                      f'{common.load_average():.2f}', flush=True)
    report(args, results, config)
    return 0


def subset(folder, derived, images, path, n):
    """A config and an images folder with the first ``n`` images."""
    names = sorted(os.listdir(images))[:n]
    root = osp.dirname(images)
    listing = osp.join(root, 'ImageSets', 'Segmentation', f'{path}.txt')
    with open(listing, 'w') as f:
        f.write('\n'.join(osp.splitext(x)[0] for x in names) + '\n')
    cfg = osp.join(folder, f'config_{path}.py')
    with open(cfg, 'w') as f:
        f.write(f"_base_ = [{derived!r}]\n"
                "test_dataloader = dict(dataset=dict("
                f"ann_file='ImageSets/Segmentation/{path}.txt'))\n")
    only = osp.join(folder, f'images_{path}')
    os.makedirs(only, exist_ok=True)
    for name in names:
        dst = osp.join(only, name)
        if not osp.exists(dst):
            os.symlink(osp.join(images, name), dst)
    return cfg, only


def report(args, results, config):
    rows, summary = [], []
    for path in args.paths:
        med = {}
        for variant in VARIANTS:
            runs = results[path, variant]
            wall = common.median([r[0] for r in runs])
            work = common.median([r[1] for r in runs])
            cpu = common.median([r[2] for r in runs])
            other = max(r[3] for r in runs)
            med[variant] = (wall, work, cpu)
            n = args.tta_images if path == 'tta' else args.images
            rows.append([path, variant, f'{wall:.2f}', f'{work:.2f}',
                         f'{work / n:.3f}', f'{cpu:.2f}', f'{other:.2f}'])
        cmd_ratio, work_ratio, cpu_ratio = (
            med['before'][i] / med['after'][i] for i in range(3))
        rows.append([path, 'before / after', f'{cmd_ratio:.2f}x',
                     f'{work_ratio:.2f}x', '', f'{cpu_ratio:.2f}x', ''])
        summary.append(f'{path} {work_ratio:.2f}x work, {cmd_ratio:.2f}x '
                       f'command, {cpu_ratio:.2f}x CPU time')
    print()
    print(f'{config}; medians of {args.repeats} round(s); work = main() '
          'without interpreter start and imports; per image = work / images'
          ' (TTA: 12 views each); CPU s: the command\'s CPU time (all its '
          'threads); other cores: the most CPU other processes took during a'
          ' run')
    print(common.table(['path', 'variant', 'command s', 'work s',
                        'work s/image', 'CPU s', 'other cores'], rows))
    print(f'load average at the end: {common.load_average():.2f}')
    print()
    print('SUMMARY: default command after / before (speed-up): ' +
          '; '.join(summary))


if __name__ == '__main__':
    spec = common.child_spec()
    if spec is not None and spec.pop('kind') == 'run':
        common.child_reply(child_run(spec))
    else:
        sys.exit(main())
