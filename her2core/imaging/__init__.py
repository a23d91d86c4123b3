"""Imaging core: images with geometry, loading, masks, resampling, ROI operations.

See docs/architecture.md ("Imaging") for the contracts.
"""
from .image import Image
from .io import (DEFAULT_MAX_VOXELS, DEFAULT_MAX_ZIP_BYTES, from_nibabel, list_dicom_series,
                 load_dicom_series, load_image, ras_affine, lps_affine, read_image_info,
                 save_image, to_nibabel)
from .mask import check_mask, load_mask, mask_labels

__all__ = [
    "Image", "DEFAULT_MAX_VOXELS", "DEFAULT_MAX_ZIP_BYTES", "from_nibabel", "list_dicom_series",
    "load_dicom_series", "load_image", "ras_affine", "lps_affine", "read_image_info",
    "save_image", "to_nibabel", "check_mask", "load_mask", "mask_labels",
]
