"""Eval forward in PyTorch against ONNX Runtime (CPU execution provider).

    python tools/benchmarks/deploy.py             # xception65 OS16, 513x513
    python tools/benchmarks/deploy.py --quick     # 129x129, fewer repeats
    python tools/benchmarks/deploy.py --case xception41-d16 --size 65

One child process builds the case's model from our config (random weights,
SyncBN reverted, as ``model.py`` does) and times, round-robin with the
float32 2048^3 ``torch.mm`` GEMM as one more entry (the reference rate under
the same conditions): warm-up rounds, then the median of ``repeats`` rounds
(a round during which other processes took more than ``--max-other-cores``
of CPU is retried, up to 3 times):

* ``pytorch base``: ``encode_decode`` of a batch of 1 under ``no_grad``
  (``model.py``'s eval ``base``);
* ``pytorch fuse+cl``: BN folded into the convs + channels_last, our
  fastest eager path (``tools/test.py --fuse-conv-bn --channels-last``);
* ``onnxruntime``: the graph of ``tools/deployment/export_onnx.py`` (static
  ``size`` x ``size``, BN not folded at export: ONNX Runtime folds it
  itself) in an ``InferenceSession`` with all graph optimisations, as many
  intra-op threads as torch uses. Its graph also normalises the raw input
  (one elementwise pass) and ends with the same resize to the input size.

Export and session creation times are reported apart, and the ONNX Runtime
logits are compared with PyTorch's on the timed input. Goal: ONNX Runtime
within 1.2x of the fastest PyTorch path, or faster.
"""
import os
import tempfile
import time

import numpy as np
import torch

from deeplabplus_mm.utils import benchmark as common

VARIANTS = ['pytorch base', 'pytorch fuse+cl', 'onnxruntime']
GOAL = 1.2


def build_onnx(case, size, folder):
    """Export the case's plain model (static size x size); returns the
    path, the export time and the wrapper (for the comparison)."""
    from deeplabplus_mm.apis.export import DeployableSegmentor, export_onnx
    net = common.build_case(case).eval()  # seeded: as prepare()'s
    wrapper = DeployableSegmentor(net)
    path = os.path.join(folder, f'{case}_{size}.onnx')
    start = time.perf_counter()
    export_onnx(wrapper, path, (size, size))
    return path, time.perf_counter() - start, wrapper


def child_timing(spec):
    import onnxruntime as ort
    threads = common.set_threads(spec['threads'])
    case, size = spec['case'], spec['size']
    steps, result = {}, dict(ort=ort.__version__)
    for variant in ('base', 'fuse+cl'):
        steps[f'pytorch {variant}'], _, _ = common.prepare(case, 'eval',
                                                            variant, size)
    with tempfile.TemporaryDirectory(prefix='deeplabplus_onnx_') as folder:
        path, result['export_s'], wrapper = build_onnx(case, size, folder)
        result['onnx_mib'] = os.path.getsize(path) / 2**20
        options = ort.SessionOptions()
        options.graph_optimization_level = (
            ort.GraphOptimizationLevel.ORT_ENABLE_ALL)
        options.intra_op_num_threads = threads
        start = time.perf_counter()
        session = ort.InferenceSession(path, options,
                                       providers=['CPUExecutionProvider'])
        result['session_s'] = time.perf_counter() - start
    gen = torch.Generator().manual_seed(0)
    image = (torch.rand(1, 3, size, size, generator=gen) * 255).numpy()
    feed = {'image': image}
    steps['onnxruntime'] = lambda: session.run(None, feed)
    with torch.no_grad():
        expected = wrapper(torch.from_numpy(image)).numpy()
    got = session.run(None, feed)[0]
    result['max_abs_diff'] = float(np.abs(got - expected).max())
    result['max_abs_logit'] = float(np.abs(expected).max())
    del wrapper, expected
    result['macs'] = common.count_macs(common.build_case(case).eval(),
                                       size)[0]
    steps['gemm'] = common.gemm_step()
    result['times'], result['other_cores'] = common.round_robin(
        steps, spec['warmup'], spec['repeats'], spec['max_other_cores'])
    return result


