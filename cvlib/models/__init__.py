"""Models of the course, one file per family (blocks, fcn, unet, resnet, vit, rcnn, yolo, detr,
mask_rcnn). Import the family you need: ``from cvlib.models.blocks import SmallCNN``."""
