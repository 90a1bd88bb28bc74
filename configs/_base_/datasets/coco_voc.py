# COCO 2017 relabelled with the 20 PASCAL VOC classes ("COCO-VOC"), for
# DeepLab's COCO pre-training before VOC fine-tuning. Make voc_masks/ and
# voc_lists/ with tools/dataset_converters/coco_voc.py (crowd regions of VOC
# classes are 255, images with < 1000 VOC-class pixels are dropped); images
# stay in data_root/SPLIT/ or data_root/images/SPLIT/ (found automatically).
# Validation here is COCO-VOC val2017; leaf configs that pre-train for VOC
# may validate on VOC 2012 val instead (see pascal_voc12_aug.py).
# Pipelines and TF DeepLab's recipe as in pascal_voc12.py.
_base_ = './pascal_voc12.py'
dataset_type = 'COCOVOCDataset'
data_root = 'data/coco'
train_dataloader = dict(
    dataset=dict(
        _delete_=True,
        type=dataset_type,
        data_root=data_root,
        split='train2017',
        pipeline={{_base_.train_pipeline}}))
val_dataloader = dict(
    dataset=dict(
        _delete_=True,
        type=dataset_type,
        data_root=data_root,
        split='val2017',
        pipeline={{_base_.test_pipeline}}))
test_dataloader = val_dataloader
