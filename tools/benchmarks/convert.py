"""Time and memory of converting a full-size TF DeepLab checkpoint.

    python tools/benchmarks/convert.py           # xception_65, 3 repeats
    python tools/benchmarks/convert.py --quick   # 1 repeat

The checkpoint is generated once and cached (``--cache``, default
``$TMPDIR/deeplabplus_bench``): every variable of
``shared/tf_deeplab/xception65_os16/variables.tsv`` with the values of
``shared/tf_deeplab/weights.py``, a ``<name>/Momentum`` slot for each
trainable one and ``global_step``, as a training run leaves it (~330 MB),
written with :func:`deeplabplus_mm.converters.write_checkpoint`.

Measured, each in a fresh child process (page cache warm after a first
untimed run, as for a user who just downloaded the file):

* the conversion itself: ``open_checkpoint`` + ``convert_reader`` +
  ``torch.save``, wall time and peak RSS above the child's RSS after its
  imports (goal: <= 3 s and <= 2x the checkpoint size);
* our reader alone over every tensor (crc32c checked), the counterpart of
  TensorFlow's;
* the whole command ``python tools/convert_tf_checkpoint.py SRC OUT``,
  interpreter start and imports included, and ``python -c`` of the imports
  alone (``import torch``; the CLI's imports);
* TensorFlow's ``tf.train.load_checkpoint`` + reading every tensor, when
  TensorFlow is importable here or ``--tf-python`` names an interpreter
  that has it (skipped otherwise), e.g.::

      python -m venv /tmp/tf && /tmp/tf/bin/pip install tensorflow-cpu
      python tools/benchmarks/convert.py --tf-python /tmp/tf/bin/python
"""
import argparse
import importlib.util
import os
import os.path as osp
import subprocess
import sys
import tempfile
import time

import common

CASE = 'xception65_os16'


def refs_dir():
    return os.environ.get('DEEPLAB_TF_REFS',
                          osp.join(common.REPO, '..', 'shared', 'tf_deeplab'))


def load_weights_module(refs):
    spec = importlib.util.spec_from_file_location(
        'tf_refs_weights', osp.join(refs, 'weights.py'))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def checkpoint_tensors(refs, momentum=True):
    """name -> array of a training checkpoint of the reference model."""
    weights = load_weights_module(refs)
    table = weights.read_variables_tsv(osp.join(refs, CASE, 'variables.tsv'))
    tensors = {}
    for name, shape, dtype, trainable in table:
        tensors[name] = weights.variable_value(name, shape, dtype)
        if trainable and momentum:
            slot = f'{name}/Momentum'
            tensors[slot] = weights.variable_value(slot, shape, dtype)
    tensors['global_step'] = weights.variable_value('global_step', (),
                                                    'int64')
    return tensors


def ensure_checkpoint(cache, refs):
    """Prefix of the cached checkpoint, written on first use."""
    from deeplabplus_mm.converters import write_checkpoint
    folder = osp.join(cache, 'xception65_os16_momentum')
    prefix = osp.join(folder, 'model.ckpt-30000')
    if not osp.isfile(prefix + '.index'):
        os.makedirs(folder, exist_ok=True)
        start = time.perf_counter()
        write_checkpoint(prefix, checkpoint_tensors(refs))
        print(f'# wrote {prefix} in {time.perf_counter() - start:.1f} s',
              flush=True)
    return prefix


def checkpoint_bytes(prefix):
    folder, base = osp.split(prefix)
    return sum(
        osp.getsize(osp.join(folder, f)) for f in os.listdir(folder)
        if f.startswith(base + '.'))


