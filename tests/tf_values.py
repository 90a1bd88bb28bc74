"""Deterministic values for the TF training references (numpy only).

The same functions feed ``tools/tf_references/train_reference.py`` (run with
TensorFlow, outside the project) and the tests that repeat its training
steps with our tools, so a reference stores only what TF computed, never
its inputs. The value rules are those of ``shared/tf_deeplab/weights.py``
(a variable's value depends on its name alone), repeated here because the
stored references must be checkable on a clone without ``../shared``.
"""
import math
import zlib

import numpy as np

# weights.train_variable_value: every BN's gamma x 0.3 and beta + 3, which
# keeps a randomly initialised network in the linear range of its ReLUs in
# training mode (shared/tf_deeplab/README.md, "Training").
TRAIN_GAMMA_SCALE = 0.3
TRAIN_BETA_SHIFT = 3.0
# Updates stored per tensor: all of them up to this size, else this many at
# name-seeded flat indices (sample_indices).
NUM_SAMPLES = 256


def rng_for(name):
    return np.random.default_rng(zlib.crc32(name.encode('utf-8')))


def variable_value(name, shape):
    """weights.variable_value (float32): conv weights N * sqrt(1 / fan_in),
    depthwise N * sqrt(1 / (kh * kw)), gamma U(0.5, 1.5), beta N * 0.1,
    moving_mean N * 0.1, moving_variance U(0.5, 1.5), biases N * 0.1."""
    shape = tuple(int(s) for s in shape)
    rng = rng_for(name)
    leaf = name.rsplit('/', 1)[-1]
    if leaf == 'weights':
        fan_in = int(np.prod(shape[:-1])) if len(shape) > 1 else shape[0]
        v = rng.standard_normal(shape) * math.sqrt(1.0 / fan_in)
    elif leaf == 'depthwise_weights':
        v = rng.standard_normal(shape) * math.sqrt(1.0 / (shape[0] * shape[1]))
    elif leaf in ('gamma', 'moving_variance'):
        v = rng.uniform(0.5, 1.5, size=shape)
    elif leaf in ('beta', 'moving_mean', 'biases'):
        v = rng.standard_normal(shape) * 0.1
    else:
        raise ValueError(f'no rule for variable {name!r}')
    return np.asarray(v, dtype=np.float32)


# contrib.quantize's range variables: <scope>/<kind>/min|max.
QUANT_KINDS = ('weights_quant', 'act_quant', 'post_activation_bypass_quant')


def quant_range_value(name):
    """A fake-quantisation range end (float32 scalar) from its name alone:
    min < 0 < max, of a plausible size for the tensor it clips (folded
    weights: depthwise +-U(0.8, 1.6), others +-U(0.2, 0.6); ReLU/ReLU6
    outputs [-U(0.01, 0.2), U(3, 6)]; linear outputs (MobileNetV2's
    ``project``, the residual sums) +-U(2, 5); the logits +-U(0.5, 1.5))."""
    scope, kind, end = name.rsplit('/', 2)
    if kind not in QUANT_KINDS or end not in ('min', 'max'):
        raise ValueError(f'no rule for variable {name!r}')
    rng = rng_for(name)
    if kind == 'weights_quant':
        low, high = (0.8, 1.6) if scope.endswith('depthwise') else (0.2, 0.6)
        v = rng.uniform(low, high) * (-1 if end == 'min' else 1)
    elif scope.startswith('logits/'):
        v = rng.uniform(0.5, 1.5) * (-1 if end == 'min' else 1)
    elif kind == 'post_activation_bypass_quant' or scope.endswith(
            '/project'):
        v = rng.uniform(2.0, 5.0) * (-1 if end == 'min' else 1)
    else:
        v = -rng.uniform(0.01, 0.2) if end == 'min' else rng.uniform(3, 6)
    return np.float32(v)


def model_variable_value(name, shape):
    """:func:`variable_value`, or :func:`quant_range_value` for the range
    variables of a quantised (8-bit) model."""
    parts = name.split('/')
    if len(parts) > 2 and parts[-2] in QUANT_KINDS:
        return quant_range_value(name).reshape(shape)
    return variable_value(name, shape)


