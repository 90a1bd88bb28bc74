"""Test-time augmentation: our TTA model and mmseg's against the forwards
they need.

    python tools/benchmarks/tta.py                     # xception65, 513x513
    python tools/benchmarks/tta.py --arch 41 --size 193
    python tools/benchmarks/tta.py --quick             # xception41, 97x97

One image of ``size`` x ``size`` goes through the ``tta_pipeline`` of
``configs/_base_/datasets/pascal_voc12_aug.py`` (6 scales 0.5..1.75, each
with and without a horizontal flip: 12 inputs), collated as the test loader
does, and then:

1. ``test_step`` (data preprocessing, 12 predictions with post-processing,
   merge) of the configs' ``AccumulatingSegTTAModel`` (merges each view as
   it comes) and of mmseg's ``SegTTAModel`` (keeps the 12 views' logits,
   merges at the end), against the sum of the 12 bare network forwards
   (``encode_decode`` on the preprocessed inputs) they run: the overhead
   ratio (goal <= 1.1); also the ratio to the time spent inside those
   forwards during the same call (in-call), and to the 12 forwards when
   they keep their logits to the end as mmseg's merge does.
2. Per scale, the image and its mirror as one batch of 2 against two
   batch-1 forwards.
3. Peak memory of one call of each TTA model and of the 12 bare forwards,
   each in a fresh process (RSS above the built model and inputs).

The model is the zoo config's (eval mode, random weights, SyncBN reverted)
with the preprocessor's padding size set to ``size`` (the config pads to
513 for 513 inputs). Warm-up, then the median of ``repeats``.
"""
import argparse
import os.path as osp
import tempfile
import time

import numpy as np
import torch
import torch.nn.functional as F

import common

ZOO_CONFIG = osp.join('configs', 'deeplabv3plus',
                      'deeplabv3plus_xception65-d16_4xb4-30k_voc12aug-'
                      '513x513.py')


def build(arch, size, channels_last=False):
    cfg = common.load_config(ZOO_CONFIG)
    cfg.model.backbone.arch = arch
    cfg.model.data_preprocessor.test_cfg = dict(size=(size, size))
    from deeplabplus_mm.models.utils import prepare_for_inference
    model = common.build_segmentor(cfg)
    prepare_for_inference(model, fuse=False, channels_last=channels_last)
    return cfg, model


def tta_batch(cfg, size, folder):
    """The test loader's batch of one image through the TTA pipeline."""
    import cv2
    from mmcv.transforms import Compose
    from mmengine.dataset import pseudo_collate

    from deeplabplus_mm.datasets.synthetic import make_sample, save_palette_png
    img, label = make_sample(np.random.default_rng(0), size, size)
    img_path, seg_path = osp.join(folder, 'img.jpg'), osp.join(folder,
                                                               'seg.png')
    cv2.imwrite(img_path, img)
    save_palette_png(seg_path, label)
    pipeline = Compose(cfg.tta_pipeline)
    item = pipeline(dict(img_path=img_path, seg_map_path=seg_path,
                         reduce_zero_label=False, seg_fields=[]))
    return pseudo_collate([item])


def parse_args():
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    common.add_common_args(parser,
                           'smoke run: xception41 at 97x97, 1 repeat')
    parser.add_argument('--arch', type=int, default=None,
                        help='xception 41/65/71 (default 65; 41 quick)')
    parser.add_argument('--size', type=int, default=None,
                        help='image side (default 513; 97 quick)')
    parser.add_argument('--repeats', type=int, default=None)
    parser.add_argument('--channels-last', action='store_true')
    args = parser.parse_args()
    args.arch = args.arch or (41 if args.quick else 65)
    args.size = args.size or (97 if args.quick else 513)
    args.repeats = args.repeats or (1 if args.quick else 5)
    return args


