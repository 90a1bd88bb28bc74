"""Make a compact TF training reference: three steps of TF DeepLab's own
``train.py`` for one model-zoo family (tests/tf_train/<case>/).

Runs with TensorFlow (2.15, ``tf.compat.v1`` graph mode) + tf_slim 1.1 in
an interpreter of its own; the project never imports TensorFlow::

    TF_PY=/path/to/tf-venv/bin/python
    $TF_PY tools/tf_references/train_reference.py CASE \
        --tf-code DIR [--out tests/tf_train/CASE]

``--tf-code`` holds tensorflow/models' ``research/deeplab`` as ``deeplab/``,
``research/slim``'s ``nets/`` and ``deployment/``, with the imports ported
to ``tf.compat.v1`` + ``tf_slim`` (``tensorflow.contrib.slim`` ->
``tf_slim``, contrib ``framework``/``layers`` -> ``tf_slim``, contrib
quantize / tfprof -> None: unused with the default flags) and nothing else.

What runs is ``train.main()``'s graph with only the input and the loop
replaced: ``model_deploy.create_clones`` of ``train._build_deeplab`` (one
clone, ``model.multi_scale_logits(is_training=True,
fine_tune_batch_norm=True)``,
``train_utils.add_softmax_cross_entropy_loss_for_each_scale(
upsample_logits=True)``), ``train_utils.get_model_learning_rate`` (poly,
base 0.007, 10 steps, power 0.9), ``MomentumOptimizer(0.9)``,
``model_deploy.optimize_clones`` (loss + regularization losses),
``get_model_gradient_multipliers`` + ``slim.learning.multiply_gradients``,
``apply_gradients`` grouped with the BN update ops. The input is one fixed
batch (tests/tf_values.make_batch, 129x129, no augmentation), the initial
values tests/tf_values.train_variable_value (Momentum and global_step start
at 0, as a restore from a slot-free checkpoint leaves them) and the ASPP /
DPC dropout is off (model.py's and dense_prediction_cell.py's module global
``slim`` is a proxy whose ``dropout`` returns its input), so that the steps
are deterministic. The run is made with 1 and 2 intra-op threads; the
1-thread run is stored, the difference between the two is TensorFlow's
agreement with itself (``self_agreement``).

Stored: ``reference.json`` (flags, per step the learning rate, cross-entropy
and regularization loss; per variable its shape, gradient multiplier, L2,
BN epsilon and 1 - decay, the norm of its update after steps 1 and 3) and
``updates.npz`` (``<name>|<step>``: the update after that step at
tests/tf_values.sample_indices).
"""
import argparse
import json
import os
import os.path as osp
import subprocess
import sys
import tempfile
import time

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
sys.path.insert(0, osp.join(REPO, 'tests'))
import tf_values  # noqa: E402

STEPS = 3
SAVE_AFTER = (1, 3)
CROP = 129
DPC_JSON = 'deeplab/core/dense_prediction_cell_branch5_top1_cityscapes.json'
XCEPTION_VOC = ['--atrous_rates=6', '--atrous_rates=12', '--atrous_rates=18',
                '--decoder_output_stride=4']
