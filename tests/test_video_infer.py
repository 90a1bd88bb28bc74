"""tools/infer.py on videos (frames streamed; overlay video, per-frame
masks, a progress bar that knows the frame count), the same inference
through ONNX Runtime (--onnx), and mmseg's MMSegInferencer with our
configs."""
import math
import os
import os.path as osp

import cv2
import numpy as np
import pytest
import torch
from PIL import Image

from conftest import DEMO_CONFIG, REPO, build_model, run_tool

NUM_FRAMES = 10
FRAME_SIZE = (96, 72)  # width, height
# One torch thread in the tools: on a shared machine OpenMP threads waiting
# for each other make small models many times slower.
ONE_THREAD = dict(OMP_NUM_THREADS='1')


# one torch thread in this process (conftest.one_thread)
pytestmark = pytest.mark.usefixtures('one_thread')


@pytest.fixture(scope='module')
def varied_checkpoint(tmp_path_factory):
    """The demo model with He-normal conv weights (BN as initialised):
    unlike PyTorch's default initialisation, its predictions vary over
    the image (several classes per picture), so mask comparisons mean
    something."""
    model = build_model(DEMO_CONFIG, seed=0)
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, torch.nn.Conv2d):
                fan_in = module.weight[0].numel()
                module.weight.copy_(
                    torch.randn(module.weight.shape, generator=gen) *
                    math.sqrt(2 / fan_in))
                if module.bias is not None:
                    module.bias.zero_()
    path = tmp_path_factory.mktemp('ckpt') / 'varied.pth'
    torch.save(dict(state_dict=model.state_dict(),
                    meta=dict(variant='xception_41')), path)
    return str(path)


@pytest.fixture(scope='module')
def media(tmp_path_factory, synth_voc):
    """A folder with 2 images and a 10-frame MJPG video (a synthetic image
    panning), and a broken "video" beside it."""
    root = tmp_path_factory.mktemp('media')
    folder = root / 'inputs'
    folder.mkdir()
    for name in ('synth_00008', 'synth_00009'):
        Image.open(osp.join(synth_voc, 'JPEGImages', name + '.jpg')).save(
            folder / (name + '.png'))
    source = cv2.imread(osp.join(synth_voc, 'JPEGImages', 'synth_00010.jpg'))
    source = cv2.resize(source, (FRAME_SIZE[0] * 2, FRAME_SIZE[1]))
    video = folder / 'clip.avi'
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*'MJPG'), 5,
                             FRAME_SIZE)
    assert writer.isOpened()
    for i in range(NUM_FRAMES):
        writer.write(source[:, i * 8:i * 8 + FRAME_SIZE[0]])
    writer.release()
    broken = root / 'broken.mp4'
    broken.write_bytes(b'\x00\x00\x00\x18ftypmp42 but nothing else')
    return dict(folder=folder, video=video, broken=broken)


def decoded_frames(path):
    capture = cv2.VideoCapture(str(path))
    frames = []
    while True:
        ok, frame = capture.read()
        if not ok:
            break
        frames.append(frame)
    capture.release()
    return frames


def read_mask(path):
    return np.array(Image.open(path))


@pytest.fixture(scope='module')
def torch_run(tmp_path_factory, media, varied_checkpoint):
    """tools/infer.py (PyTorch) on the folder and the broken video."""
    out = tmp_path_factory.mktemp('torch_out')
    proc = run_tool('tools/infer.py', DEMO_CONFIG, varied_checkpoint,
                    str(media['folder']), str(media['broken']), '--out-dir',
                    str(out), '--frame-masks', check=False, env=ONE_THREAD)
    return proc, out


def test_video_overlay_masks_and_progress(torch_run, media):
    proc, out = torch_run
    log = proc.stdout
    assert proc.returncode == 1  # the broken video
    assert f'{media["video"]}: {NUM_FRAMES} frames, 96x72, 5 fps' in log
    assert f'{NUM_FRAMES}/{NUM_FRAMES}' in log  # the progress bar's count
    assert '2 of 2 images segmented' in log
    assert '1 of 2 videos segmented' in log
    assert f'failed: {media["broken"]}: ValueError: ' in log
    assert 'cannot decode this file as a video' in log
    # the overlay: every frame, at the input's size and frame rate
    frames = decoded_frames(out / 'clip_overlay.mp4')
    assert len(frames) == NUM_FRAMES
    assert frames[0].shape == (FRAME_SIZE[1], FRAME_SIZE[0], 3)
    capture = cv2.VideoCapture(str(out / 'clip_overlay.mp4'))
    assert capture.get(cv2.CAP_PROP_FPS) == pytest.approx(5)
    capture.release()
    masks = sorted(os.listdir(out / 'clip_masks'))
    assert masks == [f'{i:06d}.png' for i in range(NUM_FRAMES)]
    first = Image.open(out / 'clip_masks' / '000000.png')
    assert first.mode == 'P' and first.size == FRAME_SIZE
    assert len(np.unique(np.array(first))) >= 2  # a meaningful mask
    # nothing half-written, nothing for the broken input
    assert sorted(os.listdir(out)) == sorted([
        'clip_overlay.mp4', 'clip_masks', 'synth_00008.png',
        'synth_00008_overlay.jpg', 'synth_00009.png',
        'synth_00009_overlay.jpg'
    ])


