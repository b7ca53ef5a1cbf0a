"""Emoji artwork of several vendors, grouped by Unicode category or subcategory.

The npm packages ``emoji-datasource-<vendor>`` carry ``emoji.json`` (name, ``category``,
``subcategory``, ``skin_variations`` per emoji) and one 64x64 RGBA PNG per emoji and skin tone under
``img/<vendor>/64/``. A task's class is a category (``"Food & Drink"``) or a subcategory
(``"food-fruit"``); its images are every emoji of that group, skin-tone variants included (they are
distinct drawings of the same emoji).

Images are composited on white and downsampled to 32x32 RGB by default (``size=64`` keeps the
native resolution): the zoo works at 32x32 and the smaller cache loads four times faster.

Licences: the emoji-datasource packages are MIT, the artwork is the vendor's: Google's Noto Emoji
Apache-2.0, Twitter's Twemoji CC-BY-4.0, Apple's artwork is Apple's property with no open licence
(fine for local experiments, not for redistribution).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

from tans._errors import DatasetError, did_you_mean
from tans.data.dataset import Dataset
from tans.data.sources import artwork_dataset, check_artwork_size, loader_arguments
from tans.paths import sources_dir

__all__ = [
    "GROUP_BY",
    "INSTALL_HINT",
    "VENDOR_LICENCES",
    "EmojiImage",
    "count_emoji",
    "emoji_images",
    "installed",
    "load_emoji",
    "package_dir",
]

VENDOR_LICENCES = {
    "google": "Apache-2.0 (Noto Emoji artwork); MIT (emoji-datasource)",
    "twitter": "CC-BY-4.0 (Twemoji artwork, Twitter Inc.); MIT (emoji-datasource)",
    "apple": "Apple artwork, proprietary, no open licence (local research use only); MIT (emoji-datasource)",
}
GROUP_BY = ("category", "subcategory")
INSTALL_HINT = ("run scripts/setup.sh (fetches the npm packages emoji-datasource-google, -apple, -twitter into "
                "$TANS_SOURCES, default $TANS_HOME/sources), or set TANS_SOURCES to the folder it filled")
NATIVE_SIZE = 64


@dataclass(frozen=True)
class EmojiImage:
    """One artwork file: an emoji (or one of its skin tones) drawn by one vendor."""

    vendor: str
    category: str
    subcategory: str
    short_name: str  # e.g. "thumbsup" or "thumbsup:1F3FB" for a skin tone
    path: Path


def package_dir(vendor: str) -> Path:
    """Unpacked ``emoji-datasource-<vendor>/package`` directory."""
    return sources_dir() / "npm" / f"emoji-datasource-{vendor}" / "package"


def _check_vendor(vendor: str) -> None:
    if vendor not in VENDOR_LICENCES:
        raise DatasetError(
            f"Unknown emoji vendor '{vendor}': expected one of {', '.join(VENDOR_LICENCES)}."
            + did_you_mean(vendor, VENDOR_LICENCES)
        )


def installed(vendor: str = "google") -> bool:
    """Whether the vendor's ``emoji.json`` and image folder are on disk."""
    _check_vendor(vendor)
    root = package_dir(vendor)
    return (root / "emoji.json").is_file() and (root / "img" / vendor / "64").is_dir()