def prepare(arch, size, channels_last):
    """The model, the two TTA models around it, the TTA batch of one image
    and the 12 preprocessed inputs as the TTA models' calls make them."""
    from mmseg.models import SegTTAModel

    from deeplabplus_mm.models import AccumulatingSegTTAModel
    cfg, model = build(arch, size, channels_last)
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    with tempfile.TemporaryDirectory() as folder:
        batch = tta_batch(cfg, size, folder)
    tta_models = dict(ours=AccumulatingSegTTAModel(module=model).eval(),
                      mmseg=SegTTAModel(module=model).eval())
    singles = []
    for idx in range(len(batch['inputs'])):
        data = model.data_preprocessor(
            dict(inputs=batch['inputs'][idx],
                 data_samples=batch['data_samples'][idx]), False)
        metas = [s.metainfo for s in data['data_samples']]
        singles.append((data['inputs'].contiguous(memory_format=fmt), metas))
    return cfg, model, tta_models, batch, singles


def child_memory(spec):
    """Peak RSS above the prepared models and inputs over one TTA call of
    ``spec['which']`` ('ours', 'mmseg') or the 12 bare forwards
    ('forwards'), in a fresh process."""
    common.set_threads(spec['threads'])
    _, model, tta_models, batch, singles = prepare(
        spec['arch'], spec['size'], spec['channels_last'])
    mem = common.PeakRSS().start()
    with torch.no_grad():
        if spec['which'] == 'forwards':
            for x, metas in singles:
                model.encode_decode(x, metas)
        else:
            tta_models[spec['which']].test_step(batch)
    return dict(rss_mib=mem.delta_mib(), rss_reset=mem.reset)


