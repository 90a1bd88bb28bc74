"""``tools/convert_tf_checkpoint.py --zoo / --list`` and model names in
``MMSegInferencer`` / ``Segmenter``, without the internet: a local HTTP
server (standard library, 127.0.0.1) serves a TF-format zoo tarball the test
writes (TF names from the official rules, name-seeded values) through
``--mirror``; it can cut a transfer and lie about the size."""
import http.server
import io
import os
import os.path as osp
import re
import socket
import tarfile
import textwrap
import threading

import numpy as np
import pytest
import torch

import tf_names
from conftest import REPO, run_tool
from deeplabplus_mm.converters.zoo import ZOO
from tools.fixtures.tf_bundle_writer import write_checkpoint

ROW = ZOO['mobilenetv2_dm05_coco_voc_trainaug']
CONFIG = ('configs/deeplabv3/'
          'deeplabv3_mobilenetv2-dm05-d16_4xb4-30k_voc12aug-513x513.py')
NAMES = (tf_names.mobilenet_v2(0.5) + tf_names.image_pooling_aspp0(160) +
         tf_names.logits(21))


def zoo_tarball(tmp_path, names=NAMES, member='deeplabv3_mnv2_dm05/model.ckpt'
                '-30000'):
    """The bytes of a zoo-like .tar.gz: <member>.index / .data-* and a
    frozen graph stand-in."""
    tensors = tf_names.values(names, step=30000, momentum=False)
    prefix = tmp_path / 'ckpt' / 'model.ckpt-30000'
    prefix.parent.mkdir(exist_ok=True)
    write_checkpoint(str(prefix), tensors)
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode='w:gz') as tar:
        for suffix in ('.index', '.data-00000-of-00001'):
            tar.add(f'{prefix}{suffix}', arcname=member + suffix)
        graph = tarfile.TarInfo(
            osp.join(osp.dirname(member), 'frozen_inference_graph.pb'))
        graph.size = 64
        tar.addfile(graph, io.BytesIO(b'\0' * 64))
    return buffer.getvalue(), tensors


@pytest.fixture(scope='module')
def tarball(tmp_path_factory):
    return zoo_tarball(tmp_path_factory.mktemp('zoo'))


class ZooServer(http.server.ThreadingHTTPServer):
    """Serves ``files`` (name -> bytes) at /<name> with HTTP Range;
    ``modes[name]``: 'cut' (a request without Range gets half of the file,
    then the connection closes), 'cut-norange' (the same, and Range is
    ignored), 'long' / 'short' (Content-Length 1000 bytes more / less than
    the file). ``log``: (name, Range header)."""

    def __init__(self):
        super().__init__(('127.0.0.1', 0), Handler)
        self.files, self.modes, self.log = {}, {}, []
        self.url = f'http://127.0.0.1:{self.server_address[1]}'