# case -> (zoo configuration, our config, train.py / common.py flags,
#          number of classes, ignore label)
CASES = {
    'mobilenetv2_train': (
        'mobilenetv2_coco_voc (the shared reference, to check this script)',
        'configs/deeplabv3/deeplabv3_mobilenetv2-d16_4xb4-30k_voc12aug-'
        '513x513.py', ['--model_variant=mobilenet_v2'], 21, 255),
    'xception65_voc': (
        'xception65 PASCAL VOC (DeepLab v3+, OS 16)',
        'configs/deeplabv3plus/deeplabv3plus_xception65-d16_4xb4-30k_'
        'voc12aug-513x513.py', ['--model_variant=xception_65'] + XCEPTION_VOC,
        21, 255),
    'xception41_voc': (
        'xception41 PASCAL VOC (DeepLab v3+, OS 16)',
        'configs/deeplabv3plus/deeplabv3plus_xception41-d16_4xb4-30k_'
        'voc12aug-513x513.py', ['--model_variant=xception_41'] + XCEPTION_VOC,
        21, 255),
    'xception71_voc': (
        'xception71 PASCAL VOC (DeepLab v3+, OS 16)',
        'configs/deeplabv3plus/deeplabv3plus_xception71-d16_4xb4-30k_'
        'voc12aug-513x513.py', ['--model_variant=xception_71'] + XCEPTION_VOC,
        21, 255),
    'mobilenetv2_dm05_voc': (
        'mobilenetv2_dm05_coco_voc_trainaug (DeepLab v3, OS 16)',
        'configs/deeplabv3/deeplabv3_mobilenetv2-dm05-d16_4xb4-30k_'
        'voc12aug-513x513.py',
        ['--model_variant=mobilenet_v2', '--depth_multiplier=0.5'], 21, 255),
    'mobilenetv2_ade20k': (
        'mobilenetv2_ade20k_train (decoder at OS 4, 151 classes, ADE20K '
        'ignore label 0)',
        'configs/deeplabv3plus/deeplabv3plus_mobilenetv2-d16_4xb4-150k_'
        'ade20k-257x257.py',
        ['--model_variant=mobilenet_v2', '--decoder_output_stride=4',
         '--dataset=ade20k'], 151, 0),
    'xception71_dpc_cityscapes': (
        'xception71_dpc_cityscapes_trainfine (Dense Prediction Cell, OS 16)',
        'configs/dpc/dpc_xception71-d16_4xb2-90k_cityscapes-769x769.py',
        ['--model_variant=xception_71', '--decoder_output_stride=4',
         '--dense_prediction_cell_json={tf_code}/' + DPC_JSON,
         '--dataset=cityscapes'], 19, 255),
}
TRAIN_FLAGS = [
    '--train_batch_size=2',
    '--base_learning_rate=0.007', '--training_number_of_steps=10',
    '--learning_policy=poly', '--learning_power=0.9', '--momentum=0.9',
    '--weight_decay=0.00004', '--fine_tune_batch_norm=true',
    '--upsample_logits=true', '--output_stride=16',
    '--last_layer_gradient_multiplier=1.0', '--num_clones=1'
]


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('case', choices=sorted(CASES))
    parser.add_argument('--tf-code', required=True,
                        help='folder with deeplab/, nets/, deployment/')
    parser.add_argument('--out', help='default: tests/tf_train/CASE')
    parser.add_argument('--threads', type=int, nargs='+', default=[1, 2],
                        help='intra-op thread counts; the first is stored')
    parser.add_argument(
        '--onednn-off-run', action='store_true',
        help='also compare with a run in a child process with oneDNN off '
        '(TF_ENABLE_ONEDNN_OPTS=0: Eigen kernels instead of oneDNN\'s)')
    parser.add_argument('--dump', help=argparse.SUPPRESS)  # the child's
    parser.add_argument(
        '--check-against',
        help='a folder like shared/tf_deeplab/mobilenetv2_train: compare '
        'the variables after steps 1 and 3 with its ckpt_step1/ckpt_step3 '
        'and the losses with its train_steps.json, then exit')
    return parser.parse_args()


class _NoDropout:
    """A module's ``slim`` whose ``dropout`` is the identity."""

    def __init__(self, slim, calls):
        self._slim, self._calls = slim, calls

    def __getattr__(self, name):
        return getattr(self._slim, name)

    def dropout(self, inputs, keep_prob=0.5, is_training=True, scope=None,
                **kwargs):
        self._calls.append(dict(scope=scope, keep_prob_in_call=keep_prob,
                                is_training_in_call=bool(is_training)))
        return inputs


def _ancestor_variables(tensor, var_types):
    seen, stack, found = set(), [tensor.op], []
    while stack:
        op = stack.pop()
        if op.name in seen:
            continue
        seen.add(op.name)
        if op.type in var_types:
            found.append(op.name)
            continue
        stack.extend(t.op for t in op.inputs)
    return found


