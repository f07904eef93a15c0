"""Images from a folder of class sub-folders (the layout of ``keras.utils.image_dataset_from_directory``).

Each split's x is a memory-mapped (n, height, width, channels) array decoded once into the cache
(``datasets/image_cache.py``), so a folder larger than memory trains batch by batch; y is the class index in
sorted folder-name order. The split is given by train/ val/ test/ folders when the root has a train/ folder
(a missing val/ or test/ is cut from train/), else it is a seeded split stratified on the class.
"""

from __future__ import annotations

import numpy as np

from .containers import Dataset, Split
from .errors import DataFormatError
from .image_cache import MODES, DecodeOptions, materialise
from .image_folders import Layout, resolve_root, scan
from .options import CommonOptions
from .specs import SPLITS
from .splitting import _split_off, random_split

IMAGE_SIZE = (64, 64)
SCALES = ("unit", "none")


def load_images(
    *,
    path: str | None = None,
    image_size=IMAGE_SIZE,
    color_mode: str = "rgb",
    scale: str = "unit",
    split: str = "auto",
    split_seed: int = 42,
    val_fraction: float = 0.1,
    test_fraction: float = 0.1,
    max_samples: int | None = None,
    cache: bool = True,
    data_dir: str | None = None,
    **unused,
) -> Dataset:
    """Load the image folder at ``path`` (relative paths are read under ``data_dir`` when it is set).

    ``image_size`` [height, width]: every image is resized to it. ``color_mode``: rgb (3 channels) or grayscale
    (1). ``scale``: unit divides the pixels by 255 (float32), none keeps them as uint8 0-255. ``split``: auto
    (the given train/ val/ test/ folders when train/ exists, else random), folders or random (pools the split
    folders, if any). ``max_samples`` caps each split by a seeded stratified subsample before decoding.
    ``unused``: the options of loaders that download files (download, verify_checksum), which mean nothing here.
    """
    options = DecodeOptions(
        _image_size(image_size), _choice("color_mode", color_mode, tuple(MODES)), _choice("scale", scale, SCALES)
    )
    # The shared checks of the fractions, seed and max_samples (split has its own choices here)
    common = CommonOptions(
        split_seed=split_seed, val_fraction=val_fraction, test_fraction=test_fraction, max_samples=max_samples
    )
    layout = scan(resolve_root(path, data_dir), split)
    labels = np.array([item.label for item in layout.files], dtype=np.int64)
    parts, notes = assign_splits(layout, labels, common)
    if max_samples is not None:
        parts = {name: cap(index, int(max_samples), labels, split_seed) for name, index in parts.items()}
        notes.append(f"max_samples={max_samples}: each split capped by a seeded subsample stratified on the class")
    decoded = materialise(layout, parts, options, cache)
    splits = {name: Split(decoded.x[name], decoded.y[name], {"file": decoded.files[name]}) for name in SPLITS}
    return Dataset(
        name="images",
        task="binary" if len(layout.class_names) == 2 else "multiclass",
        **splits,
        feature_names=pixel_names(options),
        target_name="class",
        class_names=list(layout.class_names),
        split_source="fixed" if set(layout.folders) == set(SPLITS) else "random",
        files={str(layout.root): decoded.digest},
        feature_scaling={"method": "divide", "by": 255} if scale == "unit" else None,
        target_scaling=None,
        notes=[
            f"{len(layout.files)} images in {len(layout.class_names)} class folders under {layout.root}; "
            f"resized to {options.image_size[0]}x{options.image_size[1]} {color_mode}"
            + (", pixels / 255" if scale == "unit" else ", pixels 0-255 (uint8)"),
            *notes,
            "files: sha256 of the sorted (relative path, size, sha256) list of the images used; "
            "meta['file'] is each row's image",
            decoded.note,
        ],
    )


def _image_size(value) -> tuple[int, int]:
    try:
        height, width = (int(v) for v in value)
        ok = all(float(v) == int(v) for v in value) and height > 0 and width > 0
    except (TypeError, ValueError):
        ok = False
    if not ok:
        raise ValueError(f"images: image_size={value!r}: expected two positive integers [height, width]")
    return height, width


def _choice(name: str, value, choices: tuple[str, ...]):
    if value not in choices:
        raise ValueError(f"images: {name}={value!r}: expected one of {', '.join(choices)}")
    return value


def assign_splits(layout: Layout, labels: np.ndarray, opts: CommonOptions) -> tuple[dict[str, np.ndarray], list[str]]:
    """Sorted file indices per split: the given folders, with a missing val/ or test/ cut from train/, or a
    seeded random split stratified on the class."""
    if not layout.folders:
        parts, stratified = random_split(len(labels), opts, strata=labels)
        how = "stratified on the class" if stratified else "not stratified: a class has too few images"
        return parts, [
            f"random split (split_seed={opts.split_seed}, val_fraction={opts.val_fraction}, "
            f"test_fraction={opts.test_fraction}), {how}"
        ]
    folder_of = np.array([item.folder for item in layout.files])
    parts = {name: np.flatnonzero(folder_of == name) for name in SPLITS}
    notes = [f"split given by the folders {', '.join(f'{name}/' for name in layout.folders)}"]
    for name in SPLITS[1:]:
        if name in layout.folders:
            continue
        fraction = opts.val_fraction if name == "val" else opts.test_fraction
        size = int(round(len(parts["train"]) * fraction))
        if not 1 <= size < len(parts["train"]):
            raise DataFormatError(
                f"images: {layout.root} has no {name}/ folder, and {fraction} of the {len(parts['train'])} "
                f"images in train/ is no {name} split; add {layout.root / name}/ or change {name}_fraction"
            )
        rest, taken, _ = _split_off(parts["train"], size, opts.split_seed, labels)
        parts["train"], parts[name] = np.sort(rest), np.sort(taken)
        notes.append(
            f"{name} = {size} images cut from train/ (split_seed={opts.split_seed}, {name}_fraction={fraction})"
        )
    for name, index in parts.items():
        if len(index) == 0:
            raise DataFormatError(f"images: {layout.root / name} holds no images in class folders")
    return parts, notes


def cap(index: np.ndarray, max_samples: int, labels: np.ndarray, seed: int) -> np.ndarray:
    """At most ``max_samples`` of the indices, a seeded subsample stratified on the class, in file order."""
    if len(index) <= max_samples:
        return index
    _, kept, _ = _split_off(index, max_samples, seed, labels)
    return np.sort(kept)


def pixel_names(options: DecodeOptions) -> list[str]:
    height, width, channels = options.shape
    if channels == 1:
        return [f"pixel_{r}_{c}" for r in range(height) for c in range(width)]
    return [f"pixel_{r}_{c}_{band}" for r in range(height) for c in range(width) for band in "rgb"]
