# DeepLab v3+ with TF DeepLab's ResNet-v1-50-beta at output stride 16
# (research/deeplab: model_variant=resnet_v1_50_beta, multi_grid 1,2,4 as
# common.py says for the zoo's resnet_v1_beta checkpoints, ASPP 6/12/18,
# decoder at OS 4 on block1/unit_2/bottleneck_v1/conv3).
# Backbone BN: eps 1e-5, momentum 1 - 0.95 (feature_extractor.extract_features
# for 'resnet'); head BN: eps 1e-5, momentum 1 - 0.9997.
norm_cfg = dict(type='SyncBN', eps=1e-5, momentum=0.05, requires_grad=True)
head_norm_cfg = dict(
    type='SyncBN', eps=1e-5, momentum=3e-4, requires_grad=True)
# The beta variants preprocess as Xception (feature_extractor._PREPROCESS_FN:
# x * (2 / 255) - 1 on RGB, not the ImageNet mean subtraction of slim's
# resnet_v1); padding with 0 here is TF's 127.5 (mean_pixel).
data_preprocessor = dict(
    type='SegDataPreProcessor',
    mean=[127.5, 127.5, 127.5],
    std=[127.5, 127.5, 127.5],
    bgr_to_rgb=True,
    pad_val=0,
    seg_pad_val=255)
model = dict(
    type='EncoderDecoder',
    data_preprocessor=data_preprocessor,
    backbone=dict(
        type='ResNetV1BetaTF',
        depth=50,
        output_stride=16,
        multi_grid=(1, 2, 4),
        out_indices=(0, -1),
        norm_cfg=norm_cfg,
        norm_eval=False,
        with_cp=False,
        # The TF model zoo's ImageNet checkpoint, converted with
        # tools/convert_tf_checkpoint.py --zoo resnet_v1_50_beta_imagenet.
        init_cfg=dict(
            type='Pretrained',
            checkpoint='checkpoints/resnet_v1_50_beta_imagenet.pth')),
    decode_head=dict(
        type='DeepLabV3PlusTFHead',
        in_channels=2048,
        in_index=1,
        channels=256,
        dilations=(1, 6, 12, 18),
        c1_in_channels=256,
        c1_channels=48,
        c1_in_index=0,
        aspp_with_separable_conv=True,
        decoder_use_separable_conv=True,
        add_image_level_feature=True,
        dropout_ratio=0.1,
        num_classes=21,
        norm_cfg=head_norm_cfg,
        align_corners=True,
        loss_decode=dict(
            # TF averages over the non-ignored pixels (SUM_BY_NONZERO_WEIGHTS).
            type='CrossEntropyLoss',
            use_sigmoid=False,
            loss_weight=1.0,
            avg_non_ignore=True)),
    train_cfg=dict(),
    test_cfg=dict(mode='whole'))
# channels_last training (ChannelsLastTrainingHook) is not measured for this
# backbone: off, as for mmseg's ResNet; --cfg-options train_channels_last=True.
train_channels_last = False
