"""TF variable names and shapes of the zoo's models, generated from the
official rules (shared/tf_deeplab/README.md: MobileNetV2, Dense Prediction
Cell, Xception items 5-6 and 8-10) independently of deeplabplus_mm.archs, so
that the tests write TF-format checkpoints of every family themselves (no
TF reference files needed; ``test_generated_names_are_tensorflows`` checks
the generator against the variables TF created where references exist).
Each function returns a list of ``(name, shape)`` in TF's layout."""

BN = ('beta', 'gamma', 'moving_mean', 'moving_variance')


def conv(scope, kh, kw, cin, cout):
    """slim.conv2d + batch_norm: weights [kh, kw, cin, cout] + BN."""
    return [(f'{scope}/weights', (kh, kw, cin, cout))] + [
        (f'{scope}/BatchNorm/{v}', (cout, )) for v in BN
    ]


def depthwise(scope, c):
    """slim.separable_conv2d(num_outputs=None) + BN: [3, 3, c, 1]."""
    return [(f'{scope}/depthwise_weights', (3, 3, c, 1))] + [
        (f'{scope}/BatchNorm/{v}', (c, )) for v in BN
    ]


def split_separable(scope, cin, cout):
    """utils.split_separable_conv2d: <scope>_depthwise, <scope>_pointwise."""
    return depthwise(f'{scope}_depthwise', cin) + conv(
        f'{scope}_pointwise', 1, 1, cin, cout)


# README MobileNetV2 item 3-4: the 18 layers' output channels.
MOBILENET_V2_DEPTHS = {
    1.0: [32, 16, 24, 24, 32, 32, 32, 64, 64, 64, 64, 96, 96, 96, 160, 160,
          160, 320],
    0.5: [16, 8, 12, 12, 16, 16, 16, 32, 32, 32, 32, 48, 48, 48, 80, 80, 80,
          160],
}


def mobilenet_v2(depth_multiplier):
    """MobilenetV2/Conv + expanded_conv .. expanded_conv_16 (no Conv_1):
    block 0 has no expand conv, the others expand to 6 x their input
    (already a multiple of 8 for both multipliers)."""
    depths = MOBILENET_V2_DEPTHS[depth_multiplier]
    names = conv('MobilenetV2/Conv', 3, 3, 3, depths[0])
    for k in range(17):
        scope = 'MobilenetV2/expanded_conv' + (f'_{k}' if k else '')
        cin, cout = depths[k], depths[k + 1]
        width = cin if k == 0 else 6 * cin
        if k:
            names += conv(f'{scope}/expand', 1, 1, cin, width)
        names += depthwise(f'{scope}/depthwise', width)
        names += conv(f'{scope}/project', 1, 1, width, cout)
    return names


# README Xception item 6: (scope, depths, units, skip) per block.
_EXIT = [('exit_flow/block1', (728, 1024, 1024), 1, 'conv'),
         ('exit_flow/block2', (1536, 1536, 2048), 1, 'none')]


def _blocks(entry_depths, middle_units):
    return [(f'entry_flow/block{i}', (depth, ) * 3, 1, 'conv')
            for i, depth in enumerate(entry_depths, 1)
            ] + [('middle_flow/block1', (728, ) * 3, middle_units, 'sum')
                 ] + _EXIT


XCEPTION_BLOCKS = {
    41: _blocks((128, 256, 728), 8),
    65: _blocks((128, 256, 728), 16),
    71: _blocks((128, 256, 256, 728, 728), 16),
}


def xception(arch):
    root = f'xception_{arch}'
    names = conv(f'{root}/entry_flow/conv1_1', 3, 3, 3, 32) + conv(
        f'{root}/entry_flow/conv1_2', 3, 3, 32, 64)
    channels = 64
    for scope, depths, units, skip in XCEPTION_BLOCKS[arch]:
        for u in range(1, units + 1):
            unit = f'{root}/{scope}/unit_{u}/xception_module'
            unit_in = channels
            for i, depth in enumerate(depths, 1):
                names += split_separable(f'{unit}/separable_conv{i}',
                                         channels, depth)
                channels = depth
            if skip == 'conv':
                names += conv(f'{unit}/shortcut', 1, 1, unit_in, channels)
    return names


