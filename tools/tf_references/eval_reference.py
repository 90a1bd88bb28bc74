"""Make a compact TF evaluation reference: TF DeepLab's own eval-mode logits
for one model-zoo family (tests/tf_eval/<case>/).

Runs with TensorFlow (2.15, ``tf.compat.v1`` graph mode) + tf_slim in an
interpreter of its own; the project never imports TensorFlow::

    TF_PY=/path/to/tf-venv/bin/python
    $TF_PY tools/tf_references/eval_reference.py CASE \
        --tf-code DIR [--quantize-code QDIR] [--out tests/tf_eval/CASE]

``--tf-code`` is the ported official code (see train_reference.py). What
runs is ``model.multi_scale_logits(is_training=False,
fine_tune_batch_norm=False)``, as ``model.predict_labels`` (``eval.py``)
calls it, with ``common.FLAGS`` set from the case's flags, ``crop_size``
equal to the image size (eval.py pads images to the crop size; here there is
no padding), every variable set to ``tests/tf_values.variable_value`` and
the image ``tests/tf_values.make_image`` at each of the case's sizes.

8-bit cases (``quantize``, quantize.md's checkpoints): the graph is then
rewritten by ``contrib.quantize.create_eval_graph()``, as ``eval.py`` and
``export_model.py`` do with ``--quantize_delay_step=0`` (batch norms folded
into the weights, ``weights_quant`` / ``act_quant`` /
``post_activation_bypass_quant`` fake quantisation), and the range
variables get ``tf_values.quant_range_value``. TF 2.x has no
``contrib``: ``--quantize-code`` holds TF 1.15's ``contrib/quantize`` and
``contrib/graph_editor`` (pure Python; e.g. from the tensorflow-cpu 1.15.0
wheel's ``tensorflow_core/contrib/``) as the package
``tf_contrib/{quantize,graph_editor}``, with only their imports of each
other renamed from ``tensorflow.contrib.*``. Such cases also store the
logits of the same graph without the rewrite (``float_logits_HxW``).

Stored: ``variables.tsv`` (every global variable but ``global_step``: name
and shape, in TF's creation order), ``logits.npz`` (per size ``HxW``:
``logits_HxW``, the merged logits at the model's output resolution
(before ``predict_labels`` resizes them to the image), NHWC; ``<key>_HxW``
for each extra graph tensor the case names) and ``reference.json`` (case, flags, sizes, TF version,
the case's ``cfg_options`` for our config, and TF's agreement with itself:
the max |diff| between 1 and 2 intra-op threads). The test regenerates the image and the weights from the same
rules, so nothing but TF's outputs is stored.
"""
import argparse
import json
import os
import os.path as osp
import sys

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
sys.path.insert(0, osp.join(REPO, 'tests'))
sys.path.insert(0, osp.dirname(osp.abspath(__file__)))
import tf_values  # noqa: E402
from train_reference import setup_tf  # noqa: E402

# model_zoo.md's MobileNetV3 flags, but an image pooling window that fits
# small images (33,65 at OS 32: 2x3; the zoo's 769,769: 25x25): the test
# gives the config the same through the case's cfg_options.
MNV3_FLAGS = [
    '--image_pooling_crop_size=33,65', '--image_pooling_stride=4,5',
    '--add_image_level_feature=1', '--aspp_convs_filters=128',
    '--aspp_with_concat_projection=0',
    '--aspp_with_squeeze_and_excitation=1', '--decoder_use_sum_merge=1',
    '--decoder_filters=19', '--decoder_output_is_logits=1',
    '--image_se_uses_qsigmoid=1', '--decoder_output_stride=8']
