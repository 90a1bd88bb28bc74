"""The model index (metafiles, per-folder READMEs, .mim/model-index.yml):
generated from the configs and the zoo table, up to date, complete, and read
by OpenMMLab's own tools (``mim search`` / ``mim download``)."""
import glob
import os
import os.path as osp
import shutil
import subprocess
import sys

import pytest
import yaml

from conftest import REPO, run_tool
from deeplabplus_mm.converters.zoo import ZOO_ROWS

MIM = osp.join(REPO, 'deeplabplus_mm', '.mim')


def _models():
    index = yaml.safe_load(open(osp.join(MIM, 'model-index.yml')))
    for metafile in index['Import']:
        yield from yaml.safe_load(open(osp.join(MIM, metafile)))['Models']


def test_committed_files_are_up_to_date():
    log = run_tool('tools/generate_model_index.py', '--check').stdout
    assert '0 file(s) stale' in log


def test_readme_zoo_table_lists_every_row():
    """The README's zoo table (generated, kept current by the test above)
    has one line per zoo row with its config and command; without its
    marks the generator names the file."""
    from tools._model_index import readme_with_zoo_table
    text = open(osp.join(REPO, 'README.md')).read()
    for row in ZOO_ROWS:
        (line, ) = [x for x in text.splitlines()
                    if x.startswith(f'| {row.name} |')]
        assert f'--zoo {row.name}`' in line
        assert (row.config or '-') in line
    with pytest.raises(ValueError, match='README.md: the zoo table marks'):
        readme_with_zoo_table('# a README without the marks\n')


def test_every_config_and_zoo_checkpoint_is_indexed():
    models = {m['Name']: m for m in _models()}
    configs = sorted(
        osp.relpath(p, REPO)
        for p in glob.glob(osp.join(REPO, 'configs', '*', '*.py'))
        if '/_base_/' not in p)
    assert sorted({m['Config'] for m in models.values()}) == configs
    for config in configs:
        assert osp.splitext(osp.basename(config))[0] in models
    names = set(models) | {a for m in models.values()
                           for a in m.get('Alias', [])}
    by_url = {}
    for model in models.values():
        by_url.setdefault(model.get('Weights'), []).append(model)
    for row in ZOO_ROWS:
        if not (row.supported and row.head):
            continue
        assert row.name in names
        # each published figure is on the entry of the config that
        # evaluates as TF did, marked as TF's
        for result in row.results:
            entry = next(m for m in by_url[row.url]
                         if m['Config'] == result.config)
            metric = 'mIoU(ms+flip)' if result.tta else 'mIoU'
            assert any(r['Metrics'].get(metric) == result.miou
                       for r in entry['Results'])
            assert "TF's published figure, not measured here" in \
                entry['Metadata']['Results Source']
    x65 = models['deeplabv3plus_xception65-d16_4xb4-30k_voc12aug-513x513']
    assert x65['Alias'] == ['xception65_coco_voc_trainaug']
    assert x65['Results'][0]['Metrics'] == {'mIoU': 82.2}
    assert models['xception65_coco_voc_trainval']['Config'].endswith(
        'deeplabv3plus_xception65-d8_4xb4-30k_voc12aug-513x513.py')
    demo = models['deeplabv3plus_xception41-d16_1xb8-300it_synthvoc-97x97']
    assert demo['Metadata']['Results Source'].startswith('measured here')
    # a config without a trained checkpoint names its initial one
    r101 = models['deeplabv3plus_r101-d8_4xb4-30k_voc12aug-513x513']
    assert r101['Weights'].endswith('.pth') and 'Results' not in r101
    readme = open(osp.join(REPO, 'configs/deeplabv3plus/README.md')).read()
    assert ('| 82.20 (TF) | - | [config](deeplabv3plus_xception65-d16_4xb4-'
            '30k_voc12aug-513x513.py) |') in readme
    assert '87.80 (TF, test)' in readme


@pytest.fixture(scope='module')
def mim_env(tmp_path_factory):
    """This package as a wheel installs it (what `pip install` gives a
    user), in a folder first on PYTHONPATH, so that mim finds its
    .mim/model-index.yml."""
    pytest.importorskip('mim', reason='openmim is not installed '
                        '(requirements/mim.txt)')
    tmp = tmp_path_factory.mktemp('wheel')
    src = tmp / 'src'  # a copy: the build writes build/ and *.egg-info
    ignore = shutil.ignore_patterns('__pycache__', '*.egg-info', 'build')
    src.mkdir()
    for name in ('setup.py', 'README.md'):
        shutil.copy(osp.join(REPO, name), src / name)
    for name in ('deeplabplus_mm', 'configs', 'tools'):
        shutil.copytree(osp.join(REPO, name), src / name, symlinks=True,
                        ignore=ignore)
    subprocess.run(
        [sys.executable, '-m', 'pip', 'wheel', '--no-deps',
         '--no-build-isolation', '-q', '-w', str(tmp / 'dist'), str(src)],
        check=True, timeout=300, capture_output=True)
    wheel, = glob.glob(str(tmp / 'dist' / '*.whl'))
    site = tmp / 'site'
    subprocess.run(
        [sys.executable, '-m', 'pip', 'install', '--no-deps', '-q',
         '--target', str(site), wheel], check=True, timeout=300,
        capture_output=True)
    return dict(PYTHONPATH=str(site), PATH=osp.dirname(sys.executable) +
                os.pathsep + os.environ['PATH'])


def mim(*args, env, cwd):
    proc = subprocess.run(
        [sys.executable, '-m', 'mim', *args], cwd=cwd,
        env=dict(os.environ, **env), stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-4000:]
    return proc.stdout


def test_mim_search_lists_every_config(mim_env, tmp_path):
    installed = osp.join(mim_env['PYTHONPATH'], 'deeplabplus_mm', '.mim')
    assert osp.isfile(osp.join(installed, 'configs', 'dpc',
                               'metafile.yaml'))  # copies in the wheel
    log = mim('search', 'deeplabplus-mm', '--valid-config', env=mim_env,
              cwd=tmp_path)
    for model in _models():
        assert model['Name'].lower() in log
    log = mim('search', 'deeplabplus-mm', '--model',
              'deeplabv3+ (tf-faithful)', '--field', 'miou', 'weight',
              'results_source', '--display-width', '400', env=mim_env,
              cwd=tmp_path)
    assert 'deeplabv3plus_xception65-d16_4xb4-30k_voc12aug-513x513' in log
    assert '82.2' in log and '83.58' in log and "tf's published" in log


def test_mim_download_gives_the_config(mim_env, tmp_path):
    """mim download with the row's tarball already in --dest (no network):
    the config is dumped next to it, and the tarball converts with it."""
    from test_zoo import ROW, zoo_tarball
    data, _ = zoo_tarball(tmp_path)
    dest = tmp_path / 'dest'
    dest.mkdir()
    (dest / ROW.filename).write_bytes(data)
    name = 'deeplabv3_mobilenetv2-dm05-d16_4xb4-30k_voc12aug-513x513'
    log = mim('download', 'deeplabplus-mm', '--config', name, '--dest',
              str(dest), env=mim_env, cwd=tmp_path)
    assert f'{ROW.filename} exists' in log
    assert (dest / f'{name}.py').is_file()
    log = run_tool('tools/convert_tf_checkpoint.py', str(dest / ROW.filename),
                   str(dest / 'dm05.pth'), '--config',
                   str(dest / f'{name}.py')).stdout
    assert 'mobilenet_v2_dm0.5 DeepLab segmentor' in log