class Handler(http.server.BaseHTTPRequestHandler):
    timeout = 20  # a stuck client cannot hold the test

    def do_GET(self):
        server = self.server
        name = self.path.lstrip('/')
        asked = self.headers.get('Range')
        server.log.append((name, asked))
        data = server.files.get(name)
        if data is None:
            self.send_error(404)
            return
        mode = server.modes.get(name, 'ok')
        cut = mode.startswith('cut') and not asked
        if mode == 'cut-norange':
            asked = None  # Range ignored: always the whole file
        start = int(re.match(r'bytes=(\d+)-', asked).group(1)) if asked \
            else 0
        size = len(data) + {'long': 1000, 'short': -1000}.get(mode, 0)
        if start >= size:
            self.send_error(416)
            return
        body = data[start:]
        self.send_response(206 if asked else 200)
        if asked:
            self.send_header('Content-Range',
                             f'bytes {start}-{size - 1}/{size}')
        self.send_header('Content-Length', str(size - start))
        self.end_headers()
        if cut:
            body = body[:len(body) // 2]
        try:
            self.wfile.write(body)
        except (BrokenPipeError, ConnectionResetError):
            pass  # 'short': the client stops reading

    def log_message(self, *args):
        pass


@pytest.fixture
def server():
    srv = ZooServer()
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    yield srv
    srv.shutdown()
    srv.server_close()


def zoo_cli(name, *args, cache, check=True):
    return run_tool('tools/convert_tf_checkpoint.py', '--zoo', name, *args,
                    env={'DEEPLABPLUS_MM_CACHE': str(cache)}, check=check,
                    timeout=300)


def _leftovers(*folders):
    return [p for folder in folders for p in os.listdir(folder)
            if p.endswith(('.part', '.tmp', '.tmp.py'))]


def test_zoo_download_convert_cache(tmp_path, server, tarball):
    """--zoo NAME OUT: download through the mirror, convert with the row's
    config, the config written next to OUT, the test command printed; a
    second conversion takes the tarball from the cache; no torch, mmseg or
    mmcv imported."""
    data, tensors = tarball
    server.files[ROW.filename] = data
    cache, out = tmp_path / 'cache', tmp_path / 'ckpts' / 'dm05.pth'
    code = textwrap.dedent(f"""
        import runpy, sys
        sys.argv = ['convert_tf_checkpoint.py', '--zoo', {ROW.name!r},
                    {str(out)!r}, '--mirror', {server.url!r}]
        runpy.run_path('tools/convert_tf_checkpoint.py', run_name='__main__')
        print('loaded:', sorted(m for m in ('mmseg', 'mmcv', 'torch')
                                if m in sys.modules))
        """)
    log = run_tool('-c', code,
                   env={'DEEPLABPLUS_MM_CACHE': str(cache)}).stdout
    assert 'loaded: []' in log
    assert f'downloading {server.url}/{ROW.filename}' in log
    written = str(out)[:-len('.pth')] + '.py'
    assert f'-> {out}, config: {written}' in log
    assert f'python tools/test.py {written} {out}' in log
    assert "TF's published mIoU: 70.19 (val, OS 16, scale 1.0)" in log
    assert (cache / ROW.filename).read_bytes() == data
    sd = torch.load(out)['state_dict']
    name = 'MobilenetV2/expanded_conv_5/depthwise/depthwise_weights'
    key = 'backbone.expanded_conv_5.depthwise.conv.weight'
    assert np.array_equal(sd[key].numpy(),
                          tensors[name].transpose(2, 3, 0, 1))
    assert torch.equal(sd['decode_head.conv_seg.bias'],
                       torch.from_numpy(tensors['logits/semantic/biases']))
    # the written config is the row's config, whole, and segments an image
    # with the converted file through tools/infer.py (the quick start)
    from mmengine.config import Config
    assert Config.fromfile(written).model == Config.fromfile(
        osp.join(REPO, CONFIG)).model
    import cv2
    rng = np.random.default_rng(0)
    cv2.imwrite(str(tmp_path / 'photo.jpg'),
                rng.integers(0, 256, (60, 80, 3), dtype=np.uint8))
    run_tool('tools/infer.py', written, str(out), str(tmp_path / 'photo.jpg'),
             '--out-dir', str(tmp_path / 'infer'))
    from PIL import Image
    mask = Image.open(tmp_path / 'infer' / 'photo.png')
    assert mask.mode == 'P' and mask.size == (80, 60)  # VOC palette mask
    assert (tmp_path / 'infer' / 'photo_overlay.jpg').is_file()
    # again, into another file: from the cache, no request
    requests = len(server.log)
    log = zoo_cli(ROW.name, str(tmp_path / 'again.pth'), '--mirror',
                  server.url, cache=cache).stdout
    assert f'using {cache / ROW.filename} (cached)' in log
    assert len(server.log) == requests
    assert torch.equal(torch.load(tmp_path / 'again.pth')['state_dict'][key],
                       sd[key])
    assert not _leftovers(cache, out.parent, tmp_path)


def test_imagenet_row_lands_where_the_configs_expect_it(tmp_path):
    """An ImageNet row (slim's MobileNetV2, classifier included), from a
    mirror folder, becomes the backbone file the MobileNetV2 configs'
    init_cfg names, relative to the working directory, with a config that
    trains from it."""
    row = ZOO['mobilenet_v2_1.0_224']
    names = tf_names.mobilenet_v2(1.0) + tf_names.conv(
        'MobilenetV2/Conv_1', 1, 1, 320, 1280) + [
            ('MobilenetV2/Logits/Conv2d_1c_1x1/weights', (1, 1, 1280, 1001)),
            ('MobilenetV2/Logits/Conv2d_1c_1x1/biases', (1001, ))]
    data, tensors = zoo_tarball(tmp_path, names,
                                member='mobilenet_v2_1.0_224.ckpt')
    (tmp_path / 'mirror').mkdir()
    (tmp_path / 'mirror' / row.filename).write_bytes(data)
    log = run_tool(osp.join(REPO, 'tools/convert_tf_checkpoint.py'), '--zoo',
                   row.name, '--mirror', 'mirror', cwd=tmp_path,
                   env={'DEEPLABPLUS_MM_CACHE': str(tmp_path / 'cache')}
                   ).stdout
    out = 'checkpoints/mobilenetv2_imagenet.pth'
    assert 'mobilenet_v2 ImageNet backbone, 306 tensors' in log
    assert f'the configs of mobilenet_v2 expect it at {out}' in log
    sd = torch.load(tmp_path / out)['state_dict']
    assert np.array_equal(sd['conv.conv.weight'].numpy(), tensors[
        'MobilenetV2/Conv/weights'].transpose(3, 2, 0, 1))
    from mmengine.config import Config
    cfg = Config.fromfile(tmp_path / 'checkpoints/mobilenetv2_imagenet.py')
    repo_cfg = Config.fromfile(osp.join(REPO, row.config))
    assert cfg.model.backbone.init_cfg == dict(type='Pretrained',
                                               checkpoint=out)
    assert repo_cfg.model.backbone.init_cfg.checkpoint == out


def test_every_initial_checkpoint_lands_where_its_config_expects_it():
    """Each ImageNet row's default output is the file its config's
    backbone init_cfg names (ResNet-v1-beta and Xception alike)."""
    from mmengine.config import Config
    rows = [r for r in ZOO.values() if r.head is None and r.out]
    assert {'resnet_v1_50_beta_imagenet', 'resnet_v1_101_beta_imagenet',
            'xception_65_imagenet'} <= {r.name for r in rows}
    for row in rows:
        cfg = Config.fromfile(osp.join(REPO, row.config))
        assert cfg.model.backbone.init_cfg.checkpoint == row.out, row.name


@pytest.mark.parametrize('head', ['aspp_decoder', 'logits'])
def test_coco_initial_checkpoint_gives_its_backbone(tmp_path, head):
    """xception_65_imagenet_coco is DeepLab's COCO-pretrained model (its
    tarball's x65-b2u1s2p-d48-2-3x256-sc-cr300k_init.ckpt); whether it
    holds the ASPP and decoder alone or the logits too, the row converts
    its backbone (as the other initial checkpoints, every value exact) into
    the file the Xception-65 configs can start from, and says what it left
    out."""
    row = ZOO['xception_65_imagenet_coco']
    backbone = tf_names.xception(65)
    extra = tf_names.aspp(2048) + tf_names.decoder(256)
    if head == 'logits':
        extra += tf_names.logits(91)
    data, tensors = zoo_tarball(
        tmp_path, backbone + extra, member='xception_65_coco_pretrained/'
        'x65-b2u1s2p-d48-2-3x256-sc-cr300k_init.ckpt')
    (tmp_path / 'mirror').mkdir()
    (tmp_path / 'mirror' / row.filename).write_bytes(data)
    out = tmp_path / 'coco_init.pth'
    log = zoo_cli(row.name, str(out), '--mirror', str(tmp_path / 'mirror'),
                  cache=tmp_path / 'cache').stdout
    assert 'xception_65 ImageNet backbone' in log
    assert f'left out {len(extra)} TF variables of its DeepLab head' in log
    sd = torch.load(out)['state_dict']
    assert not any(k.startswith(('decode_head', 'backbone.')) for k in sd)
    weights = [k for k in sd if not k.endswith('num_batches_tracked')]
    assert len(weights) == len(backbone)
    assert np.array_equal(
        sd['exit_flow.block2.unit_1.separable_conv3.pointwise_conv.bn.'
           'running_var'].numpy(),
        tensors['xception_65/exit_flow/block2/unit_1/xception_module/'
                'separable_conv3_pointwise/BatchNorm/moving_variance'])
    from mmengine.config import Config
    cfg = Config.fromfile(osp.splitext(out)[0] + '.py')
    assert cfg.model.backbone.init_cfg == dict(type='Pretrained',
                                               checkpoint=str(out))
    assert cfg.model.backbone.arch == 65


def test_interrupted_transfer_resumes(tmp_path, server, tarball):
    """A connection lost mid-transfer is resumed with an HTTP Range request
    in the same run; so is the part file an interrupted run left."""
    data, _ = tarball
    server.files[ROW.filename] = data
    server.modes[ROW.filename] = 'cut'
    cache = tmp_path / 'cache'
    log = zoo_cli(ROW.name, str(tmp_path / 'a.pth'), '--mirror', server.url,
                  cache=cache).stdout
    half = len(data) // 2
    assert server.log == [(ROW.filename, None),
                          (ROW.filename, f'bytes={half}-')]
    assert f'resuming {server.url}/{ROW.filename}' in log
    assert (cache / ROW.filename).read_bytes() == data
    # the .part file of an earlier, interrupted run
    cache2 = tmp_path / 'cache2'
    cache2.mkdir()
    (cache2 / f'{ROW.filename}.part').write_bytes(data[:12345])
    server.log.clear()
    zoo_cli(ROW.name, str(tmp_path / 'b.pth'), '--mirror', server.url,
            cache=cache2)
    assert server.log == [(ROW.filename, 'bytes=12345-')]
    assert (cache2 / ROW.filename).read_bytes() == data
    a = torch.load(tmp_path / 'a.pth')['state_dict']
    b = torch.load(tmp_path / 'b.pth')['state_dict']
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not _leftovers(cache, cache2, tmp_path)


def test_server_without_range_support(tmp_path, server, tarball):
    """A server that answers a Range request with the whole file (200):
    the part file is started over, the result is the file."""
    data, _ = tarball
    server.files[ROW.filename] = data
    server.modes[ROW.filename] = 'cut-norange'
    cache = tmp_path / 'cache'
    log = zoo_cli(ROW.name, str(tmp_path / 'a.pth'), '--mirror', server.url,
                  cache=cache).stdout
    assert server.log == [(ROW.filename, None),
                          (ROW.filename, f'bytes={len(data) // 2}-')]
    assert log.count(f'downloading {server.url}/{ROW.filename}') == 2
    assert (cache / ROW.filename).read_bytes() == data
    assert not _leftovers(cache, tmp_path)


@pytest.mark.parametrize('mode', ['long', 'short'])
def test_server_lying_about_the_size(tmp_path, server, tarball, mode):
    """More bytes announced than sent: retried, then a one-line error with
    the sizes; fewer announced than the file has: the truncated gzip is
    caught and deleted. Nothing takes the tarball's name in the cache, no
    output is written."""
    data, _ = tarball
    server.files[ROW.filename] = data
    server.modes[ROW.filename] = mode
    cache, out = tmp_path / 'cache', tmp_path / 'x.pth'
    proc = zoo_cli(ROW.name, str(out), '--mirror', server.url, cache=cache,
                   check=False)
    assert proc.returncode != 0
    error = proc.stdout.strip().splitlines()[-1]
    assert error.startswith('error: ') and 'Traceback' not in proc.stdout
    if mode == 'long':
        assert (f'transfer incomplete after 4 requests (received '
                f'{len(data)} of the {len(data) + 1000} bytes the server '
                'announced)') in error
        assert 'run the same command again to resume' in error
    else:
        assert 'is not a complete gzip tarball' in error
        assert not osp.exists(cache / f'{ROW.filename}.part')
    assert not osp.exists(cache / ROW.filename) and not out.exists()


def test_zoo_errors(tmp_path, server, tarball):
    """Unknown name (closest names), unsupported row (no download), network
    failure (what to do), a tarball that holds another checkpoint (removed
    from the cache): one line each, nothing written."""
    cache, out = tmp_path / 'cache', tmp_path / 'x.pth'

    def error(name, *args):
        proc = zoo_cli(name, str(out), *args, cache=cache, check=False)
        assert proc.returncode != 0 and 'Traceback' not in proc.stdout
        lines = proc.stdout.strip().splitlines()
        assert lines[-1].startswith('error: ')
        return lines[-1]

    assert ("unknown zoo name 'xception65_coco_voc_trainag'; did you mean "
            'xception65_coco_voc_trainaug') in error(
                'xception65_coco_voc_trainag')
    unsupported = [row for row in ZOO.values() if not row.supported]
    if unsupported:  # none left once every family converts
        assert unsupported[0].status in error(
            unsupported[0].name, '--mirror', server.url)
    assert server.log == []
    with socket.socket() as s:  # a port nobody listens on
        s.bind(('127.0.0.1', 0))
        closed = f'http://127.0.0.1:{s.getsockname()[1]}'
    message = error(ROW.name, '--mirror', closed)
    assert f'cannot download {closed}/{ROW.filename}' in message
    assert 'Check the network' in message and '--mirror' in message
    # the dm 0.5 tarball served as the dm 1.0 row's
    other = ZOO['mobilenetv2_coco_voc_trainaug']
    server.files[other.filename] = tarball[0]
    message = error(other.name, '--mirror', server.url)
    assert (f'is not the expected checkpoint of {other.name}: it holds a '
            'mobilenet_v2_dm0.5 segmentor with 21 classes') in message
    assert 'removed it from the cache' in message
    assert not osp.exists(cache / other.filename) and not out.exists()


def test_list():
    log = run_tool('tools/convert_tf_checkpoint.py', '--list').stdout
    for name, row in ZOO.items():
        line = next(line for line in log.splitlines()
                    if line.startswith(name + ' '))
        assert ('supported' if row.supported else 'not yet supported') \
            in line
        for result in row.results:
            assert f'{result.miou:.2f} ({result.split}, ' in line
    assert 'config: configs/deeplabv3plus/deeplabv3plus_xception65-d16_4xb4-' \
        '30k_voc12aug-513x513.py' in log
    assert len(ZOO) >= 25


def test_model_name_in_mmseg_inferencer_and_segmenter(tmp_path, server,
                                                      tarball, monkeypatch,
                                                      one_thread):
    """MMSegInferencer(model=NAME) (after register_model_names()) and
    Segmenter(NAME), with a zoo name or a config name: the checkpoint is
    downloaded (mirror) and converted into the cache once; the predictions
    are those of the converted file with the repository's config."""
    import cv2

    from deeplabplus_mm.apis import Segmenter, register_model_names
    from mmseg.apis import MMSegInferencer
    register_model_names()  # opt-in: MMSegInferencer takes our names
    server.files[ROW.filename] = tarball[0]
    cache = tmp_path / 'cache'
    monkeypatch.setenv('DEEPLABPLUS_MM_CACHE', str(cache))
    monkeypatch.setenv('DEEPLABPLUS_MM_MIRROR', server.url)
    rng = np.random.default_rng(0)
    image = str(tmp_path / 'photo.png')
    cv2.imwrite(image, cv2.GaussianBlur(
        rng.integers(0, 256, (90, 120, 3), dtype=np.uint8), (9, 9), 3))

    inferencer = MMSegInferencer(model=ROW.name, device='cpu')
    labels = inferencer(image)['predictions']
    assert len(server.log) == 1 and (cache / f'{ROW.name}.pth').is_file()
    assert labels.shape == (90, 120)
    assert inferencer.model.dataset_meta['classes'][15] == 'person'  # VOC
    by_config = MMSegInferencer(model=osp.splitext(osp.basename(CONFIG))[0],
                                device='cpu')(image)['predictions']
    segmenter = Segmenter(ROW.name, fuse_conv_bn=False, channels_last=False)
    reference = Segmenter(osp.join(REPO, CONFIG),
                          str(cache / f'{ROW.name}.pth'),
                          fuse_conv_bn=False, channels_last=False)(image)
    assert len(server.log) == 1  # converted once, then from the cache
    assert len(np.unique(reference)) > 1
    assert np.array_equal(labels, reference)
    assert np.array_equal(by_config, reference)
    assert np.array_equal(segmenter(image), reference)
    with pytest.raises(ValueError, match='no trained checkpoint'):
        Segmenter('deeplabv3plus_r101-d8_4xb4-30k_voc12aug-513x513')
    with pytest.raises(ValueError, match='did you mean'):
        Segmenter('mobilenetv2_dm05_coco_voc_trainag')