MNV3_CFG_OPTIONS = {'model.decode_head.image_pooling_crop_size': [33, 65]}
# case -> description, our config, common.py flags (``{tf_code}`` expands),
# output stride, number of classes, image sizes (H, W), extra graph tensors
# to store (name without ':0' -> stored key), cfg_options that give our
# config the case's flags where they differ from the shipped ones; or, with
# ``network: 'backbone'``, feature_extractor.extract_features alone (stored
# as ``features_HxW`` and ``end_points``: TF end point -> stored key) for a
# backbone whose head is not built here (``backbone``: our backbone's
# config instead of ``config``).
CASES = {
    'mobilenetv2_voc_os16': dict(
        description='mobilenetv2_coco_voc_trainaug (DeepLab v3, OS 16): '
        'checks this script against the shared references',
        config='configs/deeplabv3/deeplabv3_mobilenetv2-d16_4xb4-30k_'
        'voc12aug-513x513.py',
        flags=['--model_variant=mobilenet_v2'],
        output_stride=16, num_classes=21, sizes=[(65, 65), (71, 93)]),
    'mobilenetv2_dm05_voc_os8': dict(
        description='mobilenetv2_dm05_coco_voc_trainval (DeepLab v3, '
        'depth multiplier 0.5, OS 8)',
        config='configs/deeplabv3/deeplabv3_mobilenetv2-dm05-d8_4xb4-30k_'
        'voc12aug-513x513.py',
        flags=['--model_variant=mobilenet_v2', '--depth_multiplier=0.5'],
        output_stride=8, num_classes=21, sizes=[(65, 65), (71, 93)]),
    'mobilenetv2_ade20k_os16': dict(
        description='mobilenetv2_ade20k_train (DeepLab v3+, decoder at OS '
        '4, 151 classes)',
        config='configs/deeplabv3plus/deeplabv3plus_mobilenetv2-d16_4xb4-'
        '150k_ade20k-257x257.py',
        flags=['--model_variant=mobilenet_v2', '--decoder_output_stride=4'],
        output_stride=16, num_classes=151, sizes=[(65, 65), (71, 93)]),
    'xception41_voc_os16': dict(
        description='xception41 PASCAL VOC (DeepLab v3+, OS 16, decoder '
        'at OS 4)',
        config='configs/deeplabv3plus/deeplabv3plus_xception41-d16_4xb4-'
        '30k_voc12aug-513x513.py',
        flags=['--model_variant=xception_41', '--atrous_rates=6',
               '--atrous_rates=12', '--atrous_rates=18',
               '--decoder_output_stride=4'],
        output_stride=16, num_classes=21, sizes=[(65, 65), (71, 93)]),
    'xception71_dpc_cityscapes_os16': dict(
        description='xception71_dpc_cityscapes_trainfine (Dense Prediction '
        'Cell, OS 16, decoder at OS 4)',
        config='configs/dpc/dpc_xception71-d16_4xb2-90k_cityscapes-'
        '769x769.py',
        flags=['--model_variant=xception_71', '--decoder_output_stride=4',
               '--dense_prediction_cell_json={tf_code}/deeplab/core/'
               'dense_prediction_cell_branch5_top1_cityscapes.json'],
        output_stride=16, num_classes=19, sizes=[(65, 65), (71, 93)]),
    'mobilenetv3_large_cityscapes': dict(
        description='mobilenetv3_large_cityscapes_trainfine (LR-ASPP, OS '
        '32, decoder at OS 8) with a 2x3 image pooling window '
        '(image_pooling_crop_size 33,65 at these small sizes; the zoo: '
        '769,769 -> 25x25) moved by the zoo\'s stride 4,5',
        config='configs/lraspp/lraspp_mobilenetv3-large-d32_4xb2-90k_'
        'cityscapes-769x769.py',
        flags=MNV3_FLAGS + ['--model_variant=mobilenet_v3_large_seg'],
        cfg_options=MNV3_CFG_OPTIONS,
        output_stride=32, num_classes=19, sizes=[(161, 225), (201, 283)],
        tensors={
            'MobilenetV3/Conv_1/hard_swish/mul_1': 'features',
            'MobilenetV3/expanded_conv_5/depthwise_output': 'low_level',
            'ResizeBilinear': 'gate'}),
    'mobilenetv3_small_cityscapes': dict(
        description='mobilenetv3_small_cityscapes_trainfine (as the Large '
        'case)',
        config='configs/lraspp/lraspp_mobilenetv3-small-d32_4xb2-90k_'
        'cityscapes-769x769.py',
        flags=MNV3_FLAGS + ['--model_variant=mobilenet_v3_small_seg'],
        cfg_options=MNV3_CFG_OPTIONS,
        output_stride=32, num_classes=19, sizes=[(161, 225), (201, 283)],
        tensors={
            'MobilenetV3/Conv_1/hard_swish/mul_1': 'features',
            'MobilenetV3/expanded_conv_2/depthwise_output': 'low_level',
            'ResizeBilinear': 'gate'}),
    'mobilenetv2_voc_8bit': dict(
        description='mobilenetv2_coco_voc_trainaug_8bit (quantize.md: '
        'DeepLab v3, OS 16, 8-bit fake quantisation)',
        config='configs/deeplabv3/deeplabv3_mobilenetv2-int8-d16_4xb4-30k_'
        'voc12aug-513x513.py',
        flags=['--model_variant=mobilenet_v2'], quantize=True,
        output_stride=16, num_classes=21, sizes=[(65, 65), (71, 93)]),
    'mobilenetv2_dm05_voc_8bit': dict(
        description='mobilenetv2_dm05_coco_voc_trainaug_8bit (quantize.md: '
        'DeepLab v3, depth multiplier 0.5, OS 16, 8-bit fake quantisation)',
        config='configs/deeplabv3/deeplabv3_mobilenetv2-dm05-int8-d16_4xb4-'
        '30k_voc12aug-513x513.py',
        flags=['--model_variant=mobilenet_v2', '--depth_multiplier=0.5'],
        quantize=True, output_stride=16, num_classes=21,
        sizes=[(65, 65), (71, 93)]),
    'resnet50beta_voc_os16': dict(
        description='resnet_v1_50_beta DeepLab v3+ PASCAL VOC (OS 16, '
        'multi-grid 1,2,4, ASPP 6/12/18, decoder at OS 4)',
        config='configs/deeplabv3plus/deeplabv3plus_resnet50-beta-d16_'
        '4xb4-30k_voc12aug-513x513.py',
        flags=['--model_variant=resnet_v1_50_beta', '--multi_grid=1',
               '--multi_grid=2', '--multi_grid=4', '--atrous_rates=6',
               '--atrous_rates=12', '--atrous_rates=18',
               '--decoder_output_stride=4'],
        output_stride=16, num_classes=21, sizes=[(65, 65), (71, 93)]),
    'resnet50beta_voc_os8': dict(
        description='resnet_v1_50_beta DeepLab v3+ PASCAL VOC (OS 8: '
        'block 3 at rate 2, block 4 at 4 x (1,2,4), ASPP 12/24/36)',
        config='configs/deeplabv3plus/deeplabv3plus_resnet50-beta-d8_'
        '4xb4-30k_voc12aug-513x513.py',
        flags=['--model_variant=resnet_v1_50_beta', '--multi_grid=1',
               '--multi_grid=2', '--multi_grid=4', '--atrous_rates=12',
               '--atrous_rates=24', '--atrous_rates=36',
               '--decoder_output_stride=4'],
        output_stride=8, num_classes=21, sizes=[(65, 65), (71, 93)]),
    'resnet101beta_voc_os16': dict(
        description='resnet_v1_101_beta DeepLab v3+ PASCAL VOC (OS 16, '
        'multi-grid 1,2,4, ASPP 6/12/18, decoder at OS 4)',
        config='configs/deeplabv3plus/deeplabv3plus_resnet101-beta-d16_'
        '4xb4-30k_voc12aug-513x513.py',
        flags=['--model_variant=resnet_v1_101_beta', '--multi_grid=1',
               '--multi_grid=2', '--multi_grid=4', '--atrous_rates=6',
               '--atrous_rates=12', '--atrous_rates=18',
               '--decoder_output_stride=4'],
        output_stride=16, num_classes=21, sizes=[(65, 65), (71, 93)]),
}
_EDGETPU = 'configs/deeplabv3/deeplabv3_mobilenetv3-edgetpu{}-d{}_4xb2-90k_' \
    'cityscapes-769x769.py'
