"""TF-faithfulness, as a number: the values of shared/tf_deeplab/weights.py,
through our converter's name tables, in our model built from the zoo config,
give TensorFlow's own logits within 1e-4: ``xception65_os16`` (DeepLab v3+,
Xception-65) and ``mobilenetv2_os16`` (DeepLab v3, MobileNetV2, the latter
written as a real TF checkpoint and converted by the command line tool)."""
import os.path as osp

import numpy as np
import pytest
import torch
from mmengine.config import Config

from conftest import REPO, build_model, run_tool
from deeplabplus_mm.converters import convert, expected_state_shapes, map_scope
from tools.fixtures.tf_bundle_writer import write_checkpoint

CASE = 'xception65_os16'
ZOO_CONFIG = osp.join(
    REPO, 'configs/deeplabv3plus/'
    'deeplabv3plus_xception65-d16_4xb4-30k_voc12aug-513x513.py')
SIZES = ['129x129', '120x160']
ATOL = 1e-4


@pytest.fixture(scope='module')
def tf_variables(tf_refs, tf_weights):
    table = tf_weights.read_variables_tsv(
        osp.join(tf_refs, CASE, 'variables.tsv'))
    return {
        name: tf_weights.variable_value(name, shape, dtype)
        for name, shape, dtype, _ in table
    }


def build_zoo_model(pad_to=None):
    cfg = Config.fromfile(ZOO_CONFIG)
    # The references were made with crop_size = input size (no padding).
    cfg.model.data_preprocessor.test_cfg = (
        dict(size=pad_to) if pad_to else None)
    return build_model(cfg.model).eval()


@pytest.fixture(scope='module')
def zoo_model(tf_variables):
    model = build_zoo_model()
    state_dict, info, ignored = convert(tf_variables,
                                        expected_state_shapes(model))
    assert (info.arch, info.num_classes, ignored) == (65, 21, [])
    model.load_state_dict(state_dict, strict=True)
    return model


def load_case(tf_refs, kind, size):
    return np.load(osp.join(tf_refs, CASE, f'{kind}_{size}.npy'))


def preprocess(model, image_rgb):
    """Our data path: a BGR uint8 image, as LoadImageFromFile gives it,
    through the model's SegDataPreProcessor."""
    from mmseg.structures import SegDataSample
    bgr = torch.from_numpy(np.ascontiguousarray(image_rgb[..., ::-1]))
    h, w = image_rgb.shape[:2]
    sample = SegDataSample(metainfo=dict(
        ori_shape=(h, w), img_shape=(h, w), pad_shape=(h, w),
        padding_size=[0, 0, 0, 0]))
    return model.data_preprocessor(
        dict(inputs=[bgr.permute(2, 0, 1)], data_samples=[sample]), False)


def assert_close_to_tf(ours_nhwc, ref, what):
    diff = np.abs(ours_nhwc.astype(np.float64) - ref)
    assert diff.max() <= ATOL, (
        f'{what}: max |diff| {diff.max():.3g} at '
        f'{np.unravel_index(diff.argmax(), diff.shape)}')
    # argmax identical wherever TF's top-2 margin is clearly not a tie
    top2 = np.sort(ref, axis=-1)[..., -2:]
    decided = (top2[..., 1] - top2[..., 0]) > 2e-4
    assert decided.mean() > 0.9
    agree = ours_nhwc.argmax(-1) == ref.argmax(-1)
    assert agree[decided].all(), f'{what}: argmax differs at a decided pixel'


@pytest.mark.parametrize('size', SIZES)
def test_logits_match_tensorflow(tf_refs, zoo_model, size):
    image = load_case(tf_refs, 'input', size)[0]
    data = preprocess(zoo_model, image)
    # TF's preprocessing x * (2/255) - 1 on RGB
    expected_input = image.astype(np.float32) * np.float32(2 / 255) - 1
    np.testing.assert_allclose(
        data['inputs'][0].permute(1, 2, 0).numpy(), expected_input,
        atol=2e-7)
    with torch.no_grad():
        logits = zoo_model.decode_head(zoo_model.extract_feat(data['inputs']))
        samples = zoo_model.predict(data['inputs'], data['data_samples'])
    assert_close_to_tf(
        logits.permute(0, 2, 3, 1).numpy(),
        load_case(tf_refs, 'logits', size), f'logits {size}')
    upsampled = samples[0].seg_logits.data.permute(1, 2, 0)[None].numpy()
    assert_close_to_tf(upsampled, load_case(tf_refs, 'upsampled', size),
                       f'upsampled {size}')


