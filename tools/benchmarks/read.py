"""Time and memory of reading a full-size TF checkpoint: folder vs .tar.gz.

    python tools/benchmarks/read.py           # xception_65, 3 repeats
    python tools/benchmarks/read.py --quick   # 1 repeat, no warm-up run

The reader alone (``deeplabplus_mm.converters.open_checkpoint``), what the
converter (``tools/convert_tf_checkpoint.py``, measured by ``convert.py``)
spends its reading in. The checkpoint is generated once and cached
(``--cache``, default ``$TMPDIR/deeplabplus_bench``): every variable of
``shared/tf_deeplab/xception65_os16/variables.tsv`` with the values of
``shared/tf_deeplab/weights.py``, a ``<name>/Momentum`` slot for each
trainable one and ``global_step``, as a training run leaves it (~330 MB),
written by our writer, and the same folder as a ``.tar.gz`` (as the model
zoo ships it).

Each measurement runs in a fresh child process (after an untimed run: page
cache warm), round-robin over the cases; wall and CPU time and peak RSS above
the child's RSS after its imports. Cases, for both inputs:

* ``needed``: the tensors a conversion reads (not the Momentum slots), each
  dropped once read, as the converter does;
* ``all``: every tensor (crc32c checked), each dropped once read;
* ``keep``: ``load_checkpoint``: every tensor, all kept.

Also the crc32c throughput on a 64 MiB buffer and the cost of reading
without it (``verify=False``), to show where the time goes, and, with
``--tf-python`` naming an interpreter that has TensorFlow, the same reads of
the folder by ``tf.train.load_checkpoint`` (TensorFlow reads no archives).
"""
import argparse
import importlib.util
import os
import os.path as osp
import sys
import tarfile
import tempfile
import time

import common

CASE = 'xception65_os16'
KINDS = ('needed', 'all', 'keep')


def refs_dir():
    return os.environ.get('DEEPLAB_TF_REFS',
                          osp.join(common.REPO, '..', 'shared', 'tf_deeplab'))


def checkpoint_tensors(refs, subset=None):
    """name -> array of a training checkpoint of the reference model (the
    first ``subset`` variables only, when given)."""
    spec = importlib.util.spec_from_file_location(
        'tf_refs_weights', osp.join(refs, 'weights.py'))
    weights = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(weights)
    table = weights.read_variables_tsv(osp.join(refs, CASE, 'variables.tsv'))
    tensors = {'global_step': weights.variable_value('global_step', (),
                                                     'int64')}
    for name, shape, dtype, trainable in table[:subset]:
        tensors[name] = weights.variable_value(name, shape, dtype)
        if trainable:
            slot = f'{name}/Momentum'
            tensors[slot] = weights.variable_value(slot, shape, dtype)
    return tensors


def ensure_inputs(cache, refs, subset=None):
    """(prefix, archive) of the cached checkpoint, written on first use."""
    from deeplabplus_mm.converters import write_checkpoint
    name = 'read_xception65_momentum' + (f'_{subset}' if subset else '')
    folder = osp.join(cache, name)
    prefix = osp.join(folder, 'model.ckpt-30000')
    archive = osp.join(cache, f'{name}.tar.gz')
    if not osp.isfile(prefix + '.index'):
        os.makedirs(folder, exist_ok=True)
        start = time.perf_counter()
        write_checkpoint(prefix, checkpoint_tensors(refs, subset))
        print(f'# wrote {prefix} in {time.perf_counter() - start:.1f} s',
              flush=True)
    if not osp.isfile(archive):
        start = time.perf_counter()
        tmp = f'{archive}.tmp{os.getpid()}'
        with tarfile.open(tmp, 'w:gz', compresslevel=6) as tar:
            tar.add(folder, arcname=name)
        os.replace(tmp, archive)
        print(f'# wrote {archive} in {time.perf_counter() - start:.1f} s',
              flush=True)
    return prefix, archive


def input_bytes(prefix):
    folder, base = osp.split(prefix)
    return sum(
        osp.getsize(osp.join(folder, f)) for f in os.listdir(folder)
        if f.startswith(base + '.'))


def _wanted(kind, name):
    """Whether a ``kind`` read takes tensor ``name``."""
    return kind != 'needed' or not (name.endswith('/Momentum')
                                    or name == 'global_step')


def child_read(spec):
    """Child: open ``src`` with our reader and read the tensors of
    ``what``."""
    from deeplabplus_mm.converters import load_checkpoint, open_checkpoint
    mem = common.PeakRSS().start()
    start, cpu = time.perf_counter(), time.process_time()
    count = 0
    if spec['what'] == 'keep':
        count = len(load_checkpoint(spec['src'], verify=spec['verify']))
    else:
        with open_checkpoint(spec['src']) as reader:
            for name in reader.names():
                if _wanted(spec['what'], name):
                    reader.get(name, verify=spec['verify'])  # dropped
                    count += 1
    return dict(seconds=time.perf_counter() - start,
                cpu=time.process_time() - cpu, rss_mib=mem.delta_mib(),
                tensors=count)


def child_tensorflow(spec):
    """Child: the same with TensorFlow's ``tf.train.load_checkpoint``."""
    import tensorflow as tf
    mem = common.PeakRSS().start()
    start, cpu = time.perf_counter(), time.process_time()
    reader = tf.train.load_checkpoint(spec['src'])
    kept, count = {}, 0
    for name in reader.get_variable_to_shape_map():
        if _wanted(spec['what'], name):
            value = reader.get_tensor(name)
            if spec['what'] == 'keep':
                kept[name] = value
            count += 1
    return dict(seconds=time.perf_counter() - start,
                cpu=time.process_time() - cpu, rss_mib=mem.delta_mib(),
                tensors=count, version=tf.__version__)