_SLIM = ['--depth_multiplier=0.75', '--aspp_convs_filters=128']
for _os in (16, 32):
    for _slim in (False, True):
        CASES[f'edgetpu{"_slim" if _slim else ""}_cityscapes_os{_os}'] = dict(
            description=f'EdgeTPU-DeepLab{"-slim" if _slim else ""} '
            f'(model_zoo.md flags; DeepLab v3, no ASPP rates, no decoder), '
            f'OS {_os}',
            config=_EDGETPU.format('-dm075' if _slim else '', _os),
            flags=['--model_variant=mobilenet_edgetpu'] + (
                _SLIM if _slim else ['--aspp_convs_filters=256']),
            output_stride=_os, num_classes=19, sizes=[(65, 65), (71, 93)])
for _arch, _points in (('large', ('layer_4', 'layer_7', 'layer_13')),
                       ('small', ('layer_2', 'layer_4', 'layer_9'))):
    CASES[f'mobilenetv3_{_arch}_backbone_os16'] = dict(
        description=f'feature_extractor mobilenet_v3_{_arch}_seg at OS 16 '
        '(the backbone alone) and its decoder end points',
        config=None,
        backbone=dict(type='MobileNetV3TF', arch=_arch, output_stride=16),
        network='backbone',
        flags=[f'--model_variant=mobilenet_v3_{_arch}_seg'],
        output_stride=16, num_classes=19, sizes=[(65, 65), (71, 93)],
        end_points={f'{p}/depthwise_output': f'{p}_depthwise_output'
                    for p in _points})


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('case', choices=sorted(CASES))
    parser.add_argument('--tf-code', required=True,
                        help='folder with deeplab/ and nets/')
    parser.add_argument('--quantize-code',
                        help='folder with tf_contrib/ (8-bit cases)')
    parser.add_argument('--out', help='default: tests/tf_eval/CASE')
    return parser.parse_args()


