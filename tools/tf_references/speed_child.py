"""TensorFlow's side of ``tools/benchmarks/vs_tf.py``: time TF DeepLab's own
training step or evaluation forward, in an interpreter with TensorFlow.

    $TF_PY tools/tf_references/speed_child.py --tf-code DIR JSON

JSON: ``{"mode": "train" | "eval", "case": "xception65_voc", "size": 513,
"batch": 2, "threads": 2, "steps": 3}``. train: the graph of TF DeepLab's
``train.main()`` (train_reference.build: clone, loss, regularization,
gradient multipliers, momentum, BN updates) on a fixed random batch; eval:
``model.predict_labels`` (logits, bilinear resize to the image, argmax), as
TF's eval.py / vis.py run it at one scale, on one image. Both at the zoo
case's flags, intra-op threads = ``threads``, one untimed step first.
Prints one JSON line: the seconds of each timed step, the build and first
step's seconds, the TensorFlow version.
"""
import argparse
import json
import os.path as osp
import sys
import time

sys.path.insert(0, osp.dirname(osp.abspath(__file__)))
import train_reference as ref  # noqa: E402


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--tf-code', required=True)
    parser.add_argument('spec')
    args = parser.parse_args()
    spec = json.loads(args.spec)
    tf = ref.setup_tf(args.tf_code)
    import numpy as np
    size, batch, mode = spec['size'], spec.get('batch', 2), spec['mode']
    rng = np.random.default_rng(0)
    _, _, flags, num_classes, ignore = ref.CASES[spec['case']]
    start = time.perf_counter()
    if mode == 'train':
        images = [rng.integers(0, 256, (size, size, 3)) for _ in range(batch)]
        labels = [rng.integers(0, num_classes, (size, size))
                  for _ in range(batch)]
        g = ref.build(spec['case'], args.tf_code, crop=size,
                      batch=(images, labels))
        graph, fetch, init = g['graph'], g['train'], g['init']
    else:
        from deeplab import common, model, train
        graph = tf.Graph()
        train.FLAGS(['train.py'] + [f.format(tf_code=args.tf_code)
                                    for f in flags])
        with graph.as_default():
            options = common.ModelOptions(
                outputs_to_num_classes={common.OUTPUT_TYPE: num_classes},
                crop_size=[size, size],
                atrous_rates=train.FLAGS.atrous_rates, output_stride=16)
            image = tf.constant(rng.integers(0, 256, (1, size, size, 3)),
                                tf.float32)
            fetch = model.predict_labels(image, options)[common.OUTPUT_TYPE]
            init = tf.global_variables_initializer()
    config = tf.ConfigProto(allow_soft_placement=True,
                            intra_op_parallelism_threads=spec['threads'],
                            inter_op_parallelism_threads=1)
    with tf.Session(graph=graph, config=config) as sess:
        sess.run(init)
        sess.run(fetch)  # graph optimisation, first allocation
        build_s = time.perf_counter() - start
        seconds = []
        for _ in range(spec.get('steps', 3)):
            t = time.perf_counter()
            sess.run(fetch)
            seconds.append(time.perf_counter() - t)
    print(json.dumps(dict(seconds=seconds, build_s=build_s,
                          version=tf.__version__)), flush=True)


if __name__ == '__main__':
    main()
