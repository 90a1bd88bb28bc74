"""tools/infer.py on your own images, and tools/test.py --out writing the
PASCAL VOC server layout (also for a split without labels)."""
import os.path as osp

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import DEMO_CONFIG as DEMO
from conftest import build_model, run_tool


@pytest.fixture(scope='module')
def plain_checkpoint(tmp_path_factory):
    """A checkpoint like the converter writes: state_dict + meta, no
    dataset_meta (random weights; BN stats made non-trivial)."""
    model = build_model(DEMO, seed=0)
    path = tmp_path_factory.mktemp('ckpt') / 'plain.pth'
    torch.save(dict(state_dict=model.state_dict(),
                    meta=dict(variant='xception_41')), path)
    return str(path)


def test_infer_writes_masks_and_overlays_and_reports_bad_images(
        tmp_path, synth_voc, plain_checkpoint):
    images = tmp_path / 'mine'
    images.mkdir()
    for name in ('synth_00008', 'synth_00009'):
        Image.open(osp.join(synth_voc, 'JPEGImages', name + '.jpg')).save(
            images / (name + '.png'))
    (images / 'broken.jpg').write_bytes(b'\xff\xd8 not really a jpeg')
    out = tmp_path / 'out'
    proc = run_tool('tools/infer.py', DEMO, plain_checkpoint, str(images),
                    '--out-dir', str(out), '--tta', check=False)
    assert proc.returncode == 1
    assert 'broken.jpg' in proc.stdout
    assert '2 of 3 images segmented' in proc.stdout
    for name in ('synth_00008', 'synth_00009'):
        src = Image.open(images / (name + '.png'))
        mask = Image.open(out / (name + '.png'))
        assert mask.mode == 'P' and mask.size == src.size
        assert mask.getpalette()[3:6] == [128, 0, 0]  # VOC aeroplane
        assert np.array(mask).max() <= 20
        overlay = Image.open(out / (name + '_overlay.jpg'))
        assert overlay.size == src.size
    assert not (out / 'broken.png').exists()


def test_test_py_out_writes_voc_server_layout(tmp_path, synth_voc,
                                              plain_checkpoint):
    out = tmp_path / 'results_dir'
    log = run_tool(
        'tools/test.py', DEMO, plain_checkpoint, '--out', str(out),
        '--work-dir', str(tmp_path / 'w'), '--cfg-options',
        f'test_dataloader.dataset.data_root={synth_voc}',
        'test_dataloader.dataset.has_labels=False',
        'test_evaluator.format_only=True').stdout
    folder = out / 'results' / 'VOC2012' / 'Segmentation' / 'comp6_test_cls'
    names = open(osp.join(synth_voc,
                          'ImageSets/Segmentation/val.txt')).read().split()
    assert sorted(p.stem for p in folder.glob('*.png')) == sorted(names)
    for name in names:
        png = Image.open(folder / (name + '.png'))
        image = Image.open(osp.join(synth_voc, 'JPEGImages', name + '.jpg'))
        assert png.mode == 'P' and png.size == image.size
    assert f'voc_pngs_written: {len(names)}' in log.replace('\t', ' ')
