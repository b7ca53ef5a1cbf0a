"""Decode one image file safely into a uint8 grey or RGB array.

User folders hold whatever people put there: zero-byte files, half-copied JPEGs, text files,
16-bit scans, palette GIFs with transparency, and now and then a "decompression bomb" (a tiny file
that claims billions of pixels). :func:`read_image` turns every file into either a uint8 array
``(h, w, 1)`` (grey) or ``(h, w, 3)`` (RGB), or an :class:`UnreadableImageError` whose
:class:`SkipReason` lets a loader count what it skipped.

Mode handling (Pillow modes):

- ``1``, ``L``: grey. ``LA``/``La``: grey with alpha composited on white.
- ``P``/``PA``: palette expanded (transparency composited on white); grey if the palette is grey.
- ``RGB``; ``RGBA``/``RGBa``/``RGBX``: alpha composited on white. ``CMYK``, ``YCbCr``, ``LAB``,
  ``HSV``: converted to RGB.
- ``I;16*``, ``I``, ``F`` (16/32-bit and float): grey, scaled linearly from the image's own
  minimum..maximum to 0..255 (a constant image becomes black; NaN becomes 0).
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from enum import StrEnum
from pathlib import Path
from typing import IO

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from tans._errors import DatasetError

__all__ = [
    "MAX_PIXELS",
    "SkipReason",
    "UnreadableImageError",
    "composite_on_white",
    "image_header",
    "image_to_array",
    "open_image",
    "read_image",
    "scale_to_uint8",
]

# Images above this many pixels are refused before decoding (the decompression-bomb guard). Pillow's
# own limit (Image.MAX_IMAGE_PIXELS, about 89 megapixels) still applies on top of it.
MAX_PIXELS = 64_000_000

# First bytes of common image formats: a file that starts like an image but cannot be parsed is
# reported as truncated rather than as "not an image".
_SIGNATURES = (
    b"\x89PNG",
    b"\xff\xd8\xff",  # JPEG
    b"GIF8",
    b"BM",
    b"II*\x00",  # TIFF little-endian
    b"MM\x00*",  # TIFF big-endian
    b"RIFF",  # WebP
)


class SkipReason(StrEnum):
    """Why a file could not be read; loaders count skipped files per reason."""

    ZERO_BYTE = "zero-byte"
    TRUNCATED = "truncated"  # starts like an image but the data is cut short or corrupt
    NOT_AN_IMAGE = "not an image"
    TOO_LARGE = "too large"  # more pixels than the decompression-bomb guard allows
    UNREADABLE = "unreadable"  # permission denied, broken link, unsupported mode


class UnreadableImageError(DatasetError):
    """One file that cannot be decoded, with the reason as a :class:`SkipReason`."""

    def __init__(self, path: str | os.PathLike, reason: SkipReason, detail: str = "") -> None:
        self.path = Path(path)
        self.reason = reason
        detail = " ".join(detail.split())  # keep the message on one line
        extra = f" ({detail})" if detail else ""
        super().__init__(
            f"Cannot read image {str(path)!r}: {reason}{extra}; expected a readable PNG, JPEG, GIF, "
            "BMP, TIFF or WebP file. Replace or remove it."
        )


def read_image(path: str | os.PathLike, *, max_pixels: int | None = None) -> np.ndarray:
    """Decode one image file into a ``(h, w, 1)`` grey or ``(h, w, 3)`` RGB uint8 array.

    ``path`` and ``max_pixels`` as for :func:`open_image`; raises its
    :class:`UnreadableImageError` (reason zero-byte, truncated, not an image, too large or
    unreadable).
    """
    with open_image(path, max_pixels=max_pixels) as img, _pillow_warnings():
        try:
            return image_to_array(img)
        except (ValueError, OSError) as exc:
            raise UnreadableImageError(path, SkipReason.UNREADABLE, f"mode {img.mode}: {exc}") from exc


def open_image(path: str | os.PathLike, *, max_pixels: int | None = None, fp: IO[bytes] | None = None) -> Image.Image:
    """Open and fully decode one image with Pillow, EXIF orientation applied.

    The pixel count is checked against ``max_pixels`` from the header, before any pixel data is
    decoded; ``load()`` is forced so that truncated files fail here and not later.

    Parameters
    ----------
    path : str or PathLike
        The image file.
    max_pixels : int, optional
        Refuse images with more pixels than this (default :data:`MAX_PIXELS`).
    fp : binary file, optional
        Read the image from this seekable stream instead (e.g. a zip entry); ``path`` then only
        names it in errors. The caller closes it.

    Returns
    -------
    PIL.Image.Image
        The decoded image in its original mode (first frame of an animation).

    Raises
    ------
    UnreadableImageError
        When the file cannot be decoded.
    """
    with _pillow_warnings():
        img = _open_unloaded(path, max_pixels, fp)
        try:
            img.load()
        except MemoryError:
            img.close()
            raise
        except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
            img.close()
            raise UnreadableImageError(path, SkipReason.TOO_LARGE, str(exc)) from exc
        except Exception as exc:  # any decoder failure on untrusted bytes means a damaged file
            img.close()
            raise UnreadableImageError(path, SkipReason.TRUNCATED, str(exc)) from exc
        try:
            rotated = ImageOps.exif_transpose(img)
        except Exception:  # a malformed EXIF block only loses the orientation, not the image
            return img
    if rotated is not img:
        img.close()
    return rotated


def image_header(path: str | os.PathLike, *, max_pixels: int | None = None) -> tuple[int, int, int]:
    """``(height, width, channels)`` that :func:`read_image` would return, from the header alone.

    Nothing is decoded: the pixel count is checked as :func:`open_image` does, the EXIF orientation
    swaps height and width where it turns the image, and a PNG or JPEG whose end marker is missing
    (a half-copied file) is reported as truncated. A file whose compressed data is damaged past its
    header still passes here and fails when it is decoded. Parameters and errors are those of
    :func:`read_image`.

    Returns
    -------
    (int, int, int)
        Height, width, and 1 (grey) or 3 (colour) channels as :func:`image_to_array` maps the mode
        (a palette counts as grey when every palette entry is grey).
    """
    with _pillow_warnings():
        img = _open_unloaded(path, max_pixels, None)
    with img:
        if not _has_end_marker(path, img.format):
            raise UnreadableImageError(path, SkipReason.TRUNCATED, "the file ends before the image does")
        width, height = img.size
        if _orientation(img) in (5, 6, 7, 8):  # a quarter turn: exif_transpose swaps the sides
            width, height = height, width
        return height, width, _header_channels(img)


def _open_unloaded(path: str | os.PathLike, max_pixels: int | None, fp: IO[bytes] | None) -> Image.Image:
    """Open an image with Pillow (header only), checked against the pixel limit; errors as for :func:`open_image`."""
    limit = MAX_PIXELS if max_pixels is None else max_pixels
    try:
        if fp is None:
            with open(path, "rb") as f:
                head = f.read(12)
        else:
            head = fp.read(12)
    except OSError as exc:
        raise UnreadableImageError(path, SkipReason.UNREADABLE, exc.strerror or type(exc).__name__) from exc
    if not head:
        raise UnreadableImageError(path, SkipReason.ZERO_BYTE)
    looks_like_image = head.startswith(_SIGNATURES)

    try:
        img = Image.open(path if fp is None else fp)  # Pillow seeks fp back to its start
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise UnreadableImageError(path, SkipReason.TOO_LARGE, str(exc)) from exc
    except UnidentifiedImageError as exc:
        reason = SkipReason.TRUNCATED if looks_like_image else SkipReason.NOT_AN_IMAGE
        raise UnreadableImageError(path, reason) from exc
    except OSError as exc:
        raise UnreadableImageError(path, SkipReason.UNREADABLE, str(exc)) from exc
    except Exception as exc:  # any parser failure on untrusted bytes
        raise UnreadableImageError(path, SkipReason.TRUNCATED, str(exc)) from exc

    width, height = img.size
    if width * height > limit:
        img.close()
        raise UnreadableImageError(
            path, SkipReason.TOO_LARGE, f"{width}x{height} pixels, limit {limit:,} pixels"
        )
    return img


# How each format ends, and how far from the end the marker may sit (some writers pad JPEGs).
_END_MARKERS = {"PNG": (b"IEND", 12), "JPEG": (b"\xff\xd9", 4096)}


def _has_end_marker(path: str | os.PathLike, fmt: str | None) -> bool:
    """False when a PNG or JPEG file lacks its end marker; True for other formats."""
    if fmt not in _END_MARKERS:
        return True
    marker, within = _END_MARKERS[fmt]
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            f.seek(max(f.tell() - within, 0))
            return marker in f.read()
    except OSError as exc:
        raise UnreadableImageError(path, SkipReason.UNREADABLE, exc.strerror or type(exc).__name__) from exc


def _orientation(img: Image.Image) -> int:
    """The EXIF orientation tag (1: upright) as far as the header tells, without decoding."""
    try:
        if img.format == "PNG" and "exif" not in img.info:
            return 1  # Pillow would decode the whole PNG to look for an eXIf chunk after the pixels
        return int(img.getexif().get(0x0112, 1))
    except Exception:  # noqa: BLE001 - a malformed EXIF block only loses the orientation, as in open_image
        return 1


def _header_channels(img: Image.Image) -> int:
    """1 or 3: the channels :func:`image_to_array` gives this image's mode."""
    mode = img.mode
    if mode in ("1", "L", "LA", "La") or mode.startswith(("I", "F")):
        return 1
    if mode in ("P", "PA"):
        palette = np.asarray(img.getpalette("RGB") or [], dtype=np.uint8).reshape(-1, 3)
        return 1 if (palette == palette[:, :1]).all() else 3
    return 3