def child_convert(spec):
    """Child: the conversion itself, after the imports."""
    import torch

    from deeplabplus_mm.converters import convert_reader, open_checkpoint
    common.set_threads(spec['threads'])
    mem = common.PeakRSS().start()
    start = time.perf_counter()
    with open_checkpoint(spec['src']) as reader:
        state_dict, meta = convert_reader(reader)
    torch.save(dict(state_dict=state_dict, meta=meta), spec['out'])
    seconds = time.perf_counter() - start
    return dict(seconds=seconds, rss_mib=mem.delta_mib(),
                rss_reset=mem.reset, baseline_mib=mem.baseline_mib,
                tensors=len(state_dict), ignored=len(meta['ignored']))


def child_read(spec):
    """Child: our reader alone over every tensor (crc32c checked), the
    counterpart of TensorFlow's reader."""
    from deeplabplus_mm.converters import open_checkpoint
    mem = common.PeakRSS().start()
    start = time.perf_counter()
    with open_checkpoint(spec['src']) as reader:
        values = dict(reader.items())
    seconds = time.perf_counter() - start
    return dict(seconds=seconds, rss_mib=mem.delta_mib(), tensors=len(values))


def child_tensorflow(spec):
    """Child: TensorFlow's own reader over every tensor."""
    import tensorflow as tf
    mem = common.PeakRSS().start()
    start = time.perf_counter()
    reader = tf.train.load_checkpoint(spec['src'])
    values = {name: reader.get_tensor(name)
              for name in reader.get_variable_to_shape_map()}
    seconds = time.perf_counter() - start
    return dict(seconds=seconds, rss_mib=mem.delta_mib(), tensors=len(values),
                version=tf.__version__)


def run_python(*args):
    """Wall time of ``python ARGS`` (interpreter start included)."""
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, *args], stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, text=True,
                          cwd=common.REPO)
    seconds = time.perf_counter() - start
    if proc.returncode:
        raise RuntimeError(f'python {" ".join(args)} failed:\n{proc.stdout}')
    return seconds


CLI = osp.join('tools', 'convert_tf_checkpoint.py')
# What the CLI imports before it converts anything.
CLI_IMPORTS = ('import torch; from deeplabplus_mm.converters import '
               'convert_reader')


def parse_args():
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    common.add_common_args(parser, 'smoke run: 1 repeat of each')
    parser.add_argument('--cache', default=osp.join(tempfile.gettempdir(),
                                                    'deeplabplus_bench'),
                        help='where the generated checkpoint is kept')
    parser.add_argument('--repeats', type=int, default=None)
    parser.add_argument('--tf-python', default=None,
                        help='a Python interpreter with TensorFlow for the '
                        'tf.train.load_checkpoint comparison (default: '
                        'this one, if it has TensorFlow)')
    args = parser.parse_args()
    args.repeats = args.repeats or (1 if args.quick else 3)
    return args


