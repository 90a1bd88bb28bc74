"""Data throughput: the VOC-aug training pipeline and COCO -> VOC masks.

    python tools/benchmarks/data.py [--quick]   # 96 VOC + 300 COCO images

DataLoader workers, ``convert_coco_to_voc`` processes, and precomputed vs
on-the-fly masks, on synthetic data. Method: ``docs/benchmarks.md``.
"""
import os.path as osp
import shutil
import sys
import tempfile
import time

import cv2
import numpy as np
import torch
from mmengine.dataset import pseudo_collate
from torch.utils.data import DataLoader, RandomSampler

import _checkout  # noqa: F401  (first: the checkout on sys.path)
from deeplabplus_mm.datasets import LoadVOCAnnotations, PascalVOCAugDataset
from tools import REPO
from tools.benchmarks import _harness as common
from tools.dataset_converters import _coco_to_voc as c2v
from tools.fixtures.synthetic_coco import make_synthetic_coco
from tools.fixtures.synthetic_voc import make_synthetic_voc

SPLIT = 'train2017'


def timed(func, *args, **kwargs):
    """``(seconds, func(*args, **kwargs))``."""
    start = time.perf_counter()
    result = func(*args, **kwargs)
    return time.perf_counter() - start, result


def child_coco(spec):
    """Child: ``convert_coco_to_voc(**spec)`` (mmengine's progress bars
    write to the original stdout: here the pipe ``run_child`` reads)."""
    seconds, s = timed(c2v.convert_coco_to_voc, **spec)
    return dict(seconds=seconds, kept=len(s.kept), dropped=len(s.dropped))


