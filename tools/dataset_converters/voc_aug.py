"""Build PASCAL VOC-aug: SBD's masks + VOC 2012's, and ``trainaug.txt``.

Example::

    python tools/dataset_converters/voc_aug.py \\
        --voc data/VOCdevkit/VOC2012 --sbd data/benchmark_RELEASE --nproc 8

Writes ``VOC2012/SegmentationClassAug/*.png`` and
``VOC2012/ImageSets/Segmentation/trainaug.txt`` (10,582 images); see
``tools/dataset_converters/_sbd_voc_aug.py`` (the conversion).
"""
import argparse
import sys

from _sbd_voc_aug import convert_voc_aug  # this folder's

from deeplabplus_mm.datasets.utils import DatasetError


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description='Convert SBD (benchmark_RELEASE) masks to VOC palette '
        'PNGs in VOC2012/SegmentationClassAug and write '
        'ImageSets/Segmentation/trainaug.txt')
    parser.add_argument(
        '--voc', required=True, help='VOC 2012 folder (VOCdevkit/VOC2012)')
    parser.add_argument(
        '--sbd', required=True, help='SBD folder (benchmark_RELEASE)')
    parser.add_argument(
        '--nproc', type=int, default=1, help='worker processes')
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    try:
        summary = convert_voc_aug(args.voc, args.sbd, nproc=args.nproc)
    except (DatasetError, FileNotFoundError) as e:
        sys.exit(f'error: {e}')
    print(summary.report())


if __name__ == '__main__':
    main()