def build(case, tf_code, batch_folder=None, crop=CROP, batch=None):
    """The graph of train.main() for CASE; returns the tensors it needs.
    The batch: ``batch`` (images, labels), image_{0,1}.png /
    label_{0,1}.png of ``batch_folder``, or tf_values.make_batch."""
    import tensorflow.compat.v1 as tf
    from deeplab import common, model, train
    from deeplab.core import dense_prediction_cell
    from deeplab.utils import train_utils
    from deployment import model_deploy
    slim = train.slim

    _, _, case_flags, num_classes, ignore = CASES[case]
    argv = TRAIN_FLAGS + [f'--train_crop_size={crop},{crop}'] + [
        f.format(tf_code=tf_code) for f in case_flags]
    train.FLAGS(['train.py'] + argv)
    FLAGS = train.FLAGS
    dropout_calls = []
    model.slim = _NoDropout(model.slim, dropout_calls)
    dense_prediction_cell.slim = _NoDropout(dense_prediction_cell.slim,
                                            dropout_calls)

    images, labels = batch or tf_values.make_batch(crop, num_classes,
                                                   ignore)
    if batch_folder:
        import numpy as np
        from PIL import Image

        def read(name):
            return np.asarray(Image.open(osp.join(batch_folder, name)))
        images = [read(f'image_{i}.png') for i in range(2)]
        labels = [read(f'label_{i}.png') for i in range(2)]

    class FixedBatch:
        def get_next(self):
            import numpy as np
            return {
                common.IMAGE: tf.constant(np.stack(images).astype('float32')),
                common.LABEL: tf.constant(
                    np.stack(labels).astype('int32')[..., None]),
            }

    graph = tf.Graph()
    with graph.as_default():
        config = model_deploy.DeploymentConfig(num_clones=1)
        with tf.device(config.variables_device()):
            global_step = tf.train.get_or_create_global_step()
            clones = model_deploy.create_clones(
                config, train._build_deeplab,
                args=(FixedBatch(), {common.OUTPUT_TYPE: num_classes},
                      ignore))
            update_ops = tf.get_collection(tf.GraphKeys.UPDATE_OPS,
                                           config.clone_scope(0))
        with tf.device(config.optimizer_device()):
            learning_rate = train_utils.get_model_learning_rate(
                FLAGS.learning_policy, FLAGS.base_learning_rate,
                FLAGS.learning_rate_decay_step,
                FLAGS.learning_rate_decay_factor,
                FLAGS.training_number_of_steps, FLAGS.learning_power,
                FLAGS.slow_start_step, FLAGS.slow_start_learning_rate,
                decay_steps=FLAGS.decay_steps,
                end_learning_rate=FLAGS.end_learning_rate)
            optimizer = tf.train.MomentumOptimizer(learning_rate,
                                                   FLAGS.momentum)
        with tf.device(config.variables_device()):
            total_loss, grads_and_vars = model_deploy.optimize_clones(
                clones, optimizer)
            total_loss = tf.check_numerics(total_loss,
                                           'Loss is inf or nan.')
            last_layers = model.get_extra_layer_scopes(
                FLAGS.last_layers_contain_logits_only)
            grad_mult = train_utils.get_model_gradient_multipliers(
                last_layers, FLAGS.last_layer_gradient_multiplier)
            if grad_mult:
                grads_and_vars = slim.learning.multiply_gradients(
                    grads_and_vars, grad_mult)
            grad_updates = optimizer.apply_gradients(grads_and_vars,
                                                     global_step=global_step)
            update_ops.append(grad_updates)
            update_op = tf.group(*update_ops)
            with tf.control_dependencies([update_op]):
                train_tensor = tf.identity(total_loss, name='train_op')
        (cross_entropy, ) = tf.get_collection(tf.GraphKeys.LOSSES)
        reg_losses = tf.get_collection(tf.GraphKeys.REGULARIZATION_LOSSES)
        reg_loss = tf.add_n(reg_losses)
        var_types = ('VariableV2', 'VarHandleOp')
        l2 = sorted(v for t in reg_losses
                    for v in _ancestor_variables(t, var_types))
        bn_eps, bn_decay = {}, {}
        for op in graph.get_operations():
            if (op.type.startswith('FusedBatchNorm')
                    and 'Grad' not in op.type):
                for v in _ancestor_variables(op.inputs[1], var_types):
                    bn_eps[v.rpartition('/')[0]] = op.get_attr('epsilon')
            if op.type in ('AssignSub', 'AssignSubVariableOp') and (
                    '/AssignMovingAvg' in op.name):
                (var, ) = _ancestor_variables(op.inputs[0], var_types)
                # assign_moving_average: var -= (var - value) * (1 - decay)
                (decay, ) = [t for t in op.inputs[1].op.inputs
                             if t.shape.rank == 0]
                bn_decay[var] = decay
        model_vars = tf.model_variables()
        trainable = {v.op.name for v in tf.trainable_variables()}
        init = tf.global_variables_initializer()
    return dict(
        graph=graph, init=init, train=train_tensor, lr=learning_rate,
        ce=cross_entropy, reg=reg_loss, model_vars=model_vars,
        trainable=trainable, grad_mult=grad_mult, l2=l2, bn_eps=bn_eps,
        bn_decay=bn_decay, dropout_calls=dropout_calls, flags=argv,
        global_step=global_step, labels=labels)