def test_video_masks_equal_single_image_inference(torch_run, media,
                                                  varied_checkpoint,
                                                  tmp_path):
    """Each frame's mask is what single-image inference (the Segmenter of
    tools/infer.py, on a file) gives for that decoded frame saved as a
    PNG."""
    from deeplabplus_mm.apis import Segmenter
    _, out = torch_run
    frames = decoded_frames(media['video'])
    assert len(frames) == NUM_FRAMES
    segmenter = Segmenter(DEMO_CONFIG, varied_checkpoint)
    changes = 0
    for i, frame in enumerate(frames):
        path = str(tmp_path / f'{i:06d}.png')
        cv2.imwrite(path, frame)
        video_mask = read_mask(out / 'clip_masks' / f'{i:06d}.png')
        np.testing.assert_array_equal(video_mask, segmenter(path),
                                      err_msg=f'frame {i}')
        if i:
            changes += (video_mask != read_mask(
                out / 'clip_masks' / f'{i - 1:06d}.png')).any()
    assert changes > 0  # the frames differ (the picture pans)


@pytest.fixture(scope='module')
def dynamic_onnx(tmp_path_factory, varied_checkpoint):
    pytest.importorskip('onnx')
    pytest.importorskip('onnxruntime')
    pytest.importorskip('onnxscript')
    out = tmp_path_factory.mktemp('onnx') / 'demo.onnx'
    run_tool('tools/deployment/export_onnx.py', DEMO_CONFIG,
             varied_checkpoint, str(out), '--dynamic', '--fuse-conv-bn',
             env=ONE_THREAD)
    return str(out)


def test_onnx_runtime_gives_identical_masks(torch_run, media, dynamic_onnx,
                                           tmp_path):
    """tools/infer.py --onnx on the same images and video: the same masks
    (ONNX Runtime's logits differ from PyTorch's by float rounding)."""
    _, torch_out = torch_run
    out = tmp_path / 'onnx_out'
    log = run_tool('tools/infer.py', DEMO_CONFIG, '-', str(media['folder']),
                   '--out-dir', str(out), '--frame-masks', '--onnx',
                   dynamic_onnx, env=ONE_THREAD).stdout
    assert '2 of 2 images segmented' in log and f'{NUM_FRAMES}/' in log
    names = ['synth_00008.png', 'synth_00009.png'] + [
        osp.join('clip_masks', f'{i:06d}.png') for i in range(NUM_FRAMES)
    ]
    for name in names:
        ours, reference = read_mask(out / name), read_mask(torch_out / name)
        np.testing.assert_array_equal(ours, reference, err_msg=name)
    assert Image.open(out / 'synth_00008.png').getpalette()[3:6] == [
        128, 0, 0
    ]  # VOC's palette, from the ONNX file's metadata
    assert len(decoded_frames(out / 'clip_overlay.mp4')) == NUM_FRAMES


def test_onnx_runtime_with_tta_agrees_with_pytorch_tta(
        media, varied_checkpoint, dynamic_onnx, tmp_path):
    """The config's multi-scale + flip TTA around ONNX Runtime: views of
    several sizes through the dynamic graph, merged by the config's TTA
    model. The exported graph ends with the resize of the logits to the
    view's size, so TF's protocol resizes each view's logits from that size
    rather than from the network's output stride: the mean probabilities
    agree closely (not to float rounding: near class borders a view's
    saturated softmax flips), the labels on all but a few border pixels."""
    from mmengine.config import Config

    from deeplabplus_mm.apis import OnnxSegmenter, Segmenter
    image = str(media['folder'] / 'synth_00008.png')
    probs, labels = {}, {}
    for name in ('torch', 'onnx'):
        cfg = Config.fromfile(DEMO_CONFIG)
        cfg.tta_model.probs_dir = str(tmp_path / name)
        if name == 'torch':
            segmenter = Segmenter(cfg, varied_checkpoint, tta=True)
        else:
            segmenter = OnnxSegmenter(cfg, dynamic_onnx, tta=True, threads=1)
        labels[name] = segmenter(image)
        probs[name] = np.load(tmp_path / name / 'synth_00008.npy')
        assert (probs[name].argmax(0) == labels[name]).all()
    assert len(np.unique(labels['torch'])) > 1
    assert np.abs(probs['onnx'] - probs['torch']).mean() < 1e-3
    assert (labels['onnx'] == labels['torch']).mean() > 0.999


def test_onnx_with_another_config_is_refused(dynamic_onnx):
    """The graph normalises as the config it was exported from says; a
    config that normalises otherwise is refused."""
    from deeplabplus_mm.apis import OnnxSegmenter
    r101 = osp.join(REPO, 'configs/deeplabv3plus/'
                    'deeplabv3plus_r101-d8_4xb4-30k_voc12aug-513x513.py')
    with pytest.raises(ValueError, match=rf'{dynamic_onnx} normalises with '
                       r'mean \[127\.5'):
        OnnxSegmenter(r101, dynamic_onnx)


def test_mmseg_inferencer_with_our_config(media, varied_checkpoint):
    """mmseg's own inference API loads our configs and checkpoints and
    predicts what our Segmenter predicts."""
    from mmseg.apis import MMSegInferencer

    from deeplabplus_mm.apis import Segmenter
    image = str(media['folder'] / 'synth_00009.png')
    inferencer = MMSegInferencer(model=DEMO_CONFIG,
                                 weights=varied_checkpoint, device='cpu')
    result = inferencer(image)
    # the plain model, as the inferencer builds it
    expected = Segmenter(DEMO_CONFIG, varied_checkpoint, fuse_conv_bn=False,
                         channels_last=False)(image)
    np.testing.assert_array_equal(result['predictions'], expected)
    assert len(np.unique(expected)) >= 2
