# PASCAL Context, 59 classes (background ignored: PascalContextDataset59's
# reduce_zero_label=True maps 0 to 255): train (4,996 images) / val (5,104
# images); everything else as in pascal_context.py.
_base_ = './pascal_context.py'
dataset_type = 'PascalContextDataset59'
train_dataloader = dict(dataset=dict(type=dataset_type))
val_dataloader = dict(dataset=dict(type=dataset_type))
test_dataloader = val_dataloader
