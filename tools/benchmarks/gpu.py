"""Training throughput and memory on a GPU: fp32 against bf16 autocast.

    python tools/benchmarks/gpu.py           # 513x513, batch 8
    python tools/benchmarks/gpu.py --quick   # 257x257, batch 2

Without CUDA it prints "skipped: no GPU" and exits 0. ``--device cpu`` runs
the same code on the CPU (tiny sizes only; a check of the code path, no
memory figures).

One training step = ``model.loss`` (forward + cross-entropy) + backward +
SGD step (the config's ``optim_wrapper``, built by mmengine) on DeepLab v3+
Xception-65 OS 16 from our config (BN instead of SyncBN, random weights),
batch 8 at 513x513. Variants: fp32, fp32 + channels_last, bf16 autocast,
bf16 autocast + channels_last. Images/s over ``steps`` timed steps after
``warmup`` steps (CUDA-synchronised), peak
``torch.cuda.max_memory_allocated`` of the timed steps.
Goal: bf16 >= 1.5x the fp32 throughput at <= 0.6x its memory.
"""
import argparse
import os.path as osp
import sys
import time

import torch

import common

CONFIG = osp.join('configs', 'deeplabv3plus',
                  'deeplabv3plus_xception65-d16_4xb4-30k_voc12aug-513x513.py')
VARIANTS = ['fp32', 'fp32+cl', 'bf16', 'bf16+cl']


def build_model(device):
    cfg = common.load_config(CONFIG)
    return cfg, common.build_segmentor(cfg).to(device).train()


def make_batch(batch, size, device, fmt):
    from mmengine.structures import PixelData
    from mmseg.structures import SegDataSample
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(batch, 3, size, size, generator=gen).to(device)
    samples = []
    for _ in range(batch):
        sample = SegDataSample(metainfo=dict(img_shape=(size, size),
                                             pad_shape=(size, size)))
        sample.gt_sem_seg = PixelData(data=torch.randint(
            0, 21, (1, size, size), generator=gen).to(device))
        samples.append(sample)
    return x.contiguous(memory_format=fmt), samples


def run_variant(variant, args, device):
    """Images/s and peak memory (MiB, CUDA only) of one variant."""
    parts = variant.split('+')
    fmt = torch.channels_last if 'cl' in parts else torch.contiguous_format
    cfg, model = build_model(device)
    model = model.to(memory_format=fmt)
    from mmengine.optim import build_optim_wrapper
    optim_wrapper = build_optim_wrapper(model, cfg.optim_wrapper)
    x, samples = make_batch(args.batch, args.size, device, fmt)
    bf16 = 'bf16' in parts
    cuda = device.type == 'cuda'

    def step():
        with torch.autocast(device_type=device.type, dtype=torch.bfloat16,
                            enabled=bf16):
            losses = model.loss(x, samples)
            loss = sum(v for k, v in losses.items() if 'loss' in k)
        optim_wrapper.update_params(loss)  # backward, step, zero_grad

    def sync():
        if cuda:
            torch.cuda.synchronize(device)

    for _ in range(args.warmup):
        step()
    sync()
    if cuda:
        torch.cuda.reset_peak_memory_stats(device)
    start = time.perf_counter()
    for _ in range(args.steps):
        step()
    sync()
    seconds = time.perf_counter() - start
    peak = (torch.cuda.max_memory_allocated(device) / 2**20 if cuda else None)
    return args.batch * args.steps / seconds, peak


def parse_args():
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument('--quick', action='store_true',
                        help='smoke run: 257x257, batch 2, few steps')
    parser.add_argument('--device', default='cuda',
                        help='cuda (default) or cpu (code-path check)')
    parser.add_argument('--size', type=int, default=None)
    parser.add_argument('--batch', type=int, default=None)
    parser.add_argument('--warmup', type=int, default=None)
    parser.add_argument('--steps', type=int, default=None)
    parser.add_argument('--variants', default=','.join(VARIANTS))
    args = parser.parse_args()
    q = args.quick
    args.size = args.size or (257 if q else 513)
    args.batch = args.batch or (2 if q else 8)
    args.warmup = args.warmup or (2 if q else 5)
    args.steps = args.steps or (3 if q else 20)
    args.variants = args.variants.split(',')
    return args


def main():
    args = parse_args()
    if args.device.startswith('cuda') and not torch.cuda.is_available():
        print('skipped: no GPU')
        return 0
    device = torch.device(args.device)
    print(common.describe_run())
    if device.type == 'cuda':
        props = torch.cuda.get_device_properties(device)
        print(f'GPU: {props.name}, {props.total_memory / 2**30:.0f} GiB | '
              f'CUDA {torch.version.cuda} | cuDNN '
              f'{torch.backends.cudnn.version()}')
        torch.backends.cudnn.benchmark = True
    print(common.machine_line())
    print(f'xception65-d16 training step (loss + backward + SGD), '
          f'{args.size}x{args.size}, batch {args.batch}, {args.warmup} '
          f'warm-up + {args.steps} timed steps', flush=True)
    results = {}
    for variant in args.variants:
        results[variant] = run_variant(variant, args, device)
        if device.type == 'cuda':
            torch.cuda.empty_cache()  # the variant's model is gone
        rate, peak = results[variant]
        print(f'  {variant}: {rate:.2f} images/s, peak '
              f'{common.fmt(peak, ".0f")} MiB', flush=True)
    base_rate, base_mem = results.get('fp32', (None, None))
    rows = []
    for variant, (rate, peak) in results.items():
        rows.append([
            variant, f'{rate:.2f}', common.fmt(peak, '.0f'),
            common.fmt(rate / base_rate if base_rate else None, '.2f'),
            common.fmt(peak / base_mem if peak and base_mem else None, '.2f')
        ])
    print()
    print(common.table(['variant', 'images/s', 'peak MiB', 'speed vs fp32',
                        'memory vs fp32'], rows))
    bf16 = [v for v in results if v.startswith('bf16')]
    summary = 'no fp32/bf16 pair measured'
    if base_rate and bf16:
        best = max(bf16, key=lambda v: results[v][0])
        rate, peak = results[best]
        speed = rate / base_rate
        summary = (f'{best} {speed:.2f}x fp32 throughput (goal >= 1.5x: '
                   f'{"met" if speed >= 1.5 else "NOT met"})')
        if peak and base_mem:
            ok = 'met' if peak / base_mem <= 0.6 else 'NOT met'
            summary += (f', {peak / base_mem:.2f}x fp32 memory (goal <= '
                        f'0.6x: {ok})')
    print()
    print(f'SUMMARY: {device.type}: {summary}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