def _tap_module(op_name):
    """Our module whose output is TF op ``op_name`` (and which output)."""
    scope, _, op = op_name.rpartition('/')
    if op == 'FusedBatchNormV3':  # <conv scope>/BatchNorm/FusedBatchNormV3
        scope = scope.rpartition('/')[0]
    if op == 'add' or scope.endswith('/xception_module'):
        # xception_module outputs; exit block 2's last pointwise ReLU too
        unit = scope.split('/xception_module')[0]
        return map_scope(unit), 0
    path = map_scope(scope)
    if path.endswith('_conv'):  # <x>_pointwise/Relu = the separable module
        path = path.rpartition('.')[0]
    return path, None


def _crops(x):
    """TF-side summaries of an NHWC array: mean, top-left / centre /
    bottom-right 3x3 crops of the first 64 channels."""
    h, w = x.shape[1:3]
    ch, cw = max(0, h // 2 - 1), max(0, w // 2 - 1)
    return {
        'mean': x[0].mean(axis=(0, 1)),
        'crop_tl': x[0, :3, :3, :64],
        'crop_c': x[0, ch:ch + 3, cw:cw + 3, :64],
        'crop_br': x[0, -3:, -3:, :64],
    }


@pytest.mark.parametrize('size', SIZES)
def test_intermediate_taps_match_tensorflow(tf_refs, zoo_model, size):
    """Where the port diverges, if it does: every tapped TF tensor."""
    taps = np.load(osp.join(tf_refs, CASE, f'taps_{size}.npz'))
    ops = sorted({k.split('::')[0] for k in taps.files})
    captured, hooks = {}, []
    for op in ops:
        path, index = _tap_module(op)
        module = zoo_model.get_submodule(path)

        def hook(mod, args, out, op=op, index=index):
            out = out[index] if index is not None else out
            captured[op] = out.detach().permute(0, 2, 3, 1).numpy()

        hooks.append(module.register_forward_hook(hook))
    try:
        data = preprocess(zoo_model, load_case(tf_refs, 'input', size)[0])
        with torch.no_grad():
            zoo_model.extract_feat(data['inputs'])
            zoo_model.decode_head(zoo_model.extract_feat(data['inputs']))
    finally:
        for h in hooks:
            h.remove()
    assert len(ops) >= 30
    for op in ops:
        ours = captured[op]
        assert list(ours.shape) == list(taps[f'{op}::shape']), op
        scale = max(1.0, float(np.abs(taps[f'{op}::crop_tl']).max()))
        for key, value in _crops(ours).items():
            ref = taps[f'{op}::{key}']
            np.testing.assert_allclose(
                value, ref, atol=ATOL * scale, rtol=0,
                err_msg=f'{op} {key}')


def test_zoo_evaluation_padding(tf_refs, zoo_model):
    """The zoo config's test-time padding to 513x513 (0 after
    normalisation = TF's 127.5) equals running the network on the
    explicitly padded image, resizing logits to 513 and cropping."""
    import torch.nn.functional as F
    image = load_case(tf_refs, 'input', '120x160')[0]
    padded_model = build_zoo_model(pad_to=(513, 513))
    padded_model.load_state_dict(zoo_model.state_dict())
    data = preprocess(padded_model, image)
    assert tuple(data['inputs'].shape[2:]) == (513, 513)
    assert float(data['inputs'][0, :, 200:, 300:].abs().max()) == 0.0
    with torch.no_grad():
        ours = padded_model.predict(data['inputs'], data['data_samples'])
        x = torch.from_numpy(image.astype(np.float32)).permute(2, 0, 1)
        x = F.pad(x[None] / 127.5 - 1, (0, 513 - 160, 0, 513 - 120))
        logits = zoo_model.decode_head(zoo_model.extract_feat(x))
        expected = F.interpolate(logits, (513, 513), mode='bilinear',
                                 align_corners=True)[0, :, :120, :160]
    got = ours[0].seg_logits.data
    assert got.shape == expected.shape
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=0)
    # the padding changes the image pooling, so the result differs from
    # the unpadded prediction
    unpadded = load_case(tf_refs, 'upsampled', '120x160')[0]
    assert np.abs(got.permute(1, 2, 0).numpy() - unpadded).max() > 1e-3


# --------------------------------------------------------------------------
# MobileNetV2 (DeepLab v3, the zoo's VOC head), through the converter CLI
# --------------------------------------------------------------------------
MNV2_CASE = 'mobilenetv2_os16'
MNV2_CONFIG = ('configs/deeplabv3/'
               'deeplabv3_mobilenetv2-d16_4xb4-30k_voc12aug-513x513.py')


