"""Datasets (VOC, COCO, VOC-format folders), images read whole, the dataset check, the synthetic
generator and the NEON tree-crown builder."""
