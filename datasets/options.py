"""Options shared by every loader, validated in one place."""

from __future__ import annotations

from dataclasses import dataclass, fields

SPLIT_CHOICES = ("auto", "book", "random")
SCALE_CHOICES = ("standard", "none")


@dataclass(frozen=True)
class CommonOptions:
    """Options every dataset accepts; see load_dataset for their meaning."""

    data_dir: str | None = None
    split: str = "auto"
    split_seed: int = 42
    val_fraction: float = 0.1
    test_fraction: float = 0.1
    scale: str = "standard"
    max_samples: int | None = None
    download: bool = True
    verify_checksum: bool = True
    cache: bool = True

    def __post_init__(self):
        if self.split not in SPLIT_CHOICES:
            raise ValueError(f"split={self.split!r}: expected one of {SPLIT_CHOICES}")
        if self.scale not in SCALE_CHOICES:
            raise ValueError(f"scale={self.scale!r}: expected one of {SCALE_CHOICES}")
        for name in ("val_fraction", "test_fraction"):
            value = getattr(self, name)
            if not 0 < value < 1:
                raise ValueError(f"{name}={value!r}: expected a number between 0 and 1")
        if self.val_fraction + self.test_fraction >= 1:
            raise ValueError("val_fraction + test_fraction must be below 1 (nothing left to train on)")
        if self.max_samples is not None and (isinstance(self.max_samples, bool) or int(self.max_samples) < 1):
            raise ValueError(f"max_samples={self.max_samples!r}: expected a positive integer or None")


def common_option_names() -> list[str]:
    return [f.name for f in fields(CommonOptions)]
