"""Test-time augmentation: TF's protocol (the configs' default) and
mmseg's, against the network forwards they need.

    python tools/benchmarks/tta.py                     # xception65, 513x513
    python tools/benchmarks/tta.py --arch 41 --size 193
    python tools/benchmarks/tta.py --quick             # xception41, 97x97

One image of ``size`` x ``size`` (the crop: ``test_cfg.size`` = ``size``)
with the VOC configs' 6 scales 0.5..1.75, each with and without a
horizontal flip (12 views), collated as the test loader does, and then:

1. TF's protocol: ``test_step`` of the configs' ``TFMultiScaleSegTTAModel``
   (``tta_pipeline``: one view; the model pads to the crop, then makes the
   12 views at their own sizes, 257..897 for 513) against the sum of the
   12 bare network forwards (``_forward``) at those sizes: the overhead
   ratio (goal <= 1.1), also in-call (against the time spent inside those
   forwards during the same call).
2. mmseg's protocol (``mmseg_tta_pipeline``: each view scaled, then padded
   to the crop, so the small scales run full-crop forwards):
   ``AccumulatingSegTTAModel`` (merges each view as it comes) and mmseg's
   ``SegTTAModel`` (keeps the 12 views' logits, merges at the end), against
   the sum of their 12 bare forwards (``encode_decode`` on the preprocessed
   inputs), and the 12 forwards keeping their logits as mmseg's merge does.
   TF's time relative to ``AccumulatingSegTTAModel``'s (today's TTA).
3. Per scale of mmseg's views, the image and its mirror as one batch of 2
   against two batch-1 forwards.
4. Peak memory of one call of each TTA model and of the bare forwards,
   each in a fresh process (RSS above the built model and inputs).

The model is the zoo config's (eval mode, random weights, SyncBN reverted)
with the preprocessor's padding size set to ``size`` (the config pads to
513 for 513 inputs). Warm-up, then the median of ``repeats``; all timings
interleaved round-robin.
"""
import os.path as osp
import tempfile
import time

import numpy as np
import torch
import torch.nn.functional as F
from mmengine.config import Config

from deeplabplus_mm.apis import build_model
from deeplabplus_mm.utils import benchmark as common

ZOO_CONFIG = osp.join('configs', 'deeplabv3plus',
                      'deeplabv3plus_xception65-d16_4xb4-30k_voc12aug-'
                      '513x513.py')


def build(arch, size, channels_last=False):
    cfg = Config.fromfile(osp.join(common.REPO, ZOO_CONFIG))
    cfg.model.backbone.arch = arch
    cfg.model.data_preprocessor.test_cfg = dict(size=(size, size))
    from deeplabplus_mm.models.utils import prepare_for_inference
    model = build_model(cfg, seed=0)
    prepare_for_inference(model, fuse=False, channels_last=channels_last)
    return cfg, model


def tta_batches(cfg, size, folder):
    """The test loader's batch of one image through TF's ``tta_pipeline``
    (one view) and through ``mmseg_tta_pipeline`` (12 views)."""
    import cv2
    from mmcv.transforms import Compose
    from mmengine.dataset import pseudo_collate

    from deeplabplus_mm.datasets.synthetic import make_sample, save_palette_png
    img, label = make_sample(np.random.default_rng(0), size, size)
    img_path, seg_path = osp.join(folder, 'img.jpg'), osp.join(folder,
                                                               'seg.png')
    cv2.imwrite(img_path, img)
    save_palette_png(seg_path, label)
    batches = []
    for pipeline in (cfg.tta_pipeline, cfg.mmseg_tta_pipeline):
        item = Compose(pipeline)(dict(img_path=img_path, seg_map_path=seg_path,
                                      reduce_zero_label=False, seg_fields=[]))
        batches.append(pseudo_collate([item]))
    return batches