def run(g, threads):
    """Three steps from the initial values; returns the losses and the
    model variables before and after steps 1 and 3."""
    import numpy as np
    import tensorflow.compat.v1 as tf
    # allow_soft_placement as train.main: clone 0 is placed on GPU:0.
    session_config = tf.ConfigProto(allow_soft_placement=True,
                                    intra_op_parallelism_threads=threads,
                                    inter_op_parallelism_threads=1)
    with tf.Session(graph=g['graph'], config=session_config) as sess:
        sess.run(g['init'])
        init = {v.op.name: tf_values.train_variable_value(
            v.op.name, v.shape.as_list()) for v in g['model_vars']}
        # one run (Variable.load per variable: one graph pruning each)
        sess.run([v.initializer for v in g['model_vars']],
                 {v.initializer.inputs[1]: init[v.op.name]
                  for v in g['model_vars']})
        values = sess.run(g['model_vars'])
        assert all(np.array_equal(x, init[v.op.name])
                   for v, x in zip(g['model_vars'], values))
        assert sess.run(g['global_step']) == 0
        steps, after = [], {}
        for step in range(1, STEPS + 1):
            reg = sess.run(g['reg'])
            start = time.perf_counter()
            total, ce, lr = sess.run([g['train'], g['ce'], g['lr']])
            steps.append(dict(step=step, learning_rate=float(lr),
                              cross_entropy=float(ce),
                              regularization_loss=float(reg),
                              seconds=time.perf_counter() - start))
            if step in SAVE_AFTER:
                values = sess.run(g['model_vars'])
                after[step] = {v.op.name: np.asarray(x)
                               for v, x in zip(g['model_vars'], values)}
        bn_decay = {k: float(sess.run(t)) for k, t in g['bn_decay'].items()}
    return init, steps, after, bn_decay


def tensor_error(ours, ref, weight):
    """(relative error, error in ulps of the weight) of an update."""
    import numpy as np
    err = float(np.max(np.abs(ours.astype('float64') - ref)))
    scale = float(np.max(np.abs(ref)))
    ulp = float(np.spacing(np.float32(np.max(np.abs(weight)))))
    return (err / scale if scale else (0.0 if err == 0 else float('inf')),
            err / ulp)


def agreement(init, after_a, after_b, ce_a, ce_b):
    """How far run b is from run a, per tensor (whole updates)."""
    import numpy as np
    worst, rels = [], []
    for step in SAVE_AFTER:
        for name, w0 in init.items():
            ua = after_a[step][name] - w0
            ub = after_b[step][name] - w0
            rel, ulps = tensor_error(ub, ua, after_a[step][name])
            rels.append(min(rel, 1.0))
            if rel > 1e-3 and ulps > 4:
                worst.append((rel, ulps, name, step))
    ce = max(abs(a - b) / abs(a) for a, b in zip(ce_a, ce_b))
    rels = np.asarray(rels)
    return dict(
        tensors_compared=int(len(rels)),
        median_relative=float(np.median(rels)),
        max_relative=float(rels.max()),
        outside_1e3_or_4ulp=[dict(name=n, step=s, relative=r, ulps=u)
                             for r, u, n, s in sorted(worst)[::-1][:20]],
        num_outside=len(worst),
        cross_entropy_max_relative=float(ce))


