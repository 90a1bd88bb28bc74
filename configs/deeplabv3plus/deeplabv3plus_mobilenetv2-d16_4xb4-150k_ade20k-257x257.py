# The zoo's mobilenetv2_ade20k_train: MobileNetV2 (depth multiplier 1.0) at
# output stride 16 with image pooling + 1x1 ASPP branch (no atrous branch)
# and, unlike the VOC / Cityscapes MobileNetV2 models, the decoder, fed by
# TF's 'layer_4/depthwise_output' (the depthwise output of expanded_conv_2,
# 144 channels, stride 4). Its inputs are resized to a longer side of 257
# (the zoo: "input size 257x257"), for training, testing and TTA alike.
_base_ = [
    '../_base_/models/deeplabv3_mobilenetv2.py',
    '../_base_/datasets/ade20k_513x513.py', '../_base_/default_runtime.py',
    '../_base_/schedules/schedule_150k.py'
]
crop_size = (257, 257)


def _at_257(pipeline):
    """The data set's pipeline with its resizes to 513 and its 513x513 crop
    at 257."""
    if isinstance(pipeline, (list, tuple)):
        return [_at_257(t) for t in pipeline]
    if not isinstance(pipeline, dict):
        return pipeline
    out = {}
    for key, value in pipeline.items():
        if (key in ('scale', 'crop_size')
                and isinstance(value, (list, tuple))
                and tuple(value) == (513, 513)):
            out[key] = (257, 257)
        elif key in ('min_size', 'max_size') and value == 513:
            out[key] = 257  # TFRandomScale's resize_to_range
        else:
            out[key] = _at_257(value)
    return out


train_pipeline = _at_257(_base_.train_pipeline)
test_pipeline = _at_257(_base_.test_pipeline)
tta_pipeline = _at_257(_base_.tta_pipeline)
train_dataloader = dict(dataset=dict(pipeline=train_pipeline))
val_dataloader = dict(dataset=dict(pipeline=test_pipeline))
test_dataloader = val_dataloader
# Evaluation pads bottom/right to (257, 257) as TF DeepLab's eval does
# (127.5 -> 0 after normalisation), which the image pooling averages in.
data_preprocessor = dict(size=crop_size, test_cfg=dict(size=(257, 257)))
model = dict(
    data_preprocessor=data_preprocessor,
    decode_head=dict(
        c1_in_channels=144,
        c1_channels=48,
        c1_in_index=0,
        decoder_use_separable_conv=True,
        num_classes=150))
# TTA resizes as the evaluation does: TF's resize_to_range at 257.
tta_model = dict(resize_to_range=dict(min_size=257, max_size=257))