def parse_args():
    parser = common.parser_for(
        __doc__, 'smoke run: 129x129, 1 warm-up + 2 repeats',
        repeats='timed rounds (default 7; 2 quick)')
    parser.add_argument('--case', default='xception65-d16',
                        choices=sorted(common.CONFIGS))
    parser.add_argument('--size', type=int, default=None,
                        help='square input size (default 513; 129 quick)')
    parser.add_argument('--warmup', type=int, default=None)
    args = parser.parse_args()
    if args.warmup is None:
        args.warmup = 1 if args.quick else 2
    return common.fill_defaults(args, size=(129, 513), repeats=(2, 7))


def main():
    args = parse_args()
    try:
        import onnxruntime  # noqa: F401
    except ImportError:
        print('skipped: onnxruntime is not installed (pip install -r '
              'requirements/onnx.txt)')
        return 0
    load, threads = common.start_run(args)
    print(f'load average at start: {load:.2f}; {args.case}, input '
          f'{args.size}x{args.size}, batch 1; one process times the variants'
          f' and the GEMM round-robin: warm-up {args.warmup}, median of '
          f'{args.repeats} rounds', flush=True)
    res = common.run_child(
        __file__,
        dict(kind='timing', case=args.case, size=args.size,
             threads=threads, warmup=args.warmup, repeats=args.repeats,
             max_other_cores=args.max_other_cores))
    if 'error' in res:
        print(f'FAILED: {res["error"]}')
        return 1
    report(args, res)
    return 0


def report(args, res):
    gemm = common.gemm_rate(common.median(res['times']['gemm']))
    per_image = {v: common.median(res['times'][v]) for v in VARIANTS}
    torch_best = min(('pytorch base', 'pytorch fuse+cl'),
                     key=per_image.get)
    rows = []
    for variant in VARIANTS:
        t = per_image[variant]
        flops = 2 * res['macs'] / t / 1e9
        rows.append([
            variant,
            f'{t:.3f}', f'{1 / t:.2f}', f'{flops:.1f}', f'{gemm:.1f}',
            f'{flops / gemm * 100:.0f}', f'{t / per_image[torch_best]:.2f}',
            f'{max(res["other_cores"][variant]):.2f}'
        ])
    print()
    print(f'{args.case} eval forward, {args.size}x{args.size}, batch 1; '
          f'GFLOP/s = 2 x {res["macs"] / 1e9:.2f} GMACs (FlopAnalyzer) / s; '
          'GEMM: float32 2048^3 torch.mm in the same rounds; vs fastest '
          'PyTorch: time / time of the faster PyTorch row')
    print(common.table([
        'variant', 's/image', 'images/s', 'GFLOP/s', 'GEMM GFLOP/s',
        '% of GEMM', 'vs fastest PyTorch', 'other cores'
    ], rows))
    print(f'onnxruntime {res["ort"]}: export {res["export_s"]:.1f} s '
          f'({res["onnx_mib"]:.0f} MiB), session creation '
          f'{res["session_s"]:.1f} s; ONNX Runtime vs PyTorch logits: max '
          f'|diff| {res["max_abs_diff"]:.2g} (logits up to '
          f'{res["max_abs_logit"]:.2g})')
    ratio = per_image['onnxruntime'] / per_image[torch_best]
    faster = 'ONNX Runtime' if ratio < 1 else f'PyTorch ({torch_best})'
    verdict = 'met' if ratio <= GOAL else 'not met'
    print()
    times = ', '.join(f'{v} {per_image[v]:.3f}' for v in VARIANTS)
    print(f'SUMMARY: {args.case} {args.size}x{args.size}, s/image: {times}; '
          f'ONNX Runtime / fastest PyTorch ({torch_best}) = {ratio:.2f} '
          f'(goal <= {GOAL}: {verdict}); faster: {faster}; load average '
          f'now {common.load_average():.2f}')


if __name__ == '__main__':
    common.entry(main, timing=child_timing)