def check_against(init, steps, after, folder):
    import numpy as np
    import tensorflow.compat.v1 as tf
    with open(osp.join(folder, 'train_steps.json')) as f:
        ref_steps = json.load(f)['steps']
    for ours, ref in zip(steps, ref_steps):
        print(f'step {ours["step"]}: lr {ours["learning_rate"]:.7g} / '
              f'{ref["learning_rate"]:.7g}, cross-entropy '
              f'{ours["cross_entropy"]:.9g} / {ref["cross_entropy"]:.9g}')
    for step in SAVE_AFTER:
        reader = tf.train.load_checkpoint(
            osp.join(folder, f'ckpt_step{step}', 'model.ckpt'))
        errors = []
        for name, w0 in init.items():
            ref = reader.get_tensor(name)
            errors.append(
                tensor_error(after[step][name] - w0, ref - w0, ref) + (name, ))
        errors.sort(key=lambda e: -min(e[0], e[1] / 4 * 1e-3))
        n_bad = sum(1 for r, u, _ in errors if r > 1e-3 and u > 4)
        print(f'after step {step}: {len(errors)} variables, {n_bad} outside '
              f'max(1e-3 relative, 4 ulp); median relative '
              f'{np.median([e[0] for e in errors]):.2e}; worst:')
        for r, u, name in errors[:5]:
            print(f'  {name}: relative {r:.2e}, {u:.2f} ulp')


def _tf215_shims():
    """Three renames between tf_slim 1.1 / TF 2.15 / tf_keras 2.15.1.
    TF 2.15's tensorflow/python/layers/normalization.py (slim's
    fused batch norm) loads ``tf_keras.legacy_tf_layers.normalization``,
    which tf_keras 2.15.1 ships as ``tf_keras.src.legacy_tf_layers``."""
    import importlib
    try:
        importlib.import_module('tf_keras.legacy_tf_layers.normalization')
    except ImportError:
        module = importlib.import_module(
            'tf_keras.src.legacy_tf_layers.normalization')
        sys.modules['tf_keras.legacy_tf_layers'] = sys.modules[
            'tf_keras.src.legacy_tf_layers']
        sys.modules['tf_keras.legacy_tf_layers.normalization'] = module
    # tf_slim 1.1's learning.multiply_gradients tests isinstance(x,
    # ops.Tensor / ops.IndexedSlices); TF 2.15 has them as tf.* only.
    import tensorflow as tf
    from tensorflow.python.framework import ops
    for name in ('Tensor', 'IndexedSlices'):
        if not hasattr(ops, name):
            setattr(ops, name, getattr(tf, name))
    # deeplab/core/conv2d_ws.py (ResNet-v1-beta) calls the Keras conv's
    # private _convolution_op, public as convolution_op in Keras 2.15.
    conv = tf.keras.layers.Conv2D
    if not hasattr(conv, '_convolution_op'):
        conv._convolution_op = conv.convolution_op


def setup_tf(tf_code):
    """TensorFlow in graph mode, with the official code importable."""
    os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')
    sys.path.insert(0, osp.abspath(tf_code))
    import tensorflow.compat.v1 as tf
    _tf215_shims()
    tf.disable_v2_behavior()
    tf.logging.set_verbosity(tf.logging.ERROR)
    return tf


