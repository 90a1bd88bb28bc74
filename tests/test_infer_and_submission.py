"""tools/infer.py on your own images, and tools/test.py --out writing the
PASCAL VOC server layout (also for a split without labels)."""
import argparse
import glob
import os
import os.path as osp

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import DEMO_CONFIG as DEMO
from conftest import REPO, build_model, run_tool
from tools.benchmarks._cases import calibrate_bn


@pytest.fixture(scope='module')
def plain_checkpoint(tmp_path_factory):
    """A checkpoint like the converter writes: state_dict + meta, no
    dataset_meta (random weights; BN statistics of random images, so that
    predictions hold several classes)."""
    model = calibrate_bn(build_model(DEMO, seed=0), 65, seed=0)
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
        assert len(np.unique(np.array(mask))) > 1  # not one class everywhere
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
    classes = set()
    for name in names:
        png = Image.open(folder / (name + '.png'))
        image = Image.open(osp.join(synth_voc, 'JPEGImages', name + '.jpg'))
        assert png.mode == 'P' and png.size == image.size
        classes.update(np.unique(np.array(png)).tolist())
    assert len(classes) > 1  # the predictions, not a constant image
    assert f'voc_pngs_written: {len(names)}' in log.replace('\t', ' ')


VOC_SERVER_RECIPE = [
    'test_dataloader.dataset.ann_file=ImageSets/Segmentation/test.txt',
    'test_dataloader.dataset.has_labels=False',
    'test_evaluator.format_only=True'
]


def _voc_evaluating_configs():
    from mmengine.config import Config
    found = []
    for path in sorted(glob.glob(osp.join(REPO, 'configs', '**', '*.py'),
                                 recursive=True)):
        if '_base_' in path:
            continue
        cfg = Config.fromfile(path)
        if 'VOC' in cfg.test_dataloader.dataset.type and \
                'COCO' not in cfg.test_dataloader.dataset.type:
            found.append(osp.relpath(path, REPO))
    return found


def test_every_voc_config_takes_the_test_server_recipe(tmp_path, synth_voc):
    """The README's VOC test-server options work with every config that
    evaluates on VOC (voc12 as well as voc12aug): a test split of images
    only, no label maps, the VOC PNG writer added."""
    from mmengine.config import Config, DictAction
    from mmseg.registry import DATASETS
    from mmseg.utils import register_all_modules

    import deeplabplus_mm  # noqa: F401
    from deeplabplus_mm.evaluation import add_voc_submission_writer
    register_all_modules()
    names = open(osp.join(synth_voc, 'ImageSets/Segmentation/val.txt')
                 ).read().split()[:2]
    root = tmp_path / 'VOC2012'
    (root / 'ImageSets' / 'Segmentation').mkdir(parents=True)
    (root / 'JPEGImages').mkdir()
    for name in names:  # images only: the test split has no label maps
        os.link(osp.join(synth_voc, 'JPEGImages', name + '.jpg'),
                root / 'JPEGImages' / (name + '.jpg'))
    (root / 'ImageSets/Segmentation/test.txt').write_text('\n'.join(names))
    configs = _voc_evaluating_configs()
    assert len(configs) >= 8 and any('voc12-' in c for c in configs)
    parser = argparse.ArgumentParser()  # as tools/test.py parses them
    parser.add_argument('--cfg-options', nargs='+', action=DictAction)
    options = parser.parse_args(
        ['--cfg-options', f'test_dataloader.dataset.data_root={root}',
         *VOC_SERVER_RECIPE]).cfg_options
    assert options['test_dataloader.dataset.has_labels'] is False
    for path in configs:
        cfg = Config.fromfile(osp.join(REPO, path))
        cfg.merge_from_dict(options)
        dataset = DATASETS.build(cfg.test_dataloader.dataset)
        assert len(dataset) == 2, path
        sample = dataset[0]
        assert 'gt_sem_seg' not in sample['data_samples'], path
        assert add_voc_submission_writer(cfg, str(tmp_path / 'out')), path
