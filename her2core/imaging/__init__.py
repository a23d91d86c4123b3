"""Imaging core: images with geometry, loading, masks, resampling, ROI operations.

See docs/architecture.md ("Imaging") for the contracts.
"""
from .image import Image
from .io import (DEFAULT_MAX_VOXELS, DEFAULT_MAX_ZIP_BYTES, DicomSeriesInfo, ImageInfo,
                 from_nibabel, list_dicom_series, load_dicom_series, load_image, lps_affine,
                 ras_affine, read_image_info, save_image, to_nibabel)
from .mask import check_mask, load_mask, mask_labels
from .ops import (DEFAULT_SPACING, crop, crop_to_roi, dilate_mask, erode_mask, largest_roi_slice,
                  paste_into, register_rigid, resample_case, resample_to_reference,
                  resample_to_spacing, resize, roi_bbox, stack_25d, zscore)

__all__ = [
    "Image",
    "DEFAULT_MAX_VOXELS", "DEFAULT_MAX_ZIP_BYTES", "DicomSeriesInfo", "ImageInfo",
    "from_nibabel", "list_dicom_series", "load_dicom_series", "load_image", "lps_affine",
    "ras_affine", "read_image_info", "save_image", "to_nibabel",
    "check_mask", "load_mask", "mask_labels",
    "DEFAULT_SPACING", "crop", "crop_to_roi", "dilate_mask", "erode_mask", "largest_roi_slice",
    "paste_into", "register_rigid", "resample_case", "resample_to_reference",
    "resample_to_spacing", "resize", "roi_bbox", "stack_25d", "zscore",
]
