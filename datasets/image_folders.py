"""The folder layout of the ``images`` data set: one sub-folder per class, optionally inside train/ val/ test/.

Pure Python (no numpy, no Pillow): ``datasets/specs.py`` reads the class folders from here to tell the task
(binary for two classes, multiclass for more) before anything is decoded. The layout is the one
``keras.utils.image_dataset_from_directory`` reads::

    root/cat/001.png  root/dog/002.jpg ...              (split: a seeded stratified split)
    root/train/cat/001.png  root/val/cat/...  root/test/cat/...   (split: the given folders)
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from .errors import DataFormatError, DataNotFoundError

# The split folders' names: specs.SPLITS, restated because specs.py reads this module (no import cycle).
SPLITS = ("train", "val", "test")
# Keras's own list plus TIFF and WebP, which Pillow reads as well; other files (notes, .DS_Store) are ignored.
SUFFIXES = (".bmp", ".gif", ".jpeg", ".jpg", ".png", ".tif", ".tiff", ".webp")
SPLIT_CHOICES = ("auto", "folders", "random")


@dataclass(frozen=True)
class ImageFile:
    label: int  # index into the layout's class_names
    relpath: str  # POSIX path under the root, the file's name in reports and in the cache key
    size: int
    mtime_ns: int
    folder: str | None  # the split folder it was found in; None without split folders


@dataclass
class Layout:
    root: Path
    class_names: list[str]
    files: list[ImageFile]
    folders: tuple[str, ...]  # the split folders that exist and are used as given ("" when none)


def resolve_root(path: str | os.PathLike | None, data_dir: str | os.PathLike | None = None) -> Path:
    """The image folder: ``path``, relative to ``data_dir`` when that is set and ``path`` is relative."""
    if not path:
        raise DataNotFoundError(
            "images: the option path is not set; point it at a folder of class sub-folders "
            "(dataset.path=/data/flowers, holding flowers/<class>/<image files>)"
        )
    root = Path(path).expanduser()
    if data_dir and not root.is_absolute():
        root = Path(data_dir).expanduser() / root
    if not root.is_dir():
        raise DataNotFoundError(f"images: path={str(path)!r}: {root.absolute()} is not a folder")
    return root.absolute()


def split_folders_used(root: Path, split: str) -> bool:
    """Whether the given train/ (val/, test/) folders are the split: split=folders, or auto when train/ exists."""
    if split not in SPLIT_CHOICES:
        raise ValueError(f"images: split={split!r}: expected one of {', '.join(SPLIT_CHOICES)}")
    present = (root / "train").is_dir()
    if split == "folders" and not present:
        raise DataFormatError(f"images: split=folders, but {root} has no train/ folder (expected train/<class>/...)")
    return present and split != "random"


def class_folders(folder: Path) -> list[str]:
    """The visible sub-folders of ``folder``, sorted: the class names, in label order."""
    with os.scandir(folder) as entries:
        return sorted(e.name for e in entries if e.is_dir() and not e.name.startswith("."))


def class_names(path, split: str = "auto", data_dir=None) -> list[str] | None:
    """The class names of the folder at ``path`` without reading a file; None when the folder is missing."""
    try:
        root = resolve_root(path, data_dir)
        parents = _class_parents(root, split)
        return sorted({name for parent in parents for name in class_folders(parent)})
    except (OSError, ValueError, DataFormatError, DataNotFoundError):
        return None


def _class_parents(root: Path, split: str) -> list[Path]:
    """The folders whose sub-folders are classes: the root, or each split folder present."""
    # With split folders, split=random pools them, so their classes are the classes either way.
    if (root / "train").is_dir():
        return [root / name for name in SPLITS if (root / name).is_dir()]
    return [root]


def scan(root: Path, split: str) -> Layout:
    """Every image file under the root's class folders, in label then path order, with size and mtime."""
    given = split_folders_used(root, split)
    parents = _class_parents(root, split)
    classes = sorted({name for parent in parents for name in class_folders(parent)})
    if given:
        classes = class_folders(root / "train")  # a class the model never trains on cannot be predicted
        for parent in parents[1:]:
            unknown = sorted(set(class_folders(parent)) - set(classes))
            if unknown:
                raise DataFormatError(
                    f"images: {parent / unknown[0]} is a class with no folder in {root / 'train'}; "
                    f"the training classes are {', '.join(classes) or '(none)'}"
                )
    if len(classes) < 2:
        where = root / "train" if given else root
        raise DataFormatError(
            f"images: {where} has {len(classes)} class sub-folder(s) ({', '.join(classes) or 'none'}); "
            "expected at least 2, each holding that class's images"
        )
    files = []
    for parent in parents:
        for label, name in enumerate(classes):
            if (parent / name).is_dir():
                files += _class_files(root, parent / name, label, parent.name if given else None)
    folders = tuple(parent.name for parent in parents) if given else ()
    return Layout(root, classes, files, folders)


def _class_files(root: Path, folder: Path, label: int, split: str | None) -> list[ImageFile]:
    found = []
    for directory, subdirs, names in os.walk(folder, followlinks=True):
        subdirs[:] = sorted(d for d in subdirs if not d.startswith("."))  # walked in a stable order
        for name in sorted(names):
            if name.startswith(".") or not name.lower().endswith(SUFFIXES):
                continue
            path = Path(directory) / name
            stat = path.stat()
            found.append(ImageFile(label, path.relative_to(root).as_posix(), stat.st_size, stat.st_mtime_ns, split))
    if not found:
        raise DataFormatError(
            f"images: the class folder {folder} holds no image files ({', '.join(SUFFIXES)}); "
            "add its images or remove the folder"
        )
    return found
