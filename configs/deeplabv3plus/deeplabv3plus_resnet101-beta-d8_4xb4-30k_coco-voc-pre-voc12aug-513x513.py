# Fine-tune on VOC-aug from the COCO-VOC pretraining (train
# deeplabv3plus_resnet101-beta-d8_4xb4-300k_coco-voc-513x513.py first) with a 7x smaller base LR.
_base_ = './deeplabv3plus_resnet101-beta-d8_4xb4-30k_voc12aug-513x513.py'
load_from = 'work_dirs/deeplabv3plus_resnet101-beta-d8_4xb4-300k_coco-voc-513x513/iter_300000.pth'
optim_wrapper = dict(optimizer=dict(lr=0.001))