def parse_args():
    parser = common.parser_for(__doc__,
                               'smoke run: xception41 at 97x97, 1 repeat',
                               repeats='timed rounds (default 5; 1 quick)')
    parser.add_argument('--arch', type=int, default=None,
                        help='xception 41/65/71 (default 65; 41 quick)')
    parser.add_argument('--size', type=int, default=None,
                        help='image side (default 513; 97 quick)')
    parser.add_argument('--channels-last', action='store_true')
    return common.fill_defaults(parser.parse_args(), arch=(41, 65),
                                size=(97, 513), repeats=(1, 5))


def prepare(arch, size, channels_last):
    """The model, the TTA models around it, the TTA batches of one image,
    the 12 preprocessed inputs of mmseg's protocol as its TTA models' calls
    make them, and the 12 network inputs of TF's protocol."""
    from mmseg.models import SegTTAModel

    from deeplabplus_mm.models import (AccumulatingSegTTAModel,
                                       TFMultiScaleSegTTAModel,
                                       scale_dimension)
    cfg, model = build(arch, size, channels_last)
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    with tempfile.TemporaryDirectory() as folder:
        tf_batch, batch = tta_batches(cfg, size, folder)
    tf_cfg = {k: v for k, v in cfg.tta_model.items() if k != 'type'}
    tta_models = dict(
        tf=TFMultiScaleSegTTAModel(module=model, **tf_cfg).eval(),
        ours=AccumulatingSegTTAModel(module=model).eval(),
        mmseg=SegTTAModel(module=model).eval())
    singles = []
    for idx in range(len(batch['inputs'])):
        data = model.data_preprocessor(
            dict(inputs=batch['inputs'][idx],
                 data_samples=batch['data_samples'][idx]), False)
        metas = [s.metainfo for s in data['data_samples']]
        singles.append((data['inputs'].contiguous(memory_format=fmt), metas))
    padded = model.data_preprocessor(
        dict(inputs=tf_batch['inputs'][0],
             data_samples=tf_batch['data_samples'][0]), False)['inputs']
    tf_views = []
    for scale in tta_models['tf'].scales:
        for flipped in (False, True) if tta_models['tf'].flip else (False, ):
            x = padded.flip(-1) if flipped else padded
            if scale != 1.0:
                x = F.interpolate(
                    x, [scale_dimension(n, scale) for n in x.shape[2:]],
                    mode='bilinear', align_corners=True)
            tf_views.append(x.contiguous(memory_format=fmt))
    return cfg, model, tta_models, (tf_batch, batch), singles, tf_views


def child_memory(spec):
    """Peak RSS above the prepared models and inputs over one TTA call of
    ``spec['which']`` ('tf', 'ours', 'mmseg') or the 12 bare forwards of
    mmseg's protocol ('forwards') or of TF's ('tf_forwards'), in a fresh
    process."""
    common.set_threads(spec['threads'])
    _, model, tta_models, (tf_batch, batch), singles, tf_views = prepare(
        spec['arch'], spec['size'], spec['channels_last'])
    mem = common.PeakRSS().start()
    with torch.no_grad():
        if spec['which'] == 'forwards':
            for x, metas in singles:
                model.encode_decode(x, metas)
        elif spec['which'] == 'tf_forwards':
            for x in tf_views:
                model._forward(x)
        elif spec['which'] == 'tf':
            tta_models['tf'].test_step(tf_batch)
        else:
            tta_models[spec['which']].test_step(batch)
    return dict(rss_mib=mem.delta_mib(), rss_reset=mem.reset)