def image_pooling_aspp0(cin):
    """model.extract_features without atrous rates: image_pooling, aspp0,
    concat_projection of the two."""
    return (conv('image_pooling', 1, 1, cin, 256) +
            conv('aspp0', 1, 1, cin, 256) +
            conv('concat_projection', 1, 1, 512, 256))


# core/dense_prediction_cell_branch5_top1_cityscapes.json: branch inputs.
DPC_INPUTS = (-1, 0, 1, 0, 0)


def dpc(cin):
    names = []
    for i, source in enumerate(DPC_INPUTS):
        names += split_separable(f'meta_architecture/branch{i}',
                                 cin if source < 0 else 256, 256)
    return names + conv('meta_architecture/concat_projection', 1, 1,
                        256 * len(DPC_INPUTS), 256)


def decoder(c1_in):
    """refine_by_decoder: feature_projection0 (48) and two separable 256
    convs on [256 + 48]."""
    return (conv('decoder/feature_projection0', 1, 1, c1_in, 48) +
            split_separable('decoder/decoder_conv0', 304, 256) +
            split_separable('decoder/decoder_conv1', 256, 256))


def logits(num_classes):
    return [('logits/semantic/weights', (1, 1, 256, num_classes)),
            ('logits/semantic/biases', (num_classes, ))]


def aspp(cin, rates=3):
    """model.extract_features with atrous rates and separable ASPP:
    image_pooling, aspp0 (1x1), aspp1..3 (separable), concat_projection."""
    names = conv('image_pooling', 1, 1, cin, 256) + conv(
        'aspp0', 1, 1, cin, 256)
    for i in range(1, rates + 1):
        names += split_separable(f'aspp{i}', cin, 256)
    return names + conv('concat_projection', 1, 1, 256 * (rates + 2), 256)


def xception_deeplabv3plus(arch=65, num_classes=21):
    """The zoo's Xception DeepLab v3+ (ASPP 6/12/18, decoder at OS 4)."""
    return (xception(arch) + aspp(2048) + decoder(256) +
            logits(num_classes))


def value(name, shape):
    """A variable's value from its name alone (float32): the rules of
    ``shared/tf_deeplab/weights.py`` (:mod:`tf_values`); ``/Momentum``
    slots N(0, 1e-6)."""
    import numpy as np

    import tf_values
    if name.endswith('/Momentum'):
        rng = tf_values.rng_for(name)
        return (rng.standard_normal(shape) * 1e-3).astype(np.float32)
    return tf_values.variable_value(name, shape)


def values(names, step=1000, momentum=True):
    """name -> array for ``names``, plus global_step and (``momentum``) a
    Momentum slot per trainable variable, as a training run leaves a
    checkpoint."""
    import numpy as np

    from tools.benchmarks._checkpoint import trainable
    tensors = {'global_step': np.asarray(step, np.int64)}
    for name, shape in names:
        tensors[name] = value(name, shape)
        if momentum and trainable(name):
            tensors[f'{name}/Momentum'] = value(f'{name}/Momentum', shape)
    return tensors


def imagenet_classifier(family):
    """What an ImageNet classifier checkpoint holds beyond DeepLab's backbone
    (the converter skips it): Xception's 1001-way ``logits``; slim
    MobileNetV2's 1280-channel ``Conv_1`` and ``Logits``."""
    if family.startswith('xception'):
        return [(f'{family}/logits/weights', (1, 1, 2048, 1001)),
                (f'{family}/logits/biases', (1001, ))]
    cin = MOBILENET_V2_DEPTHS[1.0 if family == 'mobilenet_v2' else 0.5][-1]
    return conv('MobilenetV2/Conv_1', 1, 1, cin, 1280) + [
        ('MobilenetV2/Logits/Conv2d_1c_1x1/weights', (1, 1, 1280, 1001)),
        ('MobilenetV2/Logits/Conv2d_1c_1x1/biases', (1001, ))]
