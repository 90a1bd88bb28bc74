"""Time and memory of reading a full-size TF checkpoint: folder vs .tar.gz.

    python tools/benchmarks/read.py           # xception_65, 3 repeats
    python tools/benchmarks/read.py --quick   # 1 repeat, no warm-up run

Our reader (``open_checkpoint``, the converter's) over the reference
checkpoint's folder and the same folder as a ``.tar.gz``, with and without
the crc32c checks, and TensorFlow's on the folder (``--tf-python``), each
read in a fresh process, round-robin. Method: ``docs/benchmarks.md``.
"""
import os.path as osp
import sys
import time

import _checkout  # noqa: F401  (first: the checkout on sys.path)
from tools.benchmarks import _checkpoint
from tools.benchmarks import _harness as common

KINDS = ('needed', 'all', 'keep')


def crc_throughput():
    """MB/s of crc32c over 64 MiB, by CPU time (best of 3)."""
    import numpy as np

    from deeplabplus_mm.converters import crc32c
    data = np.random.default_rng(0).integers(0, 256, 64 << 20, np.uint8)
    times = []
    for _ in range(3):
        start = time.process_time()
        crc32c(data)
        times.append(time.process_time() - start)
    return data.size / min(times) / 1e6


def main():
    p = common.parser(__doc__, 'smoke run: 1 repeat of each, no warm-up',
                      cache=True, repeats=(1, 3, 'runs of each'))
    p.add_argument('--kinds', default=','.join(KINDS),
                   help='what to read, of ' + ', '.join(KINDS))
    p.add_argument('--tf-python', help='a Python with TensorFlow to time too')
    p.add_argument('--subset', type=int, help='only the first N variables')
    args = common.parse(p)
    kinds, warm = args.kinds.split(','), int(not args.quick)
    if not set(kinds) <= set(KINDS) or 'all' not in kinds:
        p.error(f'--kinds: a subset of {",".join(KINDS)} with "all"')
    prefix, archive = _checkpoint.reference_checkpoint(args.cache, args.subset,
                                                  archive=True)
    size = _checkpoint.checkpoint_bytes(prefix) / 2**20
    common.start(args)
    print(f'checkpoint {prefix} ({size:.0f} MiB, index + data), archive '
          f'{archive} ({osp.getsize(archive) / 2**20:.0f} MiB); median of '
          f'{args.repeats}' + warm * ' after 1 untimed run (page cache warm)')
    inputs = {'folder': prefix, 'tar.gz': archive}
    # (input, what, reader): ours with crc32c checks, ours without, TF's
    cases = [(src, what, 'ours') for what in kinds for src in inputs]
    cases += [('folder', 'all', 'ours, verify=False')]
    cases += [('folder', what, 'tf') for what in kinds if args.tf_python]
    runs = {case: [] for case in cases}
    for i in range(warm + args.repeats):  # round-robin after a warm-up
        for case in cases:
            src, what, reader = case
            spec = dict(kind='read', src=inputs[src], what=what,
                        verify=reader != 'ours, verify=False')
            res = (_checkpoint.tf_read(spec, args.tf_python) if reader == 'tf'
                   else common.run_child(__file__, spec))
            if 'error' in res:
                sys.exit(f'{case} failed: {res["error"]}')
            runs[case] += [res] if i >= warm else []
    rows, wall, mib = [], {}, {}
    for case, rs in runs.items():
        (src, what, reader), cpu = case, common.median([r['cpu'] for r in rs])
        wall[case] = common.median([r['seconds'] for r in rs])
        mib[case] = max(r['rss_mib'] for r in rs)
        name = f'TF {rs[0]["version"]}' if reader == 'tf' else reader
        rows.append([f'{name}: {src}, {what} ({rs[0]["tensors"]} tensors)',
                     f'{wall[case]:.2f}', f'{cpu:.2f}', f'{mib[case]:.0f}',
                     f'{mib[case] / size:.2f}'])
    print('\n' + common.table(['what', 'wall s', 'CPU s', 'peak RSS +MiB',
                               'peak / checkpoint'], rows))
    print(f'\ncrc32c: {crc_throughput():.0f} MB/s (numpy, one thread, by CPU '
          'time)')
    (f_all, t_all), (f_mib, t_mib) = ([d[src, 'all', 'ours'] for src in
                                        inputs] for d in (wall, mib))
    line = (f'SUMMARY: read every tensor of a {size:.0f} MiB checkpoint: '
            f'folder {f_all:.2f} s, peak +{f_mib:.0f} MiB; tar.gz '
            f'{t_all:.2f} s ({t_all / f_all:.2f}x), peak +{t_mib:.0f} MiB '
            f'({t_mib / max(f_mib, 1):.2f}x)')
    if 'keep' in kinds:
        f_keep, t_keep = (mib[src, 'keep', 'ours'] for src in inputs)
        line += (f'; keeping them all: folder +{f_keep:.0f} MiB, tar.gz '
                 f'+{t_keep:.0f} MiB ({t_keep / max(f_keep, 1):.2f}x)')
    for what in kinds if args.tf_python else ():
        ours, tf = (wall['folder', what, reader] for reader in ('ours', 'tf'))
        line += f'; {what}: ours / TF {ours / tf:.2f}x'
    print('\n' + line)


if __name__ == '__main__':
    sys.exit(common.entry(main, read=_checkpoint.read_child))
