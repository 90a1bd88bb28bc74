"""The foundation works like a user runs it: train -> resume -> test (with
and without TTA) through our tools, plain mmseg's runner through
``custom_imports`` alone, and checkpoints that load with weights_only."""
import os
import os.path as osp
import pickle
import re
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest
import torch
from mmengine.config import Config

from conftest import REPO, run_tool, tiny_config
from deeplabplus_mm.engine import register_safe_checkpoints

register_safe_checkpoints()  # our training checkpoints load weights_only

def miou(output):
    found = re.findall(r'mIoU: (\d+\.\d+)', output)
    assert found, output[-3000:]
    return float(found[-1])


def test_train_resume_test_tta(tmp_path, synth_voc):
    """train.py killed (SIGKILL) after its iteration-2 checkpoint, --resume
    from the saved iteration with the saved state: bit-identical to an
    uninterrupted run, with 2 persistent loader workers as the configs use
    and a validation at the checkpoint's iteration; then test.py with and
    without --tta."""
    cfg4 = tiny_config(tmp_path, synth_voc, 4, deterministic=True, workers=2)
    ref_dir, work_dir = str(tmp_path / 'uninterrupted'), tmp_path / 'work'
    out = run_tool('tools/train.py', cfg4, '--work-dir', ref_dir).stdout
    assert 0 <= miou(out) <= 100
    proc = subprocess.Popen(
        [sys.executable, 'tools/train.py', cfg4, '--work-dir', str(work_dir)],
        cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    last = work_dir / 'last_checkpoint'
    deadline = time.time() + 300
    while time.time() < deadline and proc.poll() is None:
        if last.exists() and 'iter_2.pth' in last.read_text():
            os.kill(proc.pid, signal.SIGKILL)
            break
        time.sleep(0.05)
    assert proc.wait() == -signal.SIGKILL, 'the run ended before iter 2'
    assert not (work_dir / 'iter_4.pth').exists()
    # --resume picks up iter_2.pth and continues from iteration 3
    work_dir = str(work_dir)
    out = run_tool('tools/train.py', cfg4, '--work-dir', work_dir,
                   '--resume').stdout
    assert 'resumed epoch: 0, iter: 2' in out, out[-3000:]
    assert re.search(r'Iter\(train\) \[3/4\]', out)
    assert not re.search(r'Iter\(train\) \[[12]/4\]', out)
    ckpt = torch.load(osp.join(work_dir, 'iter_4.pth'))  # weights_only
    assert ckpt['meta']['iter'] == 4
    # the same 4 iterations without the interruption: the same weights
    ref = torch.load(osp.join(ref_dir, 'iter_4.pth'))['state_dict']
    assert ref.keys() == ckpt['state_dict'].keys()
    differing = [k for k in ref if not torch.equal(ref[k],
                                                   ckpt['state_dict'][k])]
    assert not differing, differing[:5]
    # test.py without and with --tta; the TTA run (the config's
    # TFMultiScaleSegTTAModel, here with the zoo's six scales) saves its mean
    # probabilities (only the TTA model writes them), and its written
    # predictions are their argmax.
    ckpt_path = osp.join(work_dir, 'iter_4.pth')
    out = run_tool('tools/test.py', cfg4, ckpt_path, '--work-dir', work_dir,
                   '--out', str(tmp_path / 'plain')).stdout
    miou(out)
    assert 'per class results' in out
    scales = 'tta_model.scales=[0.5,0.75,1.0,1.25,1.5,1.75]'
    probs, preds = _test_tta(cfg4, ckpt_path, tmp_path / 'tta', scales)
    assert set(probs) == set(preds) == set(_pngs(tmp_path / 'plain'))
    for name, p in probs.items():
        assert p.dtype == np.float32 and p.shape[1:] == preds[name].shape
        np.testing.assert_allclose(p.sum(0), 1, atol=1e-5)
        assert (p.argmax(0) == preds[name]).all()
    # A user's config without tta_model / tta_pipeline (14.2): --tta runs
    # TF DeepLab's multi-scale + flip evaluation over its test pipeline, says
    # so, and computes what the config's own TTA with those scales does.
    bare = Config.fromfile(cfg4)
    bare.pop('tta_model')
    bare.pop('tta_pipeline')
    bare_cfg = str(tmp_path / 'no_tta.py')
    bare.dump(bare_cfg)
    probs2, preds2 = _test_tta(bare_cfg, ckpt_path, tmp_path / 'default',
                               expect='has no tta_model and no tta_pipeline'
                               '; using tta_model: TF DeepLab multi-scale + '
                               'flip evaluation (TFMultiScaleSegTTAModel, '
                               'scales [0.5, 0.75, 1.0, 1.25, 1.5, 1.75], '
                               'flip True, probs_dir ')
    for name in probs:
        np.testing.assert_array_equal(probs2[name], probs[name])
        np.testing.assert_array_equal(preds2[name], preds[name])


def test_tta_model_without_its_views_is_a_clear_error(tmp_path, synth_voc):
    """--tta with a multi-view tta_model (mmseg's SegTTAModel) but no
    tta_pipeline: a one-line error naming the config and what is missing,
    before anything is built."""
    cfg = Config.fromfile(tiny_config(tmp_path, synth_voc, 2))
    cfg.pop('tta_pipeline')
    cfg.tta_model = dict(type='SegTTAModel')
    path = str(tmp_path / 'segtta_only.py')
    cfg.dump(path)
    proc = run_tool('tools/test.py', path, str(tmp_path / 'absent.pth'),
                    '--tta', check=False)
    assert proc.returncode == 1
    last = proc.stdout.strip().splitlines()[-1]
    assert last.startswith(f'error: {path}: --tta: tta_model is '
                           'SegTTAModel'), proc.stdout[-2000:]
    assert 'no tta_pipeline' in last and 'Traceback' not in proc.stdout


def _pngs(folder):
    from PIL import Image
    return {osp.splitext(f)[0]: np.array(Image.open(osp.join(folder, f)))
            for f in os.listdir(folder) if f.endswith('.png')}


def _test_tta(cfg, ckpt, folder, *options, expect=None):
    """tools/test.py --tta --out FOLDER with the mean probabilities saved;
    returns ({image: C x H x W probabilities}, {image: predicted labels})."""
    probs_dir = str(folder / 'probs')
    out = run_tool('tools/test.py', cfg, ckpt, '--tta', '--work-dir',
                   str(folder), '--out', str(folder / 'pred'),
                   '--cfg-options', f'tta_model.probs_dir={probs_dir}',
                   *options).stdout
    assert 'per class results' in out
    if expect is not None:
        assert expect in out, out[-3000:]
    probs = {f[:-4]: np.load(osp.join(probs_dir, f))
             for f in os.listdir(probs_dir)}
    return probs, _pngs(folder / 'pred')


def test_custom_imports_route_in_plain_mmseg(tmp_path, synth_voc):
    """A config that only has custom_imports works with mmengine's runner
    without anyone importing deeplabplus_mm first; with RuntimeSetupHook
    its checkpoints load with weights_only."""
    cfg = tmp_path / 'user_config.py'
    cfg.write_text(textwrap.dedent(f"""\
        custom_imports = dict(imports=['deeplabplus_mm'],
                              allow_failed_imports=False)
        custom_hooks = [dict(type='RuntimeSetupHook')]
        default_scope = 'mmseg'
        model = dict(
            type='EncoderDecoder',
            data_preprocessor=dict(type='SegDataPreProcessor',
                                   mean=[127.5] * 3, std=[127.5] * 3,
                                   bgr_to_rgb=True, size=(65, 65)),
            backbone=dict(type='AlignedXception', arch=41),
            decode_head=dict(type='DeepLabV3PlusTFHead', in_channels=2048,
                             in_index=1, channels=32, num_classes=21,
                             c1_channels=8, align_corners=True,
                             norm_cfg=dict(type='BN', eps=1e-5)))
        pipeline = [dict(type='LoadImageFromFile'),
                    dict(type='LoadAnnotations'),
                    dict(type='RandomCrop', crop_size=(65, 65)),
                    dict(type='PackSegInputs')]
        train_dataloader = dict(
            batch_size=2, num_workers=0,
            sampler=dict(type='InfiniteSampler', shuffle=True),
            dataset=dict(type='PascalVOCDataset', data_root={synth_voc!r},
                         data_prefix=dict(img_path='JPEGImages',
                                          seg_map_path='SegmentationClass'),
                         ann_file='ImageSets/Segmentation/train.txt',
                         pipeline=pipeline))
        optim_wrapper = dict(optimizer=dict(type='SGD', lr=0.01))
        train_cfg = dict(type='IterBasedTrainLoop', max_iters=2)
        default_hooks = dict(checkpoint=dict(type='CheckpointHook',
                                             by_epoch=False, interval=2))
        """))
    script = textwrap.dedent(f"""\
        import sys
        from mmengine.config import Config
        from mmengine.runner import Runner
        assert 'deeplabplus_mm' not in sys.modules
        cfg = Config.fromfile({str(cfg)!r})
        cfg.work_dir = {str(tmp_path / 'work')!r}
        runner = Runner.from_cfg(cfg)
        assert 'deeplabplus_mm' in sys.modules
        print('BACKBONE', type(runner.model.backbone).__name__)
        runner.train()
        """)
    out = run_tool('-c', script).stdout
    assert 'BACKBONE AlignedXception' in out
    # the config's RuntimeSetupHook made the checkpoint plain data
    ckpt = torch.load(tmp_path / 'work' / 'iter_2.pth')  # weights_only
    assert ckpt['meta']['iter'] == 2


def _pickle_call(*ops):
    """Raw protocol-2 pickle bytes (no Python object needed to build it)."""
    return b'\x80\x02' + b''.join(ops) + b'.'


def _str(s):
    data = s.encode()
    return b'X' + len(data).to_bytes(4, 'little') + data


def _evil_system(marker):
    # posix.system('touch MARKER')
    return _pickle_call(b'cposix\nsystem\n', _str(f'touch {marker}'),
                        b'\x85R')


def _evil_getattr(marker):
    # getattr(__import__('os'), 'system')('touch MARKER')
    return _pickle_call(b'c__builtin__\ngetattr\n',
                        b'c__builtin__\n__import__\n', _str('os'), b'\x85R',
                        _str('system'), b'\x86R', _str(f'touch {marker}'),
                        b'\x85R')


def _write_checkpoint_with_pickle(path, payload):
    """A torch zip checkpoint whose data.pkl is ``payload``."""
    import zipfile
    torch.save({'state_dict': {}}, path)
    with zipfile.ZipFile(path) as z:
        entries = {n: z.read(n) for n in z.namelist()}
    with zipfile.ZipFile(path, 'w') as z:
        for name, data in entries.items():
            z.writestr(name, payload if name.endswith('/data.pkl') else data)


@pytest.mark.parametrize('evil', [_evil_system, _evil_getattr])
def test_malicious_checkpoint_is_refused(tmp_path, synth_voc, evil):
    from mmengine.runner.checkpoint import _load_checkpoint
    marker = tmp_path / 'pwned'
    path = tmp_path / 'evil.pth'
    _write_checkpoint_with_pickle(path, evil(marker))
    # the payload is live: plain pickle would run it
    with pytest.raises(pickle.UnpicklingError):
        torch.load(path)
    torch.load(path, weights_only=False)
    assert marker.exists()
    marker.unlink()
    with pytest.raises(pickle.UnpicklingError, match='Weights only load'):
        torch.load(path)
    with pytest.raises(pickle.UnpicklingError):
        _load_checkpoint(str(path), map_location='cpu')  # mmengine's path
    assert not marker.exists()
    # tools/test.py refuses it too, with torch's message, running nothing.
    out = run_tool('tools/test.py', tiny_config(tmp_path, synth_voc, 2),
                   str(path), '--work-dir', str(tmp_path / 'w'), check=False)
    assert out.returncode != 0
    assert 'Weights only load failed' in out.stdout
    assert not marker.exists()


def test_history_buffer_checkpoint_is_plain_data(tmp_path):
    from mmengine.logging import HistoryBuffer, MessageHub
    from torch.serialization import get_unsafe_globals_in_checkpoint
    hub = MessageHub.get_instance('plain_data_test')
    for v in (3.0, 1.0, 2.0):
        hub.update_scalar('train/loss', v)
    import numpy as np
    hub.update_info('eta', np.float64(12.5))
    path = tmp_path / 'hub.pth'
    torch.save({'message_hub': hub.state_dict()}, path)
    # every global in the file is on our allow-list; no getattr, no arrays
    assert get_unsafe_globals_in_checkpoint(str(path)) == []
    import zipfile
    with zipfile.ZipFile(path) as z:
        pkl = z.read(next(n for n in z.namelist() if n.endswith('data.pkl')))
    assert b'HistoryBuffer' in pkl
    assert b'getattr' not in pkl and b'_reconstruct' not in pkl
    loaded = torch.load(path)['message_hub']
    buf = loaded['log_scalars']['train/loss']
    assert isinstance(buf, HistoryBuffer)
    assert buf.mean() == 2.0 and buf.min() == 1.0 and buf.current() == 2.0
    assert loaded['runtime_info']['eta'] == 12.5