def main():
    from deeplabplus_mm.apis.inference import load_config
    p = common.parser(__doc__, 'smoke run: fewer images and batches',
                      cache=True, voc_images=(24, 96, 'VOC-size images'),
                      batches=(3, 24, 'timed batches of 4 per worker setting'),
                      coco_images=(40, 300, 'COCO images'))
    p.add_argument('--workers', default='0,1,2', help='DataLoader workers')
    p.add_argument('--nprocs', default='1,2', help='COCO -> VOC processes')
    args = common.parse(p)
    workers, nprocs = ([int(v) for v in s.split(',')]
                       for s in (args.workers, args.nprocs))
    voc = osp.join(args.cache, f'synthvoc_{args.voc_images}')
    coco = osp.join(args.cache, f'synthcoco_{args.coco_images}')
    make_synthetic_voc(voc, args.voc_images, 0, (375, 500), seed=0)
    make_synthetic_coco(coco, args.coco_images, SPLIT, seed=0)
    cv2.setNumThreads(0)  # as mmengine's runner does (set_multi_processing)
    common.start(args)
    cfg = load_config(osp.join(REPO, 'configs', '_base_', 'datasets',
                               'pascal_voc12_aug.py'))
    dataset = PascalVOCAugDataset(
        data_root=voc, pipeline=cfg.train_pipeline,
        ann_file='ImageSets/Segmentation/train.txt', data_prefix=dict(
            img_path='JPEGImages', seg_map_path='SegmentationClass'))
    batch, rates, coco_rates = cfg.train_dataloader.batch_size, {}, {}
    for w in workers:  # images/s after the first max(2, w) batches
        warm = max(2, w)
        it = iter(DataLoader(
            dataset, batch, num_workers=w, collate_fn=pseudo_collate,
            sampler=RandomSampler(dataset, True, batch * (warm + args.batches),
                                  generator=torch.Generator().manual_seed(0))))
        for _ in range(warm):
            next(it)
        seconds, images = timed(sum, (len(b['inputs']) for b in it))
        rates[w] = images / seconds
    scratch = tempfile.mkdtemp(dir=args.cache)
    for n in nprocs:  # a fresh output folder each time: every mask is made
        res = common.run_child(__file__, dict(
            kind='coco', coco_root=coco, split=SPLIT, min_pixels=1000,
            out_root=osp.join(scratch, str(n)), nproc=n))
        if 'error' in res:
            sys.exit(f'convert_coco_to_voc failed: {res["error"]}')
        coco_rates[n] = (res['kept'] + res['dropped']) / res['seconds']
    ann, masks = (osp.join(coco, 'annotations', f'instances_{SPLIT}.json'),
                  osp.join(scratch, str(nprocs[0]), 'voc_masks', SPLIT))

    def plan():  # the conversion's serial start, before any worker starts
        tasks = c2v.plan_tasks(c2v.load_instances_json(ann), ann,
                               c2v.find_image_dir(coco, SPLIT), masks)
        c2v.find_missing_files([t.image for t in tasks])
        return tasks

    def costs(t):  # seconds to load the PNG, to rasterise (equal labels)
        png_s, loaded = timed(load, dict(
            seg_map_path=t.output, ori_shape=(t.height, t.width),
            seg_fields=[], reduce_zero_label=False))
        raster_s, label = timed(c2v.rasterize, t.instances, t.height, t.width)
        assert np.array_equal(loaded['gt_seg_map'], label), t.stem
        return png_s, raster_s

    serial, load = [timed(plan) for _ in range(3)], LoadVOCAnnotations(21)
    png, raster = zip(*[costs(t) for t in serial[0][1]
                        if osp.isfile(t.output)])
    shutil.rmtree(scratch, ignore_errors=True)
    png_s, raster_s = common.median(png), common.median(raster)
    base, top, first = coco_rates[nprocs[0]], max(nprocs), rates[workers[0]]
    print(f'\nVOC-aug train pipeline on {len(dataset)} synthetic images of '
          f'375..500 px, crop 513, batch {batch}, {args.batches} timed '
          'batches per setting\n' + common.table(
              ['DataLoader workers', 'images/s', 'vs 0 workers'],
              [[w, f'{r:.1f}', f'{r / first:.2f}x']
               for w, r in rates.items()]))
    print(f'\nCOCO -> VOC masks, {args.coco_images} images of ~480x640 '
          f'({res["kept"]} kept, {res["dropped"]} dropped)\n' + common.table(
              ['processes', 'images/s', 'speed-up', 'scaling efficiency'],
              [[n, f'{r:.1f}', f'{r / base:.2f}x',
                f'{r / base / (n / nprocs[0]):.0%}']
               for n, r in coco_rates.items()]))
    print('serial part (read json, plan, check images exist): '
          f'{common.median([s for s, _ in serial]):.2f} s of the '
          f'{args.coco_images / base:.2f} s with {nprocs[0]} process(es)')
    print(f'\nper sample, median of {len(png)} COCO images\n' + common.table(
        ['label source', 'ms/sample'],
        [['precomputed PNG (LoadVOCAnnotations: read, decode, check)',
          f'{png_s * 1e3:.2f}'],
         ['on the fly (rasterize: polygons/RLE -> decode -> paint)',
          f'{raster_s * 1e3:.2f}']]))
    loader = ', '.join(f'{w} workers {r:.1f}' for w, r in rates.items())
    scaling = ', '.join(f'{n} proc {r:.1f}' for n, r in coco_rates.items())
    print(f'\nSUMMARY: train pipeline images/s: {loader} (best '
          f'{max(rates.values()) / first:.2f}x of {workers[0]} workers); '
          f'COCO->VOC images/s: {scaling} ({coco_rates[top] / base:.2f}x with '
          f'{top} processes, {coco_rates[top] / base / (top / nprocs[0]):.0%}'
          f' of linear); on-the-fly rasterisation {raster_s / png_s:.2f}x the'
          f' cost of loading the precomputed PNG ({raster_s * 1e3:.2f} vs '
          f'{png_s * 1e3:.2f} ms)')


if __name__ == '__main__':
    sys.exit(common.entry(main, coco=child_coco))
