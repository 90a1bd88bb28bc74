"""TF's multi-scale + flip evaluation, as a number, through the tool a user
runs: ``tools/test.py <the shipped -d8 VOC-aug config at crop 129> CKPT
--tta --out DIR`` on a VOC-layout folder holding the 97x121 image of
``shared/tf_deeplab/xception65_msflip`` as a PNG, with the weights of
``weights.py`` converted by our converter (the fixtures of
test_tf_parity.py). The mean probabilities the run saves
(``tta_model.probs_dir``) equal TensorFlow's ``predict_labels_multi_scale``
within 1e-4 and the predictions it writes equal TF's wherever TF's top-2
margin is clear, for the three stored variants."""
import os.path as osp
import textwrap

import cv2
import numpy as np
import pytest
import torch
from PIL import Image

from conftest import REPO, run_tool
from test_tf_parity import tf_variables, zoo_model  # noqa: F401 (fixtures)

CASE = 'xception65_msflip'
D8_CONFIG = osp.join(
    REPO, 'configs/deeplabv3plus/'
    'deeplabv3plus_xception65-d8_4xb4-30k_voc12aug-513x513.py')
NAME = 'tf_msflip_97x121'
ATOL = 1e-4
MARGIN = 2e-4
# The variants as a user picks them from the command line; the shipped
# config's preset is ms_flip (scales 0.5:0.25:1.75 + flip).
VARIANTS = {
    'ms_flip': [],
    'ms_noflip': ['tta_model.flip=False'],
    'single_flip': ['tta_model.scales=[1.0]'],
}


@pytest.fixture(scope='module')
def case_dir(tf_refs):
    path = osp.join(tf_refs, CASE)
    if not osp.isdir(path):
        pytest.skip(f'{path} not found')
    # the case holds the variables (and values) of xception65_os16
    assert (open(osp.join(path, 'variables.tsv')).read() == open(
        osp.join(tf_refs, 'xception65_os16', 'variables.tsv')).read())
    return path


@pytest.fixture(scope='module')
def checkpoint(tmp_path_factory, zoo_model):  # noqa: F811
    """TF's variables through our converter, saved as the converter tool
    saves them (state_dict + meta)."""
    path = tmp_path_factory.mktemp('ckpt') / 'x65_tf_values.pth'
    torch.save(dict(state_dict=zoo_model.state_dict(),
                    meta=dict(variant='xception_65')), path)
    return str(path)


@pytest.fixture(scope='module')
def voc_root(tmp_path_factory, case_dir):
    """A VOC-layout folder with the case's image as a (lossless) PNG."""
    root = tmp_path_factory.mktemp('voc')
    image = np.load(osp.join(case_dir, 'input_97x121.npy'))[0]
    assert image.shape == (97, 121, 3)
    (root / 'JPEGImages').mkdir()
    cv2.imwrite(str(root / 'JPEGImages' / f'{NAME}.png'), image[..., ::-1])
    (root / 'SegmentationClass').mkdir()
    label = np.zeros((97, 121), np.uint8)
    label[:, 60:] = 255
    Image.fromarray(label).save(root / 'SegmentationClass' / f'{NAME}.png')
    (root / 'ImageSets' / 'Segmentation').mkdir(parents=True)
    (root / 'ImageSets' / 'Segmentation' / 'val.txt').write_text(NAME + '\n')
    return str(root)


@pytest.fixture(scope='module')
def config_129(tmp_path_factory):
    """The shipped OS 8 VOC-aug config with the evaluation crop at 129."""
    path = tmp_path_factory.mktemp('cfg') / 'x65_d8_voc12aug_crop129.py'
    path.write_text(textwrap.dedent(f"""\
        _base_ = {D8_CONFIG!r}
        crop_size = (129, 129)
        model = dict(data_preprocessor=dict(size=crop_size,
                                            test_cfg=dict(size=crop_size)))
        test_dataloader = dict(num_workers=0, persistent_workers=False)
        """))
    return str(path)


@pytest.mark.parametrize('variant', sorted(VARIANTS))
def test_tools_test_tta_equals_tensorflow(tmp_path, variant, case_dir,
                                          checkpoint, voc_root, config_129):
    out = tmp_path / 'out'
    probs_dir = tmp_path / 'probs'
    log = run_tool(
        'tools/test.py', config_129, checkpoint, '--tta', '--out', str(out),
        '--work-dir', str(tmp_path / 'work'), '--cfg-options',
        f'test_dataloader.dataset.data_root={voc_root}',
        'test_dataloader.dataset.img_suffix=.png',
        f'tta_model.probs_dir={probs_dir}', *VARIANTS[variant]).stdout
    assert 'mIoU' in log
    probs_tf = np.load(osp.join(case_dir, f'probs_{variant}_129x129.npy'))
    pred_tf = np.load(osp.join(case_dir, f'pred_{variant}_129x129.npy'))
    ref = probs_tf[0, :97, :121].astype(np.float64)  # the image's pixels
    ours = np.load(probs_dir / f'{NAME}.npy')
    assert ours.shape == (21, 97, 121) and ours.dtype == np.float32
    diff = np.abs(ours.transpose(1, 2, 0) - ref)
    print(f'\n{variant}: max |diff| {diff.max():.2e}, mean '
          f'{diff.mean():.2e}')
    assert diff.max() <= ATOL, (
        f'{variant}: max |diff| {diff.max():.3g} at '
        f'{np.unravel_index(diff.argmax(), diff.shape)}')
    # the predictions the run wrote: mmseg's --out PNG and the VOC server
    # layout, both equal to TF's argmax where its top-2 margin is clear
    top2 = np.sort(ref, axis=-1)[..., -2:]
    decided = (top2[..., 1] - top2[..., 0]) > MARGIN
    assert decided.mean() > 0.9
    expected = pred_tf[0, :97, :121]
    for png in (out / f'{NAME}.png',
                out / 'results' / 'VOC2012' / 'Segmentation' /
                'comp6_test_cls' / f'{NAME}.png'):
        pred = np.array(Image.open(png))
        assert pred.shape == (97, 121)
        assert (pred == expected)[decided].all(), f'{variant}: {png}'
    assert len(np.unique(expected)) > 1  # a real segmentation to compare