def crc_throughput():
    """MB/s of crc32c over 64 MiB of random bytes, by CPU time (best of
    3: other processes do not count)."""
    import numpy as np

    from deeplabplus_mm.converters import crc32c
    data = np.random.default_rng(0).integers(0, 256, 64 << 20, np.uint8)
    times = []
    for _ in range(3):
        start = time.process_time()
        crc32c(data)
        times.append(time.process_time() - start)
    return data.size / min(times) / 1e6


def parse_args():
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    common.add_common_args(parser, 'smoke run: 1 repeat of each')
    parser.add_argument('--cache', default=osp.join(tempfile.gettempdir(),
                                                    'deeplabplus_bench'),
                        help='where the generated checkpoint is kept')
    parser.add_argument('--repeats', type=int, default=None)
    parser.add_argument('--kinds', default=','.join(KINDS),
                        help='what to read, of ' + ', '.join(KINDS))
    parser.add_argument('--tf-python', default=None,
                        help='a Python interpreter with TensorFlow: also '
                        'time tf.train.load_checkpoint on the folder')
    parser.add_argument('--subset', type=int, default=None,
                        help='only the first N variables of the model '
                        '(smaller checkpoint, for smoke tests)')
    args = parser.parse_args()
    args.repeats = args.repeats or (1 if args.quick else 3)
    args.kinds = args.kinds.split(',')
    if not set(args.kinds) <= set(KINDS) or 'all' not in args.kinds:
        parser.error(f'--kinds: a subset of {",".join(KINDS)} with "all"')
    return args


def main():
    args = parse_args()
    refs = refs_dir()
    if not osp.isfile(osp.join(refs, CASE, 'variables.tsv')):
        sys.exit(f'error: TF references not found at {refs} (set '
                 'DEEPLAB_TF_REFS)')
    prefix, archive = ensure_inputs(args.cache, refs, args.subset)
    size_mib = input_bytes(prefix) / 2**20
    load, _ = common.start_run(args)
    print(f'load average at start: {load:.2f}; checkpoint {prefix} '
          f'({size_mib:.0f} MiB, index + data), archive {archive} '
          f'({osp.getsize(archive) / 2**20:.0f} MiB); median of '
          f'{args.repeats}' + ('' if args.quick else
                               ' after 1 untimed run (page cache warm)'),
          flush=True)
    inputs = {'folder': prefix, 'tar.gz': archive}
    # (input, what, reader): ours with crc32c checks, ours without, TF's.
    cases = [(src, what, 'ours') for what in args.kinds for src in inputs]
    cases += [('folder', 'all', 'ours, verify=False')]
    if args.tf_python:
        cases += [('folder', what, 'tf') for what in args.kinds]
    runs = {case: [] for case in cases}

    def child(case):
        src, what, reader = case
        spec = dict(kind='tensorflow' if reader == 'tf' else 'read',
                    src=inputs[src], what=what,
                    verify=reader != 'ours, verify=False')
        result = common.run_child(
            __file__, spec, python=args.tf_python if reader == 'tf' else None)
        if 'error' in result:
            sys.exit(f'{case} failed: {result["error"]}')
        return result

    for case in [] if args.quick else cases:  # warm-up: page cache
        child(case)
    for _ in range(args.repeats):  # round-robin
        for case in cases:
            runs[case].append(child(case))

    rows, summary = [], {}
    for case in cases:
        src, what, reader = case
        wall = common.median([r['seconds'] for r in runs[case]])
        cpu = common.median([r['cpu'] for r in runs[case]])
        mib = max(r['rss_mib'] for r in runs[case])
        summary[case] = (wall, mib)
        name = (f'TF {runs[case][0]["version"]}' if reader == 'tf' else
                reader)
        rows.append([f'{name}: {src}, {what} '
                     f'({runs[case][0]["tensors"]} tensors)', f'{wall:.2f}',
                     f'{cpu:.2f}', f'{mib:.0f}', f'{mib / size_mib:.2f}'])
    crc_mbs = crc_throughput()
    print()
    print(common.table(['what', 'wall s', 'CPU s', 'peak RSS +MiB',
                        'peak / checkpoint'], rows))
    print(f'\ncrc32c: {crc_mbs:.0f} MB/s (numpy, one thread, by CPU time)')
    (f_all, f_mib), (t_all, t_mib) = (summary['folder', 'all', 'ours'],
                                       summary['tar.gz', 'all', 'ours'])
    line = (f'SUMMARY: read every tensor of a {size_mib:.0f} MiB checkpoint: '
            f'folder {f_all:.2f} s, peak +{f_mib:.0f} MiB; tar.gz '
            f'{t_all:.2f} s ({t_all / f_all:.2f}x), peak +{t_mib:.0f} MiB '
            f'({t_mib / max(f_mib, 1):.2f}x)')
    if 'keep' in args.kinds:
        f_keep, t_keep = (summary['folder', 'keep', 'ours'][1],
                          summary['tar.gz', 'keep', 'ours'][1])
        line += (f'; keeping them all: folder +{f_keep:.0f} MiB, tar.gz '
                 f'+{t_keep:.0f} MiB ({t_keep / max(f_keep, 1):.2f}x)')
    for what in args.kinds if args.tf_python else ():
        ours, tf = (summary['folder', what, 'ours'][0],
                    summary['folder', what, 'tf'][0])
        line += f'; {what}: ours / TF {ours / tf:.2f}x'
    print('\n' + line)


if __name__ == '__main__':
    common.entry(main, read=child_read, tensorflow=child_tensorflow)
