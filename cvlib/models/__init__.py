"""Models of the course, one file per family (blocks, backbones, fcn, unet, resnet, vit, swin, rcnn,
rpn, fpn, yolo, detr, mask_rcnn), the panoptic merge of their outputs (panoptic), what every
detector shares (detection) and torchvision's twin of Faster R-CNN (rcnn_torchvision). Import
the family you need: ``from cvlib.models.blocks import SmallCNN``."""