def build(case, tf_code, size, quantize=False):
    """The eval graph of CASE at one image size (``quantize``: rewritten
    by ``create_eval_graph``)."""
    import tensorflow.compat.v1 as tf
    from deeplab import common, model
    spec = CASES[case]
    flags = [f.format(tf_code=tf_code) for f in spec['flags']]
    if 'atrous_rates' not in common.FLAGS:  # eval.py's flag, as it defines it
        common.flags.DEFINE_multi_integer('atrous_rates', None,
                                          'Atrous rates for ASPP.')
    common.FLAGS.unparse_flags()  # multi flags would append to a parse
    common.FLAGS(['eval_reference.py'] + flags)
    graph = tf.Graph()
    with graph.as_default():
        image = tf.placeholder(tf.float32, [1, size[0], size[1], 3])
        options = common.ModelOptions(
            outputs_to_num_classes={common.OUTPUT_TYPE: spec['num_classes']},
            crop_size=list(size),
            atrous_rates=common.FLAGS.atrous_rates,
            output_stride=spec['output_stride'])
        if spec.get('network') == 'backbone':
            # feature_extractor.extract_features as model.extract_features
            # calls it, without the head
            from deeplab.core import feature_extractor
            features, end_points = feature_extractor.extract_features(
                image, output_stride=options.output_stride,
                multi_grid=options.multi_grid,
                depth_multiplier=options.depth_multiplier,
                divisible_by=options.divisible_by,
                model_variant=options.model_variant, is_training=False,
                fine_tune_batch_norm=False)
            fetch = dict(features=features)
            fetch.update({key: end_points[name] for name, key in
                          spec.get('end_points', {}).items()})
        else:
            outputs = model.multi_scale_logits(
                image, options, image_pyramid=None, is_training=False,
                fine_tune_batch_norm=False)
            logits = outputs[common.OUTPUT_TYPE][model.MERGED_LOGITS_SCOPE]
            if quantize:
                from tf_contrib.quantize.python import quantize_graph
                quantize_graph.create_eval_graph()
            fetch = dict(logits=logits)
        variables = [v for v in tf.global_variables()
                     if v.op.name != 'global_step']
        for tensor, key in spec.get('tensors', {}).items():
            fetch[key] = graph.get_tensor_by_name(tensor + ':0')
    return graph, image, variables, fetch, flags