@lru_cache(maxsize=8)
def emoji_images(vendor: str) -> tuple[EmojiImage, ...]:
    """Every artwork file the vendor's package lists, skin tones included, in file order.

    Raises
    ------
    DatasetError
        If the package is not installed or its ``emoji.json`` is unreadable.
    """
    _check_vendor(vendor)
    if not installed(vendor):
        raise DatasetError(f"Emoji artwork for '{vendor}' not found under {package_dir(vendor)}; {INSTALL_HINT}.")
    root = package_dir(vendor)
    try:
        records = json.loads((root / "emoji.json").read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise DatasetError(f"Cannot read {root / 'emoji.json'} ({exc}); {INSTALL_HINT}.") from None
    img_dir = root / "img" / vendor / "64"
    has_img = f"has_img_{vendor}"
    out: list[EmojiImage] = []
    for rec in sorted(records, key=lambda r: r.get("sort_order", 0)):
        cat, sub, short = rec.get("category"), rec.get("subcategory"), rec.get("short_name")
        if not (cat and sub and short):
            continue
        if rec.get(has_img) and rec.get("image"):
            out.append(EmojiImage(vendor, cat, sub, short, img_dir / rec["image"]))
        for tone, var in sorted((rec.get("skin_variations") or {}).items()):
            if var.get(has_img) and var.get("image"):
                out.append(EmojiImage(vendor, cat, sub, f"{short}:{tone}", img_dir / var["image"]))
    return tuple(out)


def _select(
    vendors: Sequence[str],
    group_by: str,
    categories: Sequence[str] | None,
    classes: Sequence[str] | None,
    skin_tones: bool,
) -> tuple[list[EmojiImage], np.ndarray, tuple[str, ...]]:
    if group_by not in GROUP_BY:
        raise DatasetError(f"Unknown emoji grouping '{group_by}': expected 'category' or 'subcategory'.")
    if not vendors:
        raise DatasetError("Emoji loader needs at least one vendor, e.g. vendors=('google',).")
    chosen = [
        e
        for v in vendors
        for e in emoji_images(v)
        if (categories is None or e.category in categories) and (skin_tones or ":" not in e.short_name)
    ]
    present = sorted({getattr(e, group_by) for e in chosen})
    names = tuple(classes) if classes is not None else tuple(present)
    unknown = [c for c in names if c not in present]
    if unknown:
        raise DatasetError(
            f"Emoji {group_by} {unknown[0]!r} has no artwork in {', '.join(vendors)}"
            f"{' within ' + ', '.join(categories) if categories else ''}." + did_you_mean(unknown[0], present)
        )
    index = {c: i for i, c in enumerate(names)}
    kept = [e for e in chosen if getattr(e, group_by) in index]
    labels = np.array([index[getattr(e, group_by)] for e in kept], dtype=np.int64)
    return kept, labels, names


def count_emoji(**kwargs: Any) -> int:
    """Number of images ``load_emoji(**kwargs)`` returns, without decoding any."""
    selection = loader_arguments(load_emoji, kwargs)
    del selection["size"]  # same count at any resolution
    return len(_select(**selection)[0])


def load_emoji(
    *,
    vendors: Sequence[str] = ("google",),
    group_by: str = "subcategory",
    categories: Sequence[str] | None = None,
    classes: Sequence[str] | None = None,
    skin_tones: bool = True,
    size: int = 32,
) -> Dataset:
    """Load emoji artwork as a classification task.

    Parameters
    ----------
    vendors : sequence of str
        Artwork sets to pool: ``"google"``, ``"apple"``, ``"twitter"``.
    group_by : {"category", "subcategory"}
        What a class is.
    categories : sequence of str, optional
        Keep only emoji of these categories (e.g. ``["Food & Drink"]``).
    classes : sequence of str, optional
        Class names (categories or subcategories) in label order; default: every group present.
    skin_tones : bool
        Include the skin-tone variants of people and hand emoji.
    size : int
        Output side in pixels (native 64).

    Returns
    -------
    Dataset
        One image per emoji and vendor (and skin tone), ``(n, size, size, 3)`` uint8 RGB on white.

    Raises
    ------
    DatasetError
        If a vendor is unknown or not installed, a class has no artwork, or fewer than two
        classes remain.
    """
    check_artwork_size(size, "Emoji")
    kept, labels, names = _select(vendors, group_by, categories, classes, skin_tones)
    return artwork_dataset(
        [item.path for item in kept], labels, names, size, what="emoji artwork",
        name=f"emoji-{'+'.join(vendors)}-{group_by}", family="emoji",
        source="; ".join(f"npm emoji-datasource-{v}: package/img/{v}/64/*.png" for v in vendors),
        licence=" | ".join(f"{v}: {VENDOR_LICENCES[v]}" for v in vendors),
    )
