"""Datasets (synthetic, Cityscapes, KITTI-360), the class table, splits and image reading."""
