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
import os.path as osp
import sys
import time

from deeplabplus_mm.utils import benchmark as common

KINDS = ('needed', 'all', 'keep')


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
    parser = common.parser_for(__doc__, 'smoke run: 1 repeat of each',
                               cache=True, repeats='runs of each (default '
                               '3; 1 quick)')
    parser.add_argument('--kinds', default=','.join(KINDS),
                        help='what to read, of ' + ', '.join(KINDS))
    parser.add_argument('--tf-python', default=None,
                        help='a Python interpreter with TensorFlow: also '
                        'time tf.train.load_checkpoint on the folder')
    parser.add_argument('--subset', type=int, default=None,
                        help='only the first N variables of the model '
                        '(smaller checkpoint, for smoke tests)')
    args = common.fill_defaults(parser.parse_args(), repeats=(1, 3))
    args.kinds = args.kinds.split(',')
    if not set(args.kinds) <= set(KINDS) or 'all' not in args.kinds:
        parser.error(f'--kinds: a subset of {",".join(KINDS)} with "all"')
    return args


def main():
    args = parse_args()
    prefix, archive = common.reference_checkpoint(args.cache, args.subset,
                                                  archive=True)
    size_mib = common.checkpoint_bytes(prefix) / 2**20
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
