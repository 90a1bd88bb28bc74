"""Speed, memory and FLOPs of DeepLab v3+ Xception-65 against mmseg's R101-d8.

    python tools/benchmarks/model.py            # 513x513, all cases
    python tools/benchmarks/model.py --quick    # 257x257, fewer repeats
    python tools/benchmarks/model.py --cases xception65-d16 --modes eval
    python tools/benchmarks/model.py --device cuda   # fp32 vs bf16 training

Our configs' models, random weights. Per (case, mode) a child process times
the variants round-robin with a float32 2048^3 GEMM; per variant another
measures peak memory. Method: docs/benchmarks.md, sections 1 and 5 (GPU).
"""
import argparse
import itertools
import sys
import tempfile
from types import SimpleNamespace as Run

import torch

import _checkout  # noqa: F401  (first: the checkout on sys.path)
from tools.benchmarks import _cases
from tools.benchmarks import _harness as common

VARIANTS = dict(eval=['base', 'fuse', 'fuse+cl', 'fuse+cl+compile'],
                train=['base', 'cl', 'cl-input', 'bf16', 'bf16+cl'])
CASES, EVAL = 'xception65-d16,xception65-d8,r101-d8', 'base,fuse,fuse+cl'
OPTIONS = {  # --name: (CPU quick, CPU, CUDA quick, CUDA defaults), help
    'cases': (CASES, CASES, 'xception65-d16', 'xception65-d16',
              f'comma-separated, from {sorted(_cases.CONFIGS)}'),
    'modes': ('eval,train', 'eval,train', 'train', 'train', 'eval, train'),
    'variants': (EVAL + ',cl,cl-input', EVAL + ',fuse+cl+compile,cl,cl-input',
                 EVAL + ',cl,bf16,bf16+cl', EVAL + ',fuse+cl+compile,cl,bf16,'
                 'bf16+cl', f'comma-separated, of {VARIANTS}'),
    'size': (257, 513, 257, 513, 'square input size'),
    'batch': (2, 2, 2, 8, 'training batch'),
    'warmup': (1, 1, 2, 5, 'warm-up rounds'),
    'repeats': (2, 5, 3, 20, 'timed rounds'),
    'optimizer': (False, False, True, True, "train: the config's optimizer"),
    'memory': (True, ) * 4 + ('measure memory, one process per variant', ),
    'omp_wait_policy': ('default', ) * 4 + (
        'comma-separated OMP_WAIT_POLICY: default (unset), PASSIVE, ACTIVE', )}
TF_ZOO_MACS = 54.17  # G, xception65 OS 16 at 513x513 (TF model_zoo.md)


def child(spec, memory=False):
    """Timing: variants and GEMM round-robin; memory: one variant's peak."""
    common.set_threads(spec['threads'])
    job, res, steps, mem = spec['job'], {}, {}, common.PeakRSS()
    cuda = job['device'].startswith('cuda')
    for v in spec['variants']:  # res[v]: compile seconds (or None)
        steps[v], _, res[v] = _cases.prepare(variant=v, **job, on_ready=(
            mem.start if memory and not cuda else None))
    if memory:
        for i in range(4 if cuda else 2):
            if cuda and i == 2:
                torch.cuda.reset_peak_memory_stats(job['device'])
            steps[v]()
        return dict(mib=torch.cuda.max_memory_allocated(job['device']) /
                    2**20 if cuda else mem.delta_mib())
    if job['mode'] == 'eval':
        model, size = _cases.build_case(job['case']).eval(), job['size']
        res['macs'], ops = _cases.count_macs(model, size)
        res['by_op'] = dict(sorted(ops.items(), key=lambda kv: -kv[1]))
        res['by_kind'] = _cases.conv_breakdown(model, size)
        res['unit'] = _cases.counter_unit()
    steps['gemm'] = common.gemm_step(job['device'])
    res['times'], res['other'] = common.round_robin(
        steps, spec['warmup'], spec['repeats'], spec['max_other_cores'])
    return res


def run_child(spec, policy):  # an empty inductor cache: cold compile times
    env = {} if policy == 'default' else dict(OMP_WAIT_POLICY=policy)
    with tempfile.TemporaryDirectory(prefix='deeplabplus_inductor_') as cache:
        return common.run_child(__file__, spec, dict(
            env, TORCHINDUCTOR_CACHE_DIR=cache))