def main():
    args = parse_args()
    refs = refs_dir()
    if not osp.isfile(osp.join(refs, CASE, 'variables.tsv')):
        sys.exit(f'error: TF references not found at {refs} (set '
                 'DEEPLAB_TF_REFS)')
    prefix = ensure_checkpoint(args.cache, refs)
    size_mib = checkpoint_bytes(prefix) / 2**20
    load, threads = common.start_run(args)
    print(f'load average at start: {load:.2f}; checkpoint {prefix} '
          f'({size_mib:.0f} MiB, index + data), median of {args.repeats} '
          'after 1 untimed run (page cache warm)', flush=True)
    out = osp.join(args.cache, f'converted-{os.getpid()}.pth')
    spec = dict(src=prefix, out=out, threads=threads)

    def timed_children(kind):
        """Median seconds and largest peak RSS of ``repeats`` children."""
        runs = [common.run_child(__file__, dict(spec, kind=kind))
                for _ in range(args.repeats)]
        failed = [r['error'] for r in runs if 'error' in r]
        if failed:
            sys.exit(f'{kind} failed: {failed[0]}')
        return (common.median([r['seconds'] for r in runs]),
                max(r['rss_mib'] for r in runs), runs)

    common.run_child(__file__, dict(spec, kind='convert'))  # warm-up
    conv_s, conv_mib, runs = timed_children('convert')
    read_s, read_mib, _ = timed_children('read')
    cli_s = common.median(
        [run_python(CLI, prefix, out) for _ in range(args.repeats)])
    imports_s = common.median(
        [run_python('-c', CLI_IMPORTS) for _ in range(args.repeats)])
    torch_s = common.median(
        [run_python('-c', 'import torch') for _ in range(args.repeats)])
    out_mib = osp.getsize(out) / 2**20
    os.remove(out)

    rows = [['ours: open_checkpoint + convert_reader + torch.save',
             f'{conv_s:.2f}', f'{conv_mib:.0f}',
             f'{conv_mib / size_mib:.2f}'],
            ['ours: open_checkpoint + read every tensor (crc32c checked)',
             f'{read_s:.2f}', f'{read_mib:.0f}',
             f'{read_mib / size_mib:.2f}'],
            ['ours: python tools/convert_tf_checkpoint.py (whole CLI)',
             f'{cli_s:.2f}', '-', '-'],
            ['  of which: python -c "import torch"', f'{torch_s:.2f}', '-',
             '-'],
            [f'  of which: python -c "{CLI_IMPORTS}"', f'{imports_s:.2f}',
             '-', '-']]
    if args.tf_python is None and importlib.util.find_spec(
            'tensorflow') is None:
        tf_note = 'TensorFlow: skipped (not installed)'
        rows.append(['tf.train.load_checkpoint + get_tensor (all)',
                     'skipped: TensorFlow not installed', '-', '-'])
        tf_s = None
    else:
        def tf_child():
            return common.run_child(__file__, dict(spec, kind='tensorflow'),
                                    python=args.tf_python)

        tf_child()  # warm-up
        tf_runs = [tf_child() for _ in range(args.repeats)]
        if any('error' in r for r in tf_runs):
            tf_s = None
            tf_note = f'TensorFlow: failed ({tf_runs[0].get("error")})'
            rows.append(['tf.train.load_checkpoint', 'failed', '-', '-'])
        else:
            tf_s = common.median([r['seconds'] for r in tf_runs])
            tf_mib = max(r['rss_mib'] for r in tf_runs)
            tf_note = (f'TensorFlow {tf_runs[0]["version"]} reads it in '
                       f'{tf_s:.2f} s, our reader in {read_s:.2f} s '
                       f'({read_s / tf_s:.2f}x)')
            rows.append([f'TF {tf_runs[0]["version"]} load_checkpoint + '
                         'get_tensor (all)', f'{tf_s:.2f}', f'{tf_mib:.0f}',
                         f'{tf_mib / size_mib:.2f}'])
    print()
    print(f'checkpoint: {size_mib:.0f} MiB, {runs[0]["tensors"]} tensors '
          f'converted, {runs[0]["ignored"]} ignored (Momentum slots, '
          f'global_step); output {out_mib:.0f} MiB; child RSS after imports '
          f'{runs[0]["baseline_mib"]:.0f} MiB')
    print(common.table(['what', 'wall s', 'peak RSS +MiB',
                        'peak / checkpoint'], rows))
    time_ok = 'met' if conv_s <= 3 else 'NOT met'
    mem_ok = 'met' if conv_mib <= 2 * size_mib else 'NOT met'
    print()
    print(f'SUMMARY: conversion {conv_s:.2f} s (goal <= 3 s: {time_ok}), '
          f'peak RSS +{conv_mib:.0f} MiB = {conv_mib / size_mib:.2f}x the '
          f'{size_mib:.0f} MiB checkpoint (goal <= 2x: {mem_ok}); whole CLI '
          f'{cli_s:.2f} s, of which {imports_s:.2f} s interpreter start and '
          f'imports; {tf_note}')


if __name__ == '__main__':
    common.entry(main, convert=child_convert, read=child_read,
                 tensorflow=child_tensorflow)