def run(case, tf_code, size, threads, quantize=False):
    import numpy as np
    import tensorflow.compat.v1 as tf
    graph, image, variables, fetch, flags = build(case, tf_code, size,
                                                  quantize)
    config = tf.ConfigProto(intra_op_parallelism_threads=threads,
                            inter_op_parallelism_threads=1)
    with tf.Session(graph=graph, config=config) as sess:
        values = {v.op.name: tf_values.model_variable_value(
            v.op.name, v.shape.as_list()) for v in variables}
        sess.run([v.initializer for v in variables],
                 {v.initializer.inputs[1]: values[v.op.name]
                  for v in variables})
        pixels = tf_values.make_image(*size).astype(np.float32)
        out = sess.run(fetch, {image: pixels})
    table = [(v.op.name, v.shape.as_list()) for v in variables]
    return table, out, flags


def main():
    args = parse_args()
    import numpy as np
    tf = setup_tf(args.tf_code)
    spec = CASES[args.case]
    quantize = spec.get('quantize', False)
    if quantize:
        if not args.quantize_code:
            sys.exit(f'{args.case} is an 8-bit case: give --quantize-code')
        sys.path.insert(0, osp.abspath(args.quantize_code))
    out_dir = args.out or osp.join(REPO, 'tests', 'tf_eval', args.case)
    arrays, agreement, table = {}, {}, None
    for size in spec['sizes']:
        key = '%dx%d' % size
        table, out, flags = run(args.case, args.tf_code, size, 1, quantize)
        _, again, _ = run(args.case, args.tf_code, size, 2, quantize)
        if quantize:
            out['float_logits'] = run(args.case, args.tf_code, size, 1)[1][
                'logits']
            again['float_logits'] = out['float_logits']
        agreement[key] = max(float(np.max(np.abs(out[k] - again[k])))
                             for k in out)
        for name, value in out.items():
            arrays[f'{name}_{key}'] = np.asarray(value, np.float32)
        print(f'{args.case} {key}: {next(iter(out.values())).shape}, '
              f'1 vs 2 threads max |diff| {agreement[key]:.3g}')
    os.makedirs(out_dir, exist_ok=True)
    # write to temporary names, then rename: no half-written reference
    tmp = osp.join(out_dir, '.partial')
    os.makedirs(tmp, exist_ok=True)
    with open(osp.join(tmp, 'variables.tsv'), 'w') as f:
        for name, shape in table:
            f.write('%s\t%s\n' % (name, ','.join(map(str, shape))))
    np.savez_compressed(osp.join(tmp, 'logits.npz'), **arrays)
    meta = dict(case=args.case, description=spec['description'],
                config=spec['config'], flags=spec['flags'],
                output_stride=spec['output_stride'],
                num_classes=spec['num_classes'], quantize=quantize,
                sizes=['%dx%d' % s for s in spec['sizes']],
                tensors=spec.get('tensors', {}),
                cfg_options=spec.get('cfg_options', {}),
                **{k: spec[k] for k in ('network', 'backbone', 'end_points')
                   if k in spec},
                tensorflow=tf.__version__,
                self_agreement=agreement)
    with open(osp.join(tmp, 'reference.json'), 'w') as f:
        json.dump(meta, f, indent=1)
    for name in ('variables.tsv', 'logits.npz', 'reference.json'):
        os.replace(osp.join(tmp, name), osp.join(out_dir, name))
    os.rmdir(tmp)
    print(f'wrote {out_dir}: {len(table)} variables')


if __name__ == '__main__':
    main()