def parse_args():
    p = common.parser(__doc__, 'smoke run: smaller, fewer rounds, no compile')
    p.add_argument('--device', default='cpu', help='cpu (default), cuda[:N]')
    for name, (*v, text) in OPTIONS.items():
        p.add_argument('--' + name.replace('_', '-'), **(
            dict(action=argparse.BooleanOptionalAction) if type(v[1]) is bool
            else dict(type=type(v[1]))), help=f'{text} (default {v[1]}; '
            f'{v[0]} quick; cuda: {v[3]}, {v[2]} quick)')
    args = common.parse(p)
    args.cuda = cuda = args.device.startswith('cuda')
    for name, (*v, _) in OPTIONS.items():
        value = getattr(args, name)
        value = v[2 * cuda + (not args.quick)] if value is None else value
        setattr(args, name, value.split(',') if type(value) is str else value)
    for what, known in (('cases', _cases.CONFIGS), ('modes', VARIANTS)):
        for name in set(getattr(args, what)) - set(known):
            p.error(f'unknown {what[:-1]} {name!r}: not in {sorted(known)}')
    return args


def main():
    args = parse_args()
    if args.cuda and not torch.cuda.is_available():
        print('skipped: no GPU (--device cuda, but torch sees no CUDA '
              'device)')
        return 0
    load, threads = common.start(args)
    if args.cuda:
        print(common.gpu_line(args.device))
    gemm = [common.gemm_gflops(args.device)]
    print(f'load average at start: {load:.2f}; input {args.size}x{args.size}'
          f'; eval batch 1, train batch {args.batch}' + ' with the optimizer '
          'step' * args.optimizer + f'; device {args.device}; warm-up '
          f'{args.warmup}, median of {args.repeats} rounds; float32 GEMM '
          f'2048^3 at start: {gemm[0]:.1f} GFLOP/s', flush=True)
    runs, macs, policies = [], {}, args.omp_wait_policy
    for case, mode in itertools.product(args.cases, args.modes):
        batch = args.batch if mode == 'train' else 1
        variants, mib = [v for v in args.variants if v in VARIANTS[mode]], {}
        spec = dict(threads=threads, variants=variants, warmup=args.warmup,
                    repeats=args.repeats, max_other_cores=args.max_other_cores,
                    job=dict(case=case, mode=mode, size=args.size, batch=batch,
                             device=args.device, optimizer=args.optimizer))
        for v in variants if args.memory else []:  # under policies[0]
            mib[v] = run_child(dict(spec, kind='memory', variants=[v]),
                               policies[0]).get('mib')
            print(f'  {case} {mode} {v}: peak ' + ('CUDA ' if args.cuda else
                  'RSS +') + f'{common.fmt(mib[v], ".0f")} MiB', flush=True)
        for policy in policies if variants else []:
            res = run_child(dict(spec, kind='timing'), policy)
            if 'error' in res:
                print(f'  {case} {mode} [{policy}]: FAILED {res["error"]}')
                runs.append(Run(case=case, mode=mode, t=None))
                continue
            gmacs = res['macs'] / 1e9 if 'macs' in res else None
            macs.update({case: res} if gmacs else {})
            for v in variants:
                t = common.median(res['times'][v]) / batch
                runs.append(Run(
                    case=case, mode=mode, v=v, t=t, gmacs=gmacs,
                    mem=mib.get(v) if policy == policies[0] else None,
                    name=v if len(policies) == 1 else f'{v} [{policy}]',
                    gemm=common.gemm_rate(common.median(res['times']['gemm'])),
                    flops=gmacs and 2 * gmacs / t, compile=res[v],
                    other=max(res['other'][v])))
                print(f'  {case} {mode} {v} [{policy}]: {t:.3f} s/image',
                      flush=True)
    gemm.append(common.gemm_gflops(args.device))
    print(f'float32 GEMM 2048^3 at the end: {gemm[1]:.1f} GFLOP/s; load '
          f'average now {common.load_average():.2f}')
    report(args, runs, macs, max(gemm + [r.gemm for r in runs if r.t]))


