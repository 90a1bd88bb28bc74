"""Make a compact TF reference of an 8-bit (quantize.md) DeepLab model:
TF DeepLab's eval graph rewritten by ``contrib.quantize.create_eval_graph``
(what ``eval.py`` / ``export_model.py`` build with
``--quantize_delay_step=0``), for tests/tf_eval/<case>/.

Runs with TensorFlow 2.15 (``tf.compat.v1``) + tf_slim, outside the
project, like ``train_reference.py``::

    $TF_PY tools/tf_references/quant_reference.py CASE --tf-code DIR \
        --quantize-code QDIR [--out tests/tf_eval/CASE]

``--quantize-code`` holds TF 1.15's ``contrib/quantize`` and
``contrib/graph_editor`` (pure Python graph rewriting, absent from TF 2.x;
e.g. from the tensorflow-cpu 1.15.0 wheel's ``tensorflow_core/contrib/``)
as the package ``tf_contrib/{quantize,graph_editor}``, with only their
imports of each other renamed from ``tensorflow.contrib.*``.

The graph: ``model.multi_scale_logits(is_training=False)`` at scale 1.0
(``predict_labels``' single-scale path), then ``create_eval_graph()``
(batch norms folded into the weights, ``weights_quant`` on the folded
weights, ``act_quant`` after each activation, ``post_activation_bypass_quant``
after residual sums). Every variable gets
``tests/tf_values.model_variable_value(name, shape)`` (the float ones
``variable_value``, the range ends ``quant_range_value``).

Stored: ``variables.tsv`` (every variable of the rewritten graph, name and
shape, TF's order) and ``logits.npz`` (per size HxW: ``image_HxW`` uint8,
``logits_HxW`` at the output stride, ``upsampled_HxW`` resized to the image
as ``predict_labels`` does, ``float_logits_HxW`` of the same graph before
the rewrite).
"""
import argparse
import os
import os.path as osp
import sys

HERE = osp.dirname(osp.abspath(__file__))
REPO = osp.dirname(osp.dirname(HERE))
sys.path.insert(0, osp.join(REPO, 'tests'))
sys.path.insert(0, HERE)
import tf_values  # noqa: E402

SIZES = ((65, 65), (57, 71))  # aligned to OS 16 (+1), odd
# case -> (zoo row, our config, eval.py / common.py flags, classes)
CASES = {
    'mobilenetv2_dm05_voc_8bit': (
        'mobilenetv2_dm05_coco_voc_trainaug_8bit',
        'configs/deeplabv3/deeplabv3_mobilenetv2-dm05-int8-d16_4xb4-30k_'
        'voc12aug-513x513.py',
        ['--model_variant=mobilenet_v2', '--depth_multiplier=0.5'], 21),
    'mobilenetv2_voc_8bit': (
        'mobilenetv2_coco_voc_trainaug_8bit',
        'configs/deeplabv3/deeplabv3_mobilenetv2-int8-d16_4xb4-30k_voc12aug-'
        '513x513.py', ['--model_variant=mobilenet_v2'], 21),
}


def build(case, size, quantize=True):
    """The eval graph of CASE at one image size; returns (graph, image
    placeholder, logits, upsampled)."""
    import tensorflow.compat.v1 as tf
    from deeplab import common, model
    from tf_contrib.quantize.python import quantize_graph
    flags = CASES[case][2]  # output stride 16: ModelOptions below
    common.FLAGS(['eval.py'] + flags)
    graph = tf.Graph()
    with graph.as_default():
        image = tf.placeholder(tf.float32, [1, *size, 3])
        options = common.ModelOptions({common.OUTPUT_TYPE: CASES[case][3]},
                                      crop_size=list(size),
                                      atrous_rates=None, output_stride=16)
        logits = model.multi_scale_logits(
            image, options, image_pyramid=None, is_training=False,
            fine_tune_batch_norm=False)[common.OUTPUT_TYPE][
                model.MERGED_LOGITS_SCOPE]
        upsampled = tf.image.resize_bilinear(logits, size,
                                             align_corners=True)
        if quantize:
            quantize_graph.create_eval_graph()
    return graph, image, logits, upsampled


def run(case, size, quantize=True):
    import numpy as np
    import tensorflow.compat.v1 as tf
    graph, image, logits, upsampled = build(case, size, quantize)
    with graph.as_default():
        variables = tf.global_variables()
        config = tf.ConfigProto(intra_op_parallelism_threads=1,
                                inter_op_parallelism_threads=1)
        with tf.Session(config=config) as sess:
            sess.run([v.initializer for v in variables],
                     {v.initializer.inputs[1]: tf_values.model_variable_value(
                         v.op.name, v.shape.as_list()) for v in variables})
            pixels = tf_values.make_image(*size)
            out = sess.run([logits, upsampled],
                           {image: pixels.astype(np.float32)})
        ops = [op for op in graph.get_operations()
               if op.type.startswith('FakeQuant')]
    names = [(v.op.name, tuple(v.shape.as_list())) for v in variables]
    return names, pixels, out, len(ops)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('case', choices=sorted(CASES))
    parser.add_argument('--tf-code', required=True)
    parser.add_argument('--quantize-code', required=True)
    parser.add_argument('--out')
    args = parser.parse_args()
    sys.path.insert(0, osp.abspath(args.quantize_code))
    import train_reference
    train_reference.setup_tf(args.tf_code)
    import numpy as np
    out = args.out or osp.join(REPO, 'tests', 'tf_eval', args.case)
    os.makedirs(out, exist_ok=True)
    arrays = {}
    for size in SIZES:
        key = f'{size[0]}x{size[1]}'
        names, pixels, (logits, upsampled), fake_quants = run(args.case,
                                                              size)
        _, _, (float_logits, _), _ = run(args.case, size, quantize=False)
        arrays.update({f'image_{key}': pixels, f'logits_{key}': logits,
                       f'upsampled_{key}': upsampled,
                       f'float_logits_{key}': float_logits})
        print(f'{args.case} {key}: {fake_quants} FakeQuant ops, logits '
              f'{logits.shape}, max |quantised - float| '
              f'{np.abs(logits - float_logits).max():.4f}')
    with open(osp.join(out, 'variables.tsv'), 'w') as f:
        for name, shape in names:
            f.write(f'{name}\t{",".join(map(str, shape))}\n')
    np.savez_compressed(osp.join(out, 'logits.npz'), **arrays)


if __name__ == '__main__':
    main()
