"""Datasets (VOC, COCO, YOLO, VOC-format folders), images read whole, SSD's transforms and
loaders, the dataset check, the synthetic generator and the NEON tree-crown builder."""