def main():
    args = parse_args()
    tf_code = osp.abspath(args.tf_code)
    tf = setup_tf(tf_code)
    import numpy as np
    import tf_slim

    g = build(args.case, tf_code, args.check_against)
    runs = []
    for threads in args.threads:
        start = time.perf_counter()
        runs.append(run(g, threads))
        print(f'{args.case}: {threads} intra-op thread(s): '
              f'{time.perf_counter() - start:.1f} s, cross-entropy '
              f'{[round(s["cross_entropy"], 6) for s in runs[-1][1]]}',
              flush=True)
    init, steps, after, bn_decay = runs[0]
    if args.check_against:
        check_against(init, steps, after, args.check_against)
        return
    if args.dump:
        np.savez(args.dump, steps=json.dumps(steps), **{
            f'{n}|{k}': v for k, vs in after.items() for n, v in vs.items()})
        return
    ce = [s['cross_entropy'] for s in steps]
    self_agreement = {
        f'intra_op_threads {args.threads[0]} vs {threads}': agreement(
            init, after, run_b[2], ce,
            [s['cross_entropy'] for s in run_b[1]])
        for threads, run_b in zip(args.threads[1:], runs[1:])
    }
    if args.onednn_off_run:
        with tempfile.TemporaryDirectory() as tmp:
            dump = osp.join(tmp, 'run.npz')
            subprocess.run(
                [sys.executable, __file__, args.case, '--tf-code', tf_code,
                 '--threads', str(args.threads[0]), '--dump', dump],
                env=dict(os.environ, TF_ENABLE_ONEDNN_OPTS='0'), check=True)
            with np.load(dump) as npz:
                other = {k: {n: npz[f'{n}|{k}'] for n in init}
                         for k in SAVE_AFTER}
                other_ce = [s['cross_entropy']
                            for s in json.loads(str(npz['steps']))]
        self_agreement['oneDNN on vs off (TF_ENABLE_ONEDNN_OPTS=0), '
                       f'intra_op_threads {args.threads[0]}'] = agreement(
                           init, after, other, ce, other_ce)
    for key, value in self_agreement.items():
        print(f'TF against itself ({key}): median '
              f'{value["median_relative"]:.2e}, max '
              f'{value["max_relative"]:.2e} relative, '
              f'{value["num_outside"]} tensor-steps outside max(1e-3, 4 ulp), '
              f'cross-entropy {value["cross_entropy_max_relative"]:.2e}')

    variables, updates = [], {}
    for var in g['model_vars']:
        name = var.op.name
        entry = dict(name=name, shape=var.shape.as_list(),
                     trainable=name in g['trainable'])
        if name in g['trainable']:
            entry['gradient_multiplier'] = float(g['grad_mult'].get(name, 1.0))
            entry['l2'] = name in g['l2']
        scope = name.rpartition('/')[0]
        if scope in g['bn_eps']:
            entry['bn_epsilon'] = g['bn_eps'][scope]
        if name in bn_decay:
            entry['bn_one_minus_decay'] = bn_decay[name]
        entry['update_norm'] = {}
        for step in SAVE_AFTER:
            update = (after[step][name] - init[name]).astype(np.float32)
            entry['update_norm'][str(step)] = float(
                np.linalg.norm(update.astype(np.float64)))
            idx = tf_values.sample_indices(name, update.size)
            updates[f'{name}|{step}'] = update.reshape(-1)[idx]
        variables.append(entry)

    zoo, config, _, num_classes, ignore = CASES[args.case]
    labels = np.stack(g['labels'])
    reference = dict(
        case=args.case, zoo_configuration=zoo, our_config=config,
        num_classes=num_classes, ignore_label=ignore, crop=CROP,
        steps=[{k: v for k, v in s.items() if k != 'seconds'}
               for s in steps],
        seconds_per_step=[round(s['seconds'], 2) for s in steps],
        flags=g['flags'],
        batch=dict(
            made_by=f'tests/tf_values.make_batch({CROP}, {num_classes}, '
            f'{ignore})', image='tf_values.make_image(129, 129), twice',
            fed_as='float32 RGB 0..255 [2,H,W,3], int32 labels [2,H,W,1]',
            ignored_fraction=[float(np.mean(lab == ignore))
                              for lab in labels],
            classes_present=[sorted(int(c) for c in np.unique(lab)
                                    if c != ignore) for lab in labels]),
        dropout_patch=dict(
            calls=g['dropout_calls'],
            note='model.py / dense_prediction_cell.py module global slim -> '
            'a proxy whose dropout returns its input (keep_prob 1.0); a port '
            'compares with dropout_ratio 0'),
        initial_values='tests/tf_values.train_variable_value; Momentum and '
        'global_step 0',
        stored_run=f'intra_op_parallelism_threads={args.threads[0]}, '
        'inter_op_parallelism_threads=1, oneDNN as TF defaults',
        self_agreement=self_agreement,
        samples=f'updates.npz <name>|<step>: the update (after - initial) '
        f'at tf_values.sample_indices(name, size) ({tf_values.NUM_SAMPLES} '
        'name-seeded flat indices, all of a smaller tensor)',
        versions=dict(tensorflow=tf.__version__,
                      tf_slim=getattr(tf_slim, '__version__', '1.1.0'),
                      numpy=np.__version__),
        variables=variables)
    out = args.out or osp.join(REPO, 'tests', 'tf_train', args.case)
    os.makedirs(out, exist_ok=True)
    with tempfile.NamedTemporaryFile('wb', dir=out, suffix='.npz',
                                     delete=False) as f:
        np.savez_compressed(f, **updates)
    os.chmod(f.name, 0o644)
    os.replace(f.name, osp.join(out, 'updates.npz'))
    with open(osp.join(out, 'reference.json'), 'w') as f:
        json.dump(reference, f, indent=1, sort_keys=True)
        f.write('\n')
    print(f'wrote {out} ({len(variables)} variables)')


if __name__ == '__main__':
    main()
