"""Models of the course, one file per family (blocks, backbones, fcn, unet, resnet, vit, rcnn,
fpn, yolo, detr, mask_rcnn). Import the family you need: ``from cvlib.models.blocks import SmallCNN``."""
