"""TensorFlow's checkpoint reader, measured as
:func:`tools.benchmarks._checkpoint.read_child` measures ours.

    TF_PYTHON tools/benchmarks/_tf_read.py '{"src": ..., "what": ...}'

Needs nothing but TensorFlow (a venv with only tensorflow-cpu will do), so
it imports nothing of ours; prints one JSON line.
"""
import json
import sys
import time


def status(field):
    with open('/proc/self/status') as f:
        return int(next(ln.split()[1] for ln in f if ln.startswith(field)))


def main(spec):
    import tensorflow as tf
    kept, count = [], 0
    with open('/proc/self/clear_refs', 'w') as f:
        f.write('5')
    rss, wall = status('VmRSS'), time.perf_counter()
    cpu = time.process_time()
    reader = tf.train.load_checkpoint(spec['src'])
    for name in reader.get_variable_to_shape_map():
        # 'needed' skips the Momentum slots and global_step
        if spec['what'] != 'needed' or not (name.endswith('/Momentum')
                                            or name == 'global_step'):
            value, count = reader.get_tensor(name), count + 1
            kept += [value] if spec['what'] == 'keep' else []
    print(json.dumps(dict(seconds=time.perf_counter() - wall, tensors=count,
                          cpu=time.process_time() - cpu,
                          version=tf.__version__,
                          rss_mib=(status('VmHWM') - rss) / 1024)))


if __name__ == '__main__':
    main(json.loads(sys.argv[1]))
