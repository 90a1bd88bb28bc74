"""Eval forward in PyTorch against ONNX Runtime (CPU execution provider).

    python tools/benchmarks/deploy.py             # xception65 OS16, 513x513
    python tools/benchmarks/deploy.py --quick --case xception41-d16

Round-robin timing and logits compared; method: docs/benchmarks.md, 7.
"""
import importlib.util
import os
import sys
import tempfile

import torch

import _checkout  # noqa: F401  (first: the checkout on sys.path)
from deeplabplus_mm.apis import export as api
from tools.benchmarks import _cases
from tools.benchmarks import _harness as common

VARIANTS, GOAL = ['pytorch base', 'pytorch fuse+cl', 'onnxruntime'], 1.2


def child(case, size, threads, warmup, repeats, max_other_cores, **_):
    import onnxruntime as ort
    options = ort.SessionOptions()  # all graph optimisations by default
    options.intra_op_num_threads = common.set_threads(threads)
    steps = {v: _cases.prepare(case, 'eval', v[8:], size)[0]
             for v in VARIANTS[:2]}
    wrapper = api.DeployableSegmentor(_cases.build_case(case).eval())
    with tempfile.TemporaryDirectory(prefix='deeplabplus_onnx_') as folder:
        with common.Interference() as export:  # static size, BN unfolded
            api.export_onnx(wrapper, path := f'{folder}/m.onnx', (size, size))
        with common.Interference() as load:
            session = ort.InferenceSession(path, options,
                                           ['CPUExecutionProvider'])
        (diff, logit, _), = api.check_against_torch(  # on the timed input
            wrapper, path, [(size, size)]).values()
        res = dict(export_s=export.wall, session_s=load.wall, diff=diff,
                   logit=logit, onnx_mib=os.path.getsize(path) / 2**20,
                   macs=_cases.count_macs(wrapper.segmentor, size)[0],
                   ort=ort.__version__)
    feed = {api.INPUT_NAME: (torch.rand(  # check_against_torch's image
        1, 3, size, size, generator=torch.Generator().manual_seed(0)) *
        255).numpy()}
    steps.update(onnxruntime=lambda: session.run(None, feed),
                 gemm=common.gemm_step())
    res['times'], res['other'] = common.round_robin(steps, warmup, repeats,
                                                    max_other_cores)
    return res


def main():
    p = common.parser(__doc__, 'smoke run', size=(129, 513, 'input size'),
                      warmup=(1, 2, 'warm-up'), repeats=(2, 7, 'timed rounds'))
    p.add_argument('--case', default='xception65-d16', choices=_cases.CONFIGS)
    args, s = common.parse(p), '{0}x{0}'.format
    if importlib.util.find_spec('onnxruntime') is None:
        print('skipped: onnxruntime is not installed (pip install -r '
              'requirements/onnx.txt)')
        return 0
    res = common.run_child(__file__, dict(vars(args), kind='timing',
                                          threads=common.start(args)[1]))
    if 'error' in res:
        raise SystemExit(f'FAILED: {res["error"]}')
    t = {v: common.median(times) for v, times in res['times'].items()}
    best, gemm = min(VARIANTS[:2], key=t.get), common.gemm_rate(t['gemm'])
    ratio, gflop = t['onnxruntime'] / t[best], 2e-9 * res['macs']
    print(f'\n{args.case} eval forward, {s(args.size)}, batch 1, '
          f'{gflop / 2:.2f} GMACs (FlopAnalyzer); onnxruntime {res["ort"]}: '
          f'export {res["export_s"]:.1f} s ({res["onnx_mib"]:.0f} MiB), '
          f'session creation {res["session_s"]:.1f} s; ONNX Runtime vs '
          f'PyTorch logits: max |diff| {res["diff"]:.2g} (logits up to '
          f'{res["logit"]:.2g})')
    print(common.table([
        'variant', 's/image', 'images/s', 'GFLOP/s', 'GEMM GFLOP/s',
        '% of GEMM', 'vs fastest PyTorch', 'other cores'], [[
            v, f'{t[v]:.3f}', f'{1 / t[v]:.2f}', f'{gflop / t[v]:.1f}',
            f'{gemm:.1f}', f'{gflop / t[v] / gemm * 100:.0f}',
            f'{t[v] / t[best]:.2f}', f'{max(res["other"][v]):.2f}']
            for v in VARIANTS]))
    print(f'\nSUMMARY: {args.case} {s(args.size)}, s/image: ' + ', '.join(
        f'{v} {t[v]:.3f}' for v in VARIANTS) + '; ONNX Runtime / fastest '
          f'PyTorch ({best}) = {ratio:.2f} (goal <= {GOAL}: '
          f'{"" if ratio <= GOAL else "not "}met); faster: ' + (
              'ONNX Runtime' if ratio < 1 else f'PyTorch ({best})') +
          f'; load average now {common.load_average():.2f}')


if __name__ == '__main__':
    sys.exit(common.entry(main, timing=lambda spec: child(**spec)))