def train_variable_value(name, shape):
    """The initial value of a training reference's variable."""
    v = variable_value(name, shape)
    leaf = name.rsplit('/', 1)[-1]
    if leaf == 'gamma':
        v = v * np.float32(TRAIN_GAMMA_SCALE)
    elif leaf == 'beta':
        v = v + np.float32(TRAIN_BETA_SHIFT)
    return v


def sample_indices(name, size, count=NUM_SAMPLES):
    """Sorted flat indices at which a tensor's update is stored."""
    if size <= count:
        return np.arange(size)
    rng = rng_for(name + '#samples')
    return np.sort(rng.choice(size, count, replace=False))


def make_image(height, width):
    """weights.make_image: a smooth pseudo-natural uint8 RGB image [1, H, W,
    3] (gradient, low-frequency texture, soft coloured blobs, noise)."""
    rng = rng_for('image_%dx%d' % (height, width))
    y, x = np.mgrid[0:height, 0:width].astype(np.float64)
    y /= max(height, width)
    x /= max(height, width)
    img = np.empty((height, width, 3))
    for c, (a, b) in enumerate([(90., 110.), (120., 60.), (170., -40.)]):
        img[..., c] = a + b * y + 25. * x
    for _ in range(6):
        fx, fy = rng.uniform(0.5, 5.0, size=2)
        phase = rng.uniform(0, 2 * math.pi)
        amp = rng.uniform(4., 16.)
        col = rng.uniform(-1., 1., size=3)
        img += amp * col * np.sin(2 * math.pi * (fx * x + fy * y) +
                                  phase)[..., None]
    for _ in range(5):
        cx, cy = rng.uniform(0.1, 0.9, size=2) * np.array(
            [width, height]) / max(height, width)
        rx, ry = rng.uniform(0.06, 0.25, size=2)
        col = rng.uniform(0., 255., size=3)
        d = ((x - cx) / rx)**2 + ((y - cy) / ry)**2
        mask = 1. / (1. + np.exp(np.clip((d - 1.) * 10., -50., 50.)))
        shade = 1. - 0.25 * np.clip((y - cy) / ry, -1, 1)
        blob = col * shade[..., None]
        img = img * (1 - mask[..., None]) + blob * mask[..., None]
    img += rng.normal(0., 2.0, size=img.shape)
    return np.clip(np.rint(img), 0, 255).astype(np.uint8)[None]


def make_label(height, width, index, classes, background, ignore):
    """Label map ``index`` of a batch (uint8 [H, W]): ``background``, six
    rotated ellipses of classes drawn from ``classes``, and ``ignore`` on
    both sides of every class change (TF's ignored boundary bands)."""
    rng = rng_for(f'label_{height}x{width}_{index}')
    y, x = np.mgrid[0:height, 0:width].astype(np.float64)
    label = np.full((height, width), background, np.int64)
    for _ in range(6):
        cls = int(rng.choice(classes))
        cy, cx = rng.uniform(0.15, 0.85, size=2) * (height, width)
        ry, rx = rng.uniform(0.1, 0.35, size=2) * (height, width)
        t = rng.uniform(0, math.pi)
        u = ((x - cx) * math.cos(t) + (y - cy) * math.sin(t)) / rx
        v = (-(x - cx) * math.sin(t) + (y - cy) * math.cos(t)) / ry
        label[u * u + v * v <= 1] = cls
    edge = np.zeros_like(label, bool)
    edge[:, 1:] |= label[:, 1:] != label[:, :-1]
    edge[:, :-1] |= label[:, 1:] != label[:, :-1]
    edge[1:] |= label[1:] != label[:-1]
    edge[:-1] |= label[1:] != label[:-1]
    label[edge] = ignore
    return label.astype(np.uint8)


def make_batch(size, num_classes, ignore):
    """The references' fixed batch: one image twice (shared README: with two
    different images image pooling's BN turns float32 rounding into large
    gradient differences) and two different label maps. Classes 1.. on
    background 0 (1 when 0 is the ignore label, as ADE20K's)."""
    image = make_image(size, size)[0]
    background = 1 if ignore == 0 else 0
    classes = [c for c in range(background + 1, num_classes) if c != ignore]
    labels = [make_label(size, size, i, classes, background, ignore)
              for i in range(2)]
    return [image, image], labels