def main():
    args = parse_args()
    load, threads = common.start_run(args)
    cfg, model, tta_models, (tf_batch, batch), singles, tf_views = prepare(
        args.arch, args.size, args.channels_last)
    tf_tta, ours, mmseg_tta = (tta_models['tf'], tta_models['ours'],
                               tta_models['mmseg'])
    fmt = (torch.channels_last if args.channels_last else
           torch.contiguous_format)
    num_augs = len(batch['inputs'])
    tf_sizes = ', '.join(str(x.shape[2]) for x in tf_views[::2])
    print(f'load average at start: {load:.2f}; xception{args.arch}, image '
          f'{args.size}x{args.size}, {num_augs} TTA views (TF: network '
          f'inputs {tf_sizes}, x2 flip), warm-up 1, median of '
          f'{args.repeats}', flush=True)

    # Time spent inside the network forwards during each TTA call: the
    # in-call overhead ratio does not depend on drift between separately
    # timed runs. mmseg's TTA models call encode_decode, TF's _forward.
    inside = []

    def tta_runner(tta, data, method, in_call_ratios):
        forward = getattr(model, method)

        def timed_forward(*a, **k):
            start = time.perf_counter()
            out = forward(*a, **k)
            inside[-1] += time.perf_counter() - start
            return out

        def run_tta():
            inside.append(0.)
            setattr(model, method, timed_forward)
            try:
                with torch.no_grad():
                    start = time.perf_counter()
                    tta.test_step(data)
                    total = time.perf_counter() - start
            finally:
                delattr(model, method)  # back to the class's method
            in_call_ratios.append(total / inside[-1])
        return run_tta

    tf_in_call, ours_in_call, mmseg_in_call = [], [], []
    run_tf = tta_runner(tf_tta, tf_batch, '_forward', tf_in_call)
    run_ours = tta_runner(ours, batch, 'encode_decode', ours_in_call)
    run_mmseg = tta_runner(mmseg_tta, batch, 'encode_decode', mmseg_in_call)

    def run_tf_singles():
        with torch.no_grad():
            for x in tf_views:
                model._forward(x)

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
    # One warm-up round, then medians.
    def timed(**steps):
        times, others = common.round_robin(steps, 1, args.repeats,
                                           args.max_other_cores)
        disturbed.extend(max(o) for o in others.values())
        return {key: common.median(value) for key, value in times.items()}

    disturbed = []
    med = timed(tf=run_tf, tf_singles=run_tf_singles, ours=run_ours,
                singles=run_singles, mmseg=run_mmseg, keep=run_singles_keep)
    tf_s, tf_single_s = med['tf'], med['tf_singles']
    tta_s, single_s = med['ours'], med['singles']
    mmseg_s, keep_s = med['mmseg'], med['keep']
    # [0]: the warm-up call
    tf_in = common.median(tf_in_call[1:])
    in_call = common.median(ours_in_call[1:])
    mmseg_in = common.median(mmseg_in_call[1:])

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

        pair_s = timed(seq=sequential, bat=batched)
        seq_s, bat_s = pair_s['seq'], pair_s['bat']
        seq_total += seq_s
        batched_total += bat_s
        shape = 'x'.join(str(v) for v in x.shape[2:])
        rows.append([f'{ratios[idx // 2]:.2f}', shape,
                     f'{seq_s:.3f}', f'{bat_s:.3f}', f'{bat_s / seq_s:.2f}'])

    print()
    print(common.table(
        ['what', 'seconds'],
        [["TF's protocol: TFMultiScaleSegTTAModel.test_step (12 views)",
          f'{tf_s:.3f}'],
         ["sum of its 12 bare forwards at the views' own sizes",
          f'{tf_single_s:.3f}'],
         ["mmseg's protocol: AccumulatingSegTTAModel.test_step (12 views)",
          f'{tta_s:.3f}'],
         ["mmseg's protocol: mmseg's SegTTAModel.test_step (12 views)",
          f'{mmseg_s:.3f}'],
         ["sum of mmseg's protocol's 12 bare forwards", f'{single_s:.3f}'],
         ['the 12 forwards keeping their logits (as mmseg merges)',
          f'{keep_s:.3f}'],
         ["overhead ratio, TF's (TTA / its bare forwards)",
          f'{tf_s / tf_single_s:.3f}'],
         ['overhead ratio, AccumulatingSegTTAModel (TTA / bare forwards)',
          f'{tta_s / single_s:.3f}'],
         ["overhead ratio, mmseg's SegTTAModel", f'{mmseg_s / single_s:.3f}'],
         ["mmseg's / forwards keeping their logits",
          f'{mmseg_s / keep_s:.3f}'],
         ["in-call overhead, TF's (test_step / its own forwards)",
          f'{tf_in:.3f}'],
         ['in-call overhead, AccumulatingSegTTAModel', f'{in_call:.3f}'],
         ["in-call overhead, mmseg's SegTTAModel", f'{mmseg_in:.3f}'],
         ["TF's protocol / AccumulatingSegTTAModel (today's TTA)",
          f'{tf_s / tta_s:.3f}']]))
    print()
    print("flip pairs (mmseg's protocol's views): sequential = two batch-1 "
          'forwards, batched = one batch of 2')
    print(common.table(
        ['scale', 'network input', 'sequential s', 'batched s',
         'batched / sequential'],
        rows + [['all', '', f'{seq_total:.3f}', f'{batched_total:.3f}',
                 f'{batched_total / seq_total:.2f}']]))
    memory = {
        which: common.run_child(__file__, dict(
            kind='memory', which=which, arch=args.arch, size=args.size,
            channels_last=args.channels_last, threads=threads))
        for which in ('tf_forwards', 'tf', 'forwards', 'ours', 'mmseg')}
    print()
    print('peak memory above the built model and inputs, one call in a '
          'fresh process:')
    print(common.table(['what', 'peak RSS MiB'], [
        [label, memory[which].get('error') or
         f"{memory[which]['rss_mib']:.0f}"]
        for which, label in (
            ('tf_forwards', "TF's 12 bare forwards at their own sizes"),
            ('tf', "TF's protocol: TFMultiScaleSegTTAModel"),
            ('forwards', "mmseg's protocol's 12 bare forwards"),
            ('ours', "mmseg's protocol: AccumulatingSegTTAModel"),
            ('mmseg', "mmseg's protocol: mmseg's SegTTAModel"))]))
    mib = {k: v.get('rss_mib') for k, v in memory.items()}

    def verdict(ratio):
        return 'met' if ratio <= 1.1 else 'NOT met'

    print(f'other processes used up to {max(disturbed):.2f} cores during '
          'the timed runs kept')
    print()
    print(f'SUMMARY: xception{args.arch} {args.size}x{args.size}: TTA, '
          f"TF's protocol (TFMultiScaleSegTTAModel) {tf_s:.2f} s vs "
          f"{tf_single_s:.2f} s of its views' bare forwards, overhead "
          f'ratio {tf_s / tf_single_s:.3f} (goal <= 1.1: '
          f'{verdict(tf_s / tf_single_s)}), in-call {tf_in:.3f}; '
          f'{tf_s / tta_s:.3f}x the time of AccumulatingSegTTAModel '
          f"(mmseg's protocol), peak memory "
          f'{common.fmt(mib["tf"], ".0f")} vs {common.fmt(mib["ours"], ".0f")}'
          f' MiB. mmseg\'s protocol: TTA {tta_s:.2f} s vs {single_s:.2f} s '
          f'of bare forwards, overhead ratio {tta_s / single_s:.3f} (goal '
          f'<= 1.1: {verdict(tta_s / single_s)}), in-call {in_call:.3f} '
          f'({verdict(in_call)}); mmseg\'s SegTTAModel '
          f'{mmseg_s / single_s:.3f} (ours {tta_s / mmseg_s:.3f}x its time, '
          f'peak memory {common.fmt(mib["ours"], ".0f")} vs '
          f'{common.fmt(mib["mmseg"], ".0f")} MiB); batched flip / '
          f'sequential = {batched_total / seq_total:.2f} ({seq_total:.2f} s '
          f'-> {batched_total:.2f} s)')


if __name__ == '__main__':
    common.entry(main, memory=child_memory)