@pytest.fixture(scope='module')
def mnv2_model(tf_refs, tf_weights, tmp_path_factory):
    """weights.py values of every variable of the case (plus global_step and
    Momentum slots, as a training run leaves them) -> a real TF checkpoint
    -> tools/convert_tf_checkpoint.py -> the zoo config's model."""
    table = tf_weights.read_variables_tsv(
        osp.join(tf_refs, MNV2_CASE, 'variables.tsv'))
    tensors = {'global_step': np.asarray(30000, np.int64)}
    for name, shape, dtype, trainable in table:
        tensors[name] = tf_weights.variable_value(name, shape, dtype)
        if trainable:
            tensors[f'{name}/Momentum'] = np.ones(shape, dtype)
    folder = tmp_path_factory.mktemp('mnv2')
    write_checkpoint(str(folder / 'model.ckpt'), tensors)
    out = folder / 'mnv2.pth'
    log = run_tool('tools/convert_tf_checkpoint.py', str(folder),
                   str(out)).stdout
    assert 'mobilenet_v2 DeepLab segmentor, 326 tensors' in log
    assert f'config: {MNV2_CONFIG}' in log  # the config it suggests
    model = build_model(osp.join(REPO, MNV2_CONFIG)).eval()
    model.data_preprocessor.test_cfg = None  # references: crop = input
    model.load_state_dict(torch.load(out)['state_dict'], strict=True)
    return model


def load_mnv2(tf_refs, kind, size):
    return np.load(osp.join(tf_refs, MNV2_CASE, f'{kind}_{size}.npy'))


@pytest.mark.parametrize('size', SIZES)
def test_mobilenetv2_logits_match_tensorflow(tf_refs, mnv2_model, size):
    image = load_mnv2(tf_refs, 'input', size)[0]
    data = preprocess(mnv2_model, image)
    with torch.no_grad():
        logits = mnv2_model.decode_head(
            mnv2_model.extract_feat(data['inputs']))
        samples = mnv2_model.predict(data['inputs'], data['data_samples'])
    ref = load_mnv2(tf_refs, 'logits', size)
    assert logits.shape[2:] == ref.shape[1:3]  # output stride 16, no decoder
    assert_close_to_tf(logits.permute(0, 2, 3, 1).numpy(), ref,
                       f'logits {size}')
    upsampled = samples[0].seg_logits.data.permute(1, 2, 0)[None].numpy()
    assert_close_to_tf(upsampled, load_mnv2(tf_refs, 'upsampled', size),
                       f'upsampled {size}')


def _mnv2_tap(op_name):
    """Our module path (and output index) of a MobileNetV2 tap."""
    scope, _, op = op_name.rpartition('/')
    if scope.startswith('MobilenetV2/expanded_conv'):  # <block>/output
        return map_scope(scope), 0
    return map_scope(scope), None  # Conv/Relu6, head <scope>/Relu, logits


@pytest.mark.parametrize('size', SIZES)
def test_mobilenetv2_taps_match_tensorflow(tf_refs, mnv2_model, size):
    taps = np.load(osp.join(tf_refs, MNV2_CASE, f'taps_{size}.npz'))
    ops = sorted({k.split('::')[0] for k in taps.files})
    captured, hooks = {}, []
    for op in ops:
        path, index = _mnv2_tap(op)
        assert path is not None, op

        def hook(mod, args, out, op=op, index=index):
            out = out[index] if index is not None else out
            captured[op] = out.detach().permute(0, 2, 3, 1).numpy()

        hooks.append(
            mnv2_model.get_submodule(path).register_forward_hook(hook))
    try:
        data = preprocess(mnv2_model, load_mnv2(tf_refs, 'input', size)[0])
        with torch.no_grad():
            mnv2_model.decode_head(mnv2_model.extract_feat(data['inputs']))
    finally:
        for h in hooks:
            h.remove()
    assert len(ops) == 22  # Conv, 17 blocks, image pooling, aspp0, ...
    for op in ops:
        ours = captured[op]
        assert list(ours.shape) == list(taps[f'{op}::shape']), op
        scale = max(1.0, float(np.abs(taps[f'{op}::crop_tl']).max()))
        for key, value in _crops(ours).items():
            np.testing.assert_allclose(
                value, taps[f'{op}::{key}'], atol=ATOL * scale, rtol=0,
                err_msg=f'{op} {key}')
