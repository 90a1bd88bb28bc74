"""Relabel COCO instance annotations with the 20 PASCAL VOC classes.

Example::

    python tools/dataset_converters/coco_voc.py --coco data/coco \\
        --split train2017 --nproc 8

Writes ``COCO/voc_masks/train2017/*.png`` and ``COCO/voc_lists/train2017.txt``
(or under ``--out-root``); see
``tools/dataset_converters/_coco_to_voc.py`` (the conversion).
"""
import argparse
import sys

from _coco_to_voc import convert_coco_to_voc  # this folder's

from deeplabplus_mm.datasets.utils import DatasetError


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description='Rasterise COCO instances into VOC-labelled palette PNGs '
        '(20 VOC classes, crowd = 255) and list the images kept')
    parser.add_argument(
        '--coco',
        required=True,
        help='COCO root with annotations/instances_SPLIT.json and SPLIT/ '
        'or images/SPLIT/')
    parser.add_argument(
        '--split', required=True, help='split name, e.g. train2017')
    parser.add_argument(
        '--out-root',
        default=None,
        help='where voc_masks/ and voc_lists/ go (default: --coco)')
    parser.add_argument(
        '--min-pixels',
        type=int,
        default=1000,
        help='drop images with fewer pixels of VOC classes (default 1000)')
    parser.add_argument(
        '--nproc', type=int, default=1, help='worker processes')
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    try:
        summary = convert_coco_to_voc(
            args.coco,
            args.split,
            out_root=args.out_root,
            min_pixels=args.min_pixels,
            nproc=args.nproc)
    except (DatasetError, FileNotFoundError, ValueError) as e:
        sys.exit(f'error: {e}')
    print(summary.report())


if __name__ == '__main__':
    main()