def report(args, runs, macs, best_gemm):  # best: a conservative ceiling
    fmt = common.fmt
    pct = lambda a, b: fmt(a and a / b * 100, '.0f')
    giga = lambda d: ', '.join(f'{k} {v / 1e9:.3f}' for k, v in d.items())
    print(f'\ninput {args.size}x{args.size}; s/image: median of the rounds '
          f'(train: batch {args.batch}, per image); peak ' + ('CUDA: max '
          'allocated, weights included' if args.cuda else 'RSS: above the '
          'built model') + ', own process; GFLOP/s = 2 x GMACs / s; GEMM: '
          'float32 2048^3 torch.mm in the same rounds (% of best: of the '
          f"run's fastest, {best_gemm:.1f} GFLOP/s); compile: cold cache; "
          'other cores: CPU of other processes during the runs')
    print(common.table([
        'case', 'mode', 'variant', 's/image', 'images/s', 'peak CUDA MiB'
        if args.cuda else 'peak RSS +MiB', 'GMACs/image', 'GFLOP/s',
        'GEMM GFLOP/s', '% of GEMM', '% of best GEMM', 'compile s',
        'other cores'], [
             [r.case, r.mode, 'all', 'failed'] + ['-'] * 9 if not r.t else [
                 r.case, r.mode, r.name, f'{r.t:.3f}', f'{1 / r.t:.2f}',
                 fmt(r.mem, '.0f'), fmt(r.gmacs), fmt(r.flops, '.1f'),
                 f'{r.gemm:.1f}', pct(r.flops, r.gemm),
                 pct(r.flops, best_gemm), fmt(r.compile, '.0f'),
                 f'{r.other:.2f}'] for r in runs]))
    runs = [r for r in runs if r.t]
    for r in (r for r in runs if r.other >= args.max_other_cores):
        print(f'warning: {r.case} {r.mode} {r.name}: other processes used '
              f'up to {r.other:.2f} cores during its runs')
    for case, res in macs.items():
        print(f'{case}: FlopAnalyzer counts {res["unit"]} for one multiply-'
              f'add -> MACs. G by operator: {giga(res["by_op"])}. Own count, '
              f'G: {giga(res["by_kind"])}')
    if 'xception65-d16' in macs:
        res, scale = macs['xception65-d16'], (513 / args.size)**2
        conv = res['by_op'].get('conv', 0) * scale / 1e9
        print(f"xception65-d16 vs the TF model zoo's {TF_ZOO_MACS:.2f} B "
              f'multiply-adds at 513x513: convs {conv:.2f} G MACs ('
              f'{conv / TF_ZOO_MACS - 1:+.2%}), FlopAnalyzer total '
              f'{res["macs"] * scale / 1e9:.2f} G' + (args.size != 513) * (
                  f' (x (513/{args.size})^2 = {scale:.2f} to compare)'))
    summary, policies = [], args.omp_wait_policy
    base_name = 'base' + ('' if len(policies) == 1 else f' [{policies[0]}]')
    for mode, case in itertools.product(args.modes, args.cases):
        mine, ref = ({r.name: r for r in runs if (r.case, r.mode) == (c, mode)}
                     for c in (case, 'r101-d8'))
        if case.startswith('r101') or base_name not in mine:
            continue
        best = min(mine.values(), key=lambda r: r.t)
        t, base = best.t, mine[base_name]
        item = f'{case} {mode} {t:.3f} s/image ({best.name}, ' + (
            f'{base.t / t:.2f}x its base)')
        if r0 := ref.get(base_name):  # r101-d8's base
            item += (f', faster than r101-d8: {r0.t / t:.2f}x (best vs its '
                     f'base), {min(r.t for r in ref.values()) / t:.2f}x '
                     f'(best vs best), {r0.t / base.t:.2f}x (base vs base)')
        if best.flops:
            item += (f', {best.flops / best.gemm:.0%} of GEMM ('
                     f'{best.flops / best_gemm:.0%} of the best GEMM)')
        fast = min((r for r in mine.values() if 'bf16' in r.v), default=None,
                   key=lambda r: r.t)
        if fast:  # the goals: >= 1.5x the speed at <= 0.6x the memory
            speed, mem = base.t / fast.t, fast.mem and base.mem and (
                fast.mem / base.mem)
            item += (f', {fast.name} {speed:.2f}x fp32 throughput (goal >= '
                     f'1.5x: {"met" if speed >= 1.5 else "NOT met"})' + (
                         f', {mem:.2f}x fp32 memory (goal <= 0.6x: '
                         f'{"" if mem <= 0.6 else "NOT "}met)' if mem else ''))
        summary.append(item)
    print('\nSUMMARY: ' + ('; '.join(summary) or 'no complete comparison'))


if __name__ == '__main__':
    sys.exit(common.entry(main, timing=child,
                          memory=lambda spec: child(spec, memory=True)))
