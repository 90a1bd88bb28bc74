# PASCAL VOC 2012 + SBD ("VOC-aug"): trainaug (10,582 images) / VOC val
# (1,449 images); pipelines and TF DeepLab's recipe as in pascal_voc12.py.
# Make SegmentationClassAug/ and ImageSets/Segmentation/trainaug.txt with
# tools/dataset_converters/voc_aug.py, or use DrSleep's SegmentationClassAug
# with ann_file pointing at your list (see PascalVOCAugDataset). The datasets
# check at start-up that every listed file exists; LoadVOCAnnotations checks
# each mask (single channel, image size, labels 0..20 or 255).
_base_ = './pascal_voc12.py'
dataset_type = 'PascalVOCAugDataset'
train_dataloader = dict(
    dataset=dict(
        type=dataset_type,
        data_prefix=dict(seg_map_path='SegmentationClassAug'),
        ann_file='ImageSets/Segmentation/trainaug.txt'))
val_dataloader = dict(dataset=dict(type=dataset_type))
test_dataloader = val_dataloader
