"""Data: datasets as uint8 tensors, the decoded-tensor cache, batching on the device, augmentation.

One module per concern, each name importable from here (``from mtlat_edu.data import load_dataset``):

* :mod:`~mtlat_edu.data.files`    walking image folders and decoding image files, safely (the one
  walker :func:`image_files` and the one decoder :func:`decode_image`; docs/design.md, "Threat model")
* :mod:`~mtlat_edu.data.sources`  :class:`ImageData`, the registry ``DATASETS`` and its loaders
  (:func:`load_dataset`), the decoded cache (:func:`cache_dir`), the streamed :class:`FileImageData`
* :mod:`~mtlat_edu.data.batching` :class:`DeviceBatches` (a whole set on the device, batches cut
  there), :class:`StreamBatches` (DataLoader workers decode each batch), :func:`batches` (either)
* :mod:`~mtlat_edu.data.augment`  batched augmentation on the device, the registry ``AUGMENTATIONS``

A setting is set in its home module, the one that reads it: ``mtlat_edu.data.files.MAX_IMAGE_PIXELS = ...``
raises the decoder's limit, ``mtlat_edu.data.sources.STREAM_BYTES = ...`` moves ``"auto"``'s threshold
(the names re-exported here are copies of the values at import).
"""
from __future__ import annotations

from mtlat_edu.data.augment import AUGMENTATIONS, flip_crop
from mtlat_edu.data.batching import DeviceBatches, FileListDataset, StreamBatches, batches
from mtlat_edu.data.files import (IMAGE_FORMATS, IMG_EXTENSIONS, MAX_IMAGE_PIXELS, ImageFileError, check_same_classes,
                                  class_folders, decode_files, decode_image, folder_samples, image_files)
from mtlat_edu.data.sources import (CACHE_REMEDY, CIFAR10_CLASSES, DATA_MODES, DATASETS, DOWNLOAD_TIMEOUT, REPO_DATA,
                                    REPO_ROOT, SHARED_CIFAR, SPLITS, STREAM_BYTES, FileImageData, ImageData, balanced_indices,
                                    cache_dir, content_key, data_home, file_dataset, imagenet100_split, load_cifar10,
                                    load_dataset, load_imagefolder, load_imagenet100, load_synthetic, make_synthetic,
                                    source_checkout, user_cache_dir)

__all__ = [
    "AUGMENTATIONS", "CACHE_REMEDY", "CIFAR10_CLASSES", "DATASETS", "DATA_MODES", "DOWNLOAD_TIMEOUT", "DeviceBatches",
    "FileImageData", "FileListDataset", "IMAGE_FORMATS", "IMG_EXTENSIONS", "ImageData", "ImageFileError",
    "MAX_IMAGE_PIXELS", "REPO_DATA", "REPO_ROOT", "SHARED_CIFAR", "SPLITS", "STREAM_BYTES", "StreamBatches", "balanced_indices",
    "batches", "cache_dir", "check_same_classes", "class_folders", "content_key", "data_home", "decode_files",
    "decode_image", "file_dataset", "flip_crop", "folder_samples", "image_files", "imagenet100_split", "load_cifar10",
    "load_dataset", "load_imagefolder", "load_imagenet100", "load_synthetic", "make_synthetic", "source_checkout",
    "user_cache_dir",
]
