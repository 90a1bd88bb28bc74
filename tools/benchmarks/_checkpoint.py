"""The reference checkpoint of ``convert.py`` and ``read.py``: a training
checkpoint of the zoo's VOC model as TensorFlow leaves it (seeded random
values, written by :mod:`tools.fixtures.tf_bundle_writer`), and reading it
with our reader and with TensorFlow's, each in a fresh process.
"""
import json
import os
import os.path as osp
import time

from tools import REPO
from tools.benchmarks._harness import PeakRSS, child_result
from tools.fixtures.tf_bundle_writer import write_checkpoint

# The zoo's VOC model, whose full training checkpoint the benchmarks read.
REFERENCE_CONFIG = ('configs/deeplabv3plus/'
                    'deeplabv3plus_xception65-d16_4xb4-30k_voc12aug-513x513.py')


def trainable(name):
    """Whether TF trains a model variable (all but BN's moving statistics),
    i.e. whether a training checkpoint holds a ``/Momentum`` slot for it."""
    return not name.endswith(('/moving_mean', '/moving_variance'))


def checkpoint_tensors(subset=None):
    """name -> array of a training checkpoint of :data:`REFERENCE_CONFIG`'s
    model as TF leaves it (the model variables, the first ``subset`` in
    name order, a ``/Momentum`` slot for each trainable one and
    ``global_step``), of seeded random float32 values (their size, not
    their values, is what reading and converting cost)."""
    import numpy as np

    from deeplabplus_mm.converters import load_model_config, tf_variables
    variables = tf_variables(load_model_config(osp.join(REPO,
                                                        REFERENCE_CONFIG)))
    rng = np.random.default_rng(0)
    tensors = {'global_step': np.asarray(30000, np.int64)}
    for name in sorted(variables)[:subset]:
        slots = ('', '/Momentum') if trainable(name) else ('', )
        for slot in slots:
            tensors[name + slot] = rng.standard_normal(
                variables[name], np.float32) * np.float32(0.1)
    return tensors


def reference_checkpoint(cache, subset=None, archive=False):
    """The prefix of the cached reference checkpoint (~330 MB in full, as a
    training run leaves it), written by our writer on first use; with
    ``archive``, ``(prefix, the folder as a .tar.gz)`` as the zoo ships
    it."""
    import tarfile

    name = 'xception65_synthetic' + (f'_{subset}' if subset else '')
    folder, tar = osp.join(cache, name), osp.join(cache, name + '.tar.gz')
    prefix = osp.join(folder, 'model.ckpt-30000')
    if not osp.isfile(prefix + '.index'):
        os.makedirs(folder, exist_ok=True)
        write_checkpoint(prefix, checkpoint_tensors(subset))
        print(f'# wrote {prefix}', flush=True)
    if archive and not osp.isfile(tar):
        with tarfile.open(tar + '.tmp', 'w:gz', compresslevel=6) as f:
            f.add(folder, arcname=name)
        os.replace(tar + '.tmp', tar)
        print(f'# wrote {tar}', flush=True)
    return (prefix, tar) if archive else prefix


def checkpoint_bytes(prefix):
    folder, base = osp.split(prefix)
    return sum(osp.getsize(osp.join(folder, f)) for f in os.listdir(folder)
               if f.startswith(base + '.'))


def wanted(what, name):
    """Whether a ``what`` read ('needed', 'all', 'keep') takes ``name``:
    'needed' skips the Momentum slots and ``global_step``."""
    return what != 'needed' or not (name.endswith('/Momentum')
                                    or name == 'global_step')


def read_child(spec):
    """Child: our reader over ``src``: the tensors ``what`` wants, each
    dropped once read ('keep': ``load_checkpoint``, all kept)."""
    from deeplabplus_mm.converters import load_checkpoint, open_checkpoint
    mem = PeakRSS().start()
    wall, cpu = time.perf_counter(), time.process_time()
    if spec['what'] == 'keep':
        count = len(load_checkpoint(spec['src'], verify=spec['verify']))
    else:
        with open_checkpoint(spec['src']) as reader:
            names = [n for n in reader.names() if wanted(spec['what'], n)]
            for name in names:
                reader.get(name, verify=spec['verify'])
            count = len(names)
    return dict(seconds=time.perf_counter() - wall, tensors=count,
                cpu=time.process_time() - cpu, rss_mib=mem.delta_mib())


# TensorFlow's reader, run in a process that needs nothing but TensorFlow.
TF_READ = osp.join(osp.dirname(osp.abspath(__file__)), '_tf_read.py')


def tf_read(spec, python):
    """:func:`read_child`'s measurements of TensorFlow's
    ``tf.train.load_checkpoint`` in a fresh ``python`` process."""
    return child_result([python, TF_READ, json.dumps(spec)])