def main():
    args = parse_args()
    load, threads = common.start_run(args)
    cfg, model, tta_models, batch, singles = prepare(
        args.arch, args.size, args.channels_last)
    ours, mmseg_tta = tta_models['ours'], tta_models['mmseg']
    fmt = (torch.channels_last if args.channels_last else
           torch.contiguous_format)
    num_augs = len(batch['inputs'])
    print(f'load average at start: {load:.2f}; xception{args.arch}, image '
          f'{args.size}x{args.size}, {num_augs} TTA inputs, warm-up 1, '
          f'median of {args.repeats}', flush=True)

    # Time spent inside the network forwards during each TTA call: the
    # in-call overhead ratio does not depend on drift between separately
    # timed runs.
    forward = model.encode_decode
    inside = []

    def timed_forward(*a, **k):
        start = time.perf_counter()
        out = forward(*a, **k)
        inside[-1] += time.perf_counter() - start
        return out

    def tta_runner(tta, in_call_ratios):
        def run_tta():
            inside.append(0.)
            model.encode_decode = timed_forward
            try:
                with torch.no_grad():
                    start = time.perf_counter()
                    tta.test_step(batch)
                    total = time.perf_counter() - start
            finally:
                del model.encode_decode  # back to the class's method
            in_call_ratios.append(total / inside[-1])
        return run_tta

    ours_in_call, mmseg_in_call = [], []
    run_ours = tta_runner(ours, ours_in_call)
    run_mmseg = tta_runner(mmseg_tta, mmseg_in_call)

    def run_singles():
        with torch.no_grad():
            for x, metas in singles:
                model.encode_decode(x, metas)

    def run_singles_keep():
        """The same forwards keeping each one's logits at the image's size
        until the end, as the TTA merge must (memory held between them)."""
        kept = []
        with torch.no_grad():
            for x, metas in singles:
                logits = model.encode_decode(x, metas)
                kept.append(F.interpolate(logits, size=(args.size, args.size),
                                          mode='bilinear'))
        return kept

    # Interleave the measurements so that drifting load hits all alike;
    # runs that other processes disturbed are retried (up to 3 times).
    def timed(fn):
        times, other = common.measure_clean(fn, 1, args.max_other_cores,
                                            max_tries=3)
        disturbed.append(max(other))
        return times

    disturbed = []
    ours_times, mmseg_times, single_times, keep_times = [], [], [], []
    run_ours()
    run_mmseg()
    run_singles()
    for _ in range(args.repeats):
        ours_times += timed(run_ours)
        single_times += timed(run_singles)
        mmseg_times += timed(run_mmseg)
        keep_times += timed(run_singles_keep)
    tta_s, single_s = common.median(ours_times), common.median(single_times)
    mmseg_s, keep_s = common.median(mmseg_times), common.median(keep_times)
    in_call = common.median(ours_in_call[1:])  # [0]: the warm-up call
    mmseg_in_call = common.median(mmseg_in_call[1:])

    # Flip pairs: same scale, batch of 2 vs two batches of 1.
    rows = []
    ratios = cfg.img_ratios
    seq_total = batched_total = 0.
    for idx in range(0, num_augs, 2):
        x, metas = singles[idx]
        flipped, fmetas = singles[idx + 1]
        pair = torch.cat([x, flipped]).contiguous(memory_format=fmt)

        def sequential():
            with torch.no_grad():
                model.encode_decode(x, metas)
                model.encode_decode(flipped, fmetas)

        def batched():
            with torch.no_grad():
                model.encode_decode(pair, metas + fmetas)

        seq, bat = [], []
        sequential()
        batched()
        for _ in range(args.repeats):
            seq += timed(sequential)
            bat += timed(batched)
        seq_s, bat_s = common.median(seq), common.median(bat)
        seq_total += seq_s
        batched_total += bat_s
        shape = 'x'.join(str(v) for v in x.shape[2:])
        rows.append([f'{ratios[idx // 2]:.2f}', shape,
                     f'{seq_s:.3f}', f'{bat_s:.3f}', f'{bat_s / seq_s:.2f}'])

    print()
    print(common.table(
        ['what', 'seconds'],
        [['ours: AccumulatingSegTTAModel.test_step (12 inputs)',
          f'{tta_s:.3f}'],
         ["mmseg's SegTTAModel.test_step (12 inputs)", f'{mmseg_s:.3f}'],
         ['sum of the 12 bare forwards', f'{single_s:.3f}'],
         ['the 12 forwards keeping their logits (as mmseg merges)',
          f'{keep_s:.3f}'],
         ['overhead ratio, ours (TTA / bare forwards)',
          f'{tta_s / single_s:.3f}'],
         ["overhead ratio, mmseg's", f'{mmseg_s / single_s:.3f}'],
         ["mmseg's / forwards keeping their logits",
          f'{mmseg_s / keep_s:.3f}'],
         ['in-call overhead, ours (test_step / its own forwards)',
          f'{in_call:.3f}'],
         ["in-call overhead, mmseg's", f'{mmseg_in_call:.3f}']]))
    print()
    print('flip pairs: sequential = two batch-1 forwards, batched = one '
          'batch of 2')
    print(common.table(
        ['scale', 'network input', 'sequential s', 'batched s',
         'batched / sequential'],
        rows + [['all', '', f'{seq_total:.3f}', f'{batched_total:.3f}',
                 f'{batched_total / seq_total:.2f}']]))
    memory = {
        which: common.run_child(__file__, dict(
            kind='memory', which=which, arch=args.arch, size=args.size,
            channels_last=args.channels_last, threads=threads))
        for which in ('forwards', 'ours', 'mmseg')}
    print()
    print('peak memory above the built model and inputs, one call in a '
          'fresh process:')
    print(common.table(['what', 'peak RSS MiB'], [
        [label, memory[which].get('error') or
         f"{memory[which]['rss_mib']:.0f}"]
        for which, label in (('forwards', 'the 12 bare forwards'),
                             ('ours', 'ours: AccumulatingSegTTAModel'),
                             ('mmseg', "mmseg's SegTTAModel"))]))
    mib = {k: v.get('rss_mib') for k, v in memory.items()}
    verdict = ('met' if tta_s / single_s <= 1.1 else 'NOT met')
    in_verdict = ('met' if in_call <= 1.1 else 'NOT met')
    print(f'other processes used up to {max(disturbed):.2f} cores during '
          'the timed runs kept')
    print()
    print(f'SUMMARY: xception{args.arch} {args.size}x{args.size}: TTA '
          f'{tta_s:.2f} s vs {single_s:.2f} s of bare forwards, overhead '
          f'ratio {tta_s / single_s:.3f} (goal <= 1.1: {verdict}), in-call '
          f'{in_call:.3f} ({in_verdict}); mmseg\'s SegTTAModel '
          f'{mmseg_s / single_s:.3f} (ours {tta_s / mmseg_s:.3f}x its '
          f'time, peak memory {common.fmt(mib["ours"], ".0f")} vs '
          f'{common.fmt(mib["mmseg"], ".0f")} MiB); batched '
          f'flip / sequential = {batched_total / seq_total:.2f} '
          f'({seq_total:.2f} s -> {batched_total:.2f} s)')


if __name__ == '__main__':
    common.entry(main, memory=child_memory)