@contextmanager
def _pillow_warnings() -> Iterator[None]:
    """Silence Pillow's per-file warnings (loaders count problems in one warning of their own),
    and turn its decompression-bomb warning, issued between its limit and twice it, into a refusal.
    """
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", module=r"PIL\.")
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        yield


def image_to_array(img: Image.Image) -> np.ndarray:
    """Convert a decoded Pillow image of any mode to uint8 ``(h, w, 1)`` or ``(h, w, 3)``.

    Parameters
    ----------
    img : PIL.Image.Image
        A loaded image.

    Returns
    -------
    np.ndarray
        Grey ``(h, w, 1)`` or RGB ``(h, w, 3)``, uint8; alpha is composited on white.

    Raises
    ------
    ValueError
        For a mode Pillow cannot convert to RGB.
    """
    mode = img.mode
    if mode == "1":
        return np.asarray(img.convert("L"))[..., None]
    if mode == "L":
        return np.asarray(img)[..., None]
    if mode in ("LA", "La"):
        la = np.asarray(img.convert("LA"))
        return composite_on_white(la[..., :1], la[..., 1])
    if mode.startswith("I") or mode.startswith("F"):
        return scale_to_uint8(np.asarray(img))[..., None]
    if mode in ("P", "PA"):
        has_alpha = mode == "PA" or "transparency" in img.info
        if has_alpha:
            rgba = np.asarray(img.convert("RGBA"))
            rgb = composite_on_white(rgba[..., :3], rgba[..., 3])
        else:
            rgb = np.asarray(img.convert("RGB"))
        # A palette of greys is grey data; keep it one channel.
        if np.array_equal(rgb[..., 0], rgb[..., 1]) and np.array_equal(rgb[..., 1], rgb[..., 2]):
            return np.ascontiguousarray(rgb[..., :1])
        return rgb
    if mode == "RGB":
        return np.asarray(img)
    if mode in ("RGBA", "RGBa"):
        rgba = np.asarray(img.convert("RGBA"))
        return composite_on_white(rgba[..., :3], rgba[..., 3])
    return np.asarray(img.convert("RGB"))  # CMYK, YCbCr, LAB, HSV, RGBX...


def composite_on_white(colour: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    """Blend ``(h, w, c)`` uint8 colour over a white background with ``(h, w)`` uint8 alpha."""
    a = alpha.astype(np.float32)[..., None] / 255.0
    out = colour.astype(np.float32) * a + 255.0 * (1.0 - a)
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


def scale_to_uint8(values: np.ndarray) -> np.ndarray:
    """Map an integer or float array linearly from its own min..max to 0..255 uint8.

    A constant array maps to 0; NaN and infinities map to 0 and do not count for the range.
    """
    v = values.astype(np.float64)
    finite = np.isfinite(v)
    if not finite.any():
        return np.zeros(v.shape, dtype=np.uint8)
    lo, hi = v[finite].min(), v[finite].max()
    if hi == lo:
        return np.zeros(v.shape, dtype=np.uint8)
    scaled = np.where(finite, (v - lo) * (255.0 / (hi - lo)), 0.0)
    return np.clip(np.rint(scaled), 0, 255).astype(np.uint8)
