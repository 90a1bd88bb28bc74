"""Convert a TensorFlow DeepLab / Xception checkpoint to a PyTorch .pth.

    python tools/convert_tf_checkpoint.py SRC OUT.pth

SRC: a checkpoint prefix (``.../model.ckpt``), a folder holding one, or a
model-zoo ``.tar.gz`` (read without unpacking). No TensorFlow needed. DeepLab
checkpoints become a full segmentor ``state_dict`` (for ``tools/test.py``),
ImageNet ones the backbone alone (for ``model.backbone.init_cfg``). The
output is written atomically and loads with ``torch.load(weights_only=True)``.
"""
import argparse
import os
import sys
import time

import torch

from deeplabplus_mm.converters import (ConversionError, TFCheckpointError,
                                       convert_reader, open_checkpoint,
                                       suggest_configs)


def parse_args():
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument('src', help='checkpoint prefix, folder or .tar.gz')
    parser.add_argument('out', help='output .pth file')
    parser.add_argument(
        '--keep-background-class',
        action='store_true',
        help='keep logits channel 0 of 151-class (ADE20K) checkpoints '
        'instead of dropping it for mmseg\'s 150-class ADE20K')
    return parser.parse_args()


def main():
    args = parse_args()
    start = time.perf_counter()
    try:
        with open_checkpoint(args.src) as reader:
            state_dict, meta = convert_reader(
                reader, False if args.keep_background_class else None)
    except (TFCheckpointError, ConversionError) as e:
        sys.exit(f'error: {args.src}: {e}')
    tmp = f'{args.out}.tmp'
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    torch.save(dict(state_dict=state_dict, meta=meta), tmp)
    os.replace(tmp, args.out)
    kind = 'DeepLab segmentor' if meta['segmentor'] else 'ImageNet backbone'
    print(f'{meta["variant"]} {kind}, {len(state_dict)} tensors, '
          f'classes: {meta["num_classes"]}, TF global_step: '
          f'{meta["global_step"]} -> {args.out} '
          f'({time.perf_counter() - start:.2f} s)')
    if meta['ignored']:
        print(f'ignored {len(meta["ignored"])} TF variables (optimizer '
              f'slots, step counter, classifier): '
              f'{", ".join(meta["ignored"][:5])}'
              f'{" ..." if len(meta["ignored"]) > 5 else ""}')
    if meta['skipped']:
        print(f'skipped non-numeric entries: {", ".join(meta["skipped"])}')
    for line in suggest_configs(meta, args.out):
        print(line)


if __name__ == '__main__':
    main()
