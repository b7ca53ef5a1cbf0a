"""Printed characters of many scripts, rendered from the installed fonts with random jitter.

A class is one character of a script; its images are that character drawn by every installed
typeface whose character map really holds it (read with fontTools, and the drawing must leave ink),
each sample with a random affine jitter (rotation, scale, aspect, shear, translation), a random
stroke weight (thinned, as drawn, or emboldened), random ink and background levels and pixel noise.
White ink on a dark ground, like MNIST. Rendering is seeded and deterministic: the same arguments
give the same pixels on the same fonts.

Scripts are registered in :data:`SCRIPTS` with the writing-system group that becomes a task's
family (``glyphs-european``, ``glyphs-indic`` ...): scripts of one group share letter shapes (Latin
``A``, Greek ``Α``, Cyrillic ``А``), so a benchmark must hold them out together.
"""

from __future__ import annotations

import json
import math
import os
import unicodedata
import warnings
from collections.abc import Iterable
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
from PIL import Image

from tans._atomic import write_bytes
from tans._errors import DatasetError, TansWarning, did_you_mean
from tans._json import dumps
from tans.data.dataset import Dataset
from tans.paths import cache_dir

__all__ = [
    "SCRIPTS",
    "TYPEFACE_KINDS",
    "FontFace",
    "GlyphJitter",
    "Script",
    "covering_fonts",
    "font_faces",
    "installed",
    "load_glyphs",
    "render_glyphs",
]

INSTALL_HINT = (
    "apt-get install fonts-noto-core fonts-dejavu-core fonts-liberation2 fonts-freefont-ttf fonts-urw-base35 "
    "(or run scripts/setup.sh)"
)
LICENCE = "per typeface: OFL-1.1 (Noto), Bitstream Vera/public domain (DejaVu), OFL-1.1 (Liberation), GPL-3+ with font exception (FreeFont), AGPL-3 with font exception (URW base35)"
TYPEFACE_KINDS = ("serif", "sans", "mono")
RENDER_PX = 64  # font size of the master drawings; samples are drawn at 2x the output and box-reduced
_SERIF_MARKS = ("serif", "roman", "c059", "p052", "bookman", "naskh", "rashi", "nastaliq", "z003", "tangut")
_SKIP_FAMILIES = ("dingbat", "d050000l", "symbol", "music", "emoji", "last resort")


# ---------------------------------------------------------------------------------------- scripts
def _chars(*ranges: tuple[int, int], step: int = 1, exclude: str = "") -> str:
    """Letters (categories Lu, Ll, Lo) in the inclusive code point ranges, every ``step``-th."""
    out = []
    for lo, hi in ranges:
        for cp in range(lo, hi + 1, step):
            ch = chr(cp)
            if unicodedata.category(ch) in ("Lu", "Ll", "Lo") and ch not in exclude:
                out.append(ch)
    return "".join(out)


@dataclass(frozen=True)
class Script:
    """One glyph task source: a set of characters and the family of writing systems it belongs to."""

    name: str  # e.g. "greek-lower"
    title: str  # e.g. "Greek lowercase"
    group: str  # family of the task, e.g. "glyphs-european"
    chars: str  # one class per character, in this order


SCRIPTS: dict[str, Script] = {
    s.name: s
    for s in (
        # Latin, Greek, Cyrillic and their European relatives share letter shapes.
        Script("latin-upper", "Latin capitals", "glyphs-european", _chars((0x41, 0x5A))),
        Script("latin-lower", "Latin small letters", "glyphs-european", _chars((0x61, 0x7A))),
        Script("greek-upper", "Greek capitals", "glyphs-european", _chars((0x391, 0x3A9))),
        Script("greek-lower", "Greek small letters", "glyphs-european", _chars((0x3B1, 0x3C9))),
        Script("cyrillic-upper", "Cyrillic capitals", "glyphs-european", _chars((0x410, 0x42F))),
        Script("cyrillic-lower", "Cyrillic small letters", "glyphs-european", _chars((0x430, 0x44F))),
        Script("runic", "Runic (Elder Futhark)", "glyphs-european", "ᚠᚢᚦᚨᚱᚲᚷᚹᚺᚾᛁᛃᛇᛈᛉᛊᛏᛒᛖᛗᛚᛜᛞᛟ"),
        Script("glagolitic", "Glagolitic capitals", "glyphs-european", _chars((0x2C00, 0x2C1F))),
        Script("gothic", "Gothic", "glyphs-european", _chars((0x10330, 0x1034A))),
        Script("old-italic", "Old Italic", "glyphs-european", _chars((0x10300, 0x1031F))),
        Script("ogham", "Ogham", "glyphs-european", _chars((0x1681, 0x169A))),
        # Caucasus
        Script("armenian-upper", "Armenian capitals", "glyphs-caucasian", _chars((0x531, 0x556))),
        Script("armenian-lower", "Armenian small letters", "glyphs-caucasian", _chars((0x561, 0x586))),
        Script("georgian", "Georgian Mkhedruli", "glyphs-caucasian", _chars((0x10D0, 0x10F0))),
        # Middle East
        Script("hebrew", "Hebrew", "glyphs-middle-eastern", _chars((0x5D0, 0x5EA))),
        Script("arabic", "Arabic", "glyphs-middle-eastern", "ابتثجحخدذرزسشصضطظعغفقكلمنهوي"),
        Script("syriac", "Syriac", "glyphs-middle-eastern", _chars((0x710, 0x72C))),
        Script("thaana", "Thaana", "glyphs-middle-eastern", _chars((0x780, 0x7A5))),
        Script("samaritan", "Samaritan", "glyphs-middle-eastern", _chars((0x800, 0x815))),
        Script("phoenician", "Phoenician", "glyphs-middle-eastern", _chars((0x10900, 0x10915))),
        # South Asia
        Script("devanagari", "Devanagari consonants", "glyphs-indic", _chars((0x915, 0x939))),
        Script("bengali", "Bengali consonants", "glyphs-indic", _chars((0x995, 0x9B9))),
        Script("gurmukhi", "Gurmukhi consonants", "glyphs-indic", _chars((0xA15, 0xA39))),
        Script("gujarati", "Gujarati consonants", "glyphs-indic", _chars((0xA95, 0xAB9))),
        Script("oriya", "Oriya consonants", "glyphs-indic", _chars((0xB15, 0xB39))),
        Script("tamil", "Tamil letters", "glyphs-indic", _chars((0xB85, 0xBB9))),
        Script("telugu", "Telugu consonants", "glyphs-indic", _chars((0xC15, 0xC39))),
        Script("kannada", "Kannada consonants", "glyphs-indic", _chars((0xC95, 0xCB9))),
        Script("malayalam", "Malayalam consonants", "glyphs-indic", _chars((0xD15, 0xD39))),
        Script("sinhala", "Sinhala consonants", "glyphs-indic", _chars((0xD9A, 0xDC6))),
        Script("tibetan", "Tibetan consonants", "glyphs-indic", _chars((0xF40, 0xF6C))),
        # South-East Asia
        Script("thai", "Thai consonants", "glyphs-southeast-asian", _chars((0xE01, 0xE2E))),
        Script("lao", "Lao letters", "glyphs-southeast-asian", _chars((0xE81, 0xEAE))),
        Script("khmer", "Khmer consonants", "glyphs-southeast-asian", _chars((0x1780, 0x17A2))),
        Script("myanmar", "Myanmar consonants", "glyphs-southeast-asian", _chars((0x1000, 0x1020))),
        Script("javanese", "Javanese letters", "glyphs-southeast-asian", _chars((0xA984, 0xA9B2))),
        Script("balinese", "Balinese letters", "glyphs-southeast-asian", _chars((0x1B05, 0x1B33))),
        # East and Central Asia
        Script("mongolian", "Mongolian letters", "glyphs-east-asian", _chars((0x1820, 0x1842))),
        Script("phags-pa", "Phags-pa letters", "glyphs-east-asian", _chars((0xA840, 0xA861))),
        Script("yi", "Yi syllables (first 40)", "glyphs-east-asian", _chars((0xA000, 0xA027))),
        Script("tangut", "Tangut ideographs (first 40)", "glyphs-east-asian", _chars((0x17000, 0x17027))),
        # Africa
        Script("ethiopic", "Ethiopic syllables, first order", "glyphs-african", _chars((0x1200, 0x12F8), step=8)),
        Script("tifinagh", "Tifinagh", "glyphs-african", _chars((0x2D30, 0x2D5F))),
        Script("nko", "N'Ko letters", "glyphs-african", _chars((0x7CA, 0x7EA))),
        Script("vai", "Vai syllables (first 40)", "glyphs-african", _chars((0xA500, 0xA527))),
        Script("adlam", "Adlam small letters", "glyphs-african", _chars((0x1E922, 0x1E943))),
        Script("bamum", "Bamum letters (first 40)", "glyphs-african", _chars((0xA6A0, 0xA6C7))),
        # The Americas
        Script("cherokee", "Cherokee syllables (first 50)", "glyphs-americas", _chars((0x13A0, 0x13D1))),
        Script("canadian-syllabics", "Canadian syllabics (first 40)", "glyphs-americas", _chars((0x1401, 0x1428))),
        Script("deseret", "Deseret capitals", "glyphs-americas", _chars((0x10400, 0x10427))),
        Script("osage", "Osage capitals", "glyphs-americas", _chars((0x104B0, 0x104D3))),
    )
}


def class_name(ch: str) -> str:
    """A readable, ASCII, file-name-safe class name: the Unicode name in lower case."""
    return unicodedata.name(ch, f"u+{ord(ch):04x}").lower()


# ------------------------------------------------------------------------------------------ fonts
@dataclass(frozen=True)
class FontFace:
    """One installed face and the code points its character map holds."""

    path: str
    index: int  # face number inside a .ttc collection
    family: str  # e.g. "Noto Serif Devanagari"
    style: str  # e.g. "Bold"
    kind: str  # "serif", "sans" or "mono"
    codepoints: frozenset[int]

    @property
    def label(self) -> str:
        return f"{self.family} {self.style}".strip()


def font_dirs() -> list[Path]:
    """Font folders searched: ``$TANS_FONTS`` (``os.pathsep``-separated) or the system ones."""
    env = os.environ.get("TANS_FONTS")
    if env:
        return [Path(p) for p in env.split(os.pathsep) if p]
    home = Path.home()
    return [Path("/usr/share/fonts"), Path("/usr/local/share/fonts"), home / ".local/share/fonts", home / ".fonts"]


def _font_files() -> list[Path]:
    files: set[Path] = set()
    for d in font_dirs():
        if d.is_dir():
            files.update(p for p in d.rglob("*") if p.suffix.lower() in (".ttf", ".otf", ".ttc") and p.is_file())
    return sorted(files)


def _kind(family: str) -> str:
    low = family.lower()
    if "mono" in low:
        return "mono"
    return "serif" if any(m in low for m in _SERIF_MARKS) else "sans"


def _ranges(cps: Iterable[int]) -> list[list[int]]:
    out: list[list[int]] = []
    for cp in sorted(cps):
        if out and cp == out[-1][1] + 1:
            out[-1][1] = cp
        else:
            out.append([cp, cp])
    return out


def _scan_file(path: Path) -> list[dict]:
    from fontTools.ttLib import TTCollection, TTFont

    faces = []
    if path.suffix.lower() == ".ttc":
        collection = TTCollection(str(path), lazy=True)
        fonts, closers = list(collection.fonts), [collection]
    else:
        fonts = [TTFont(str(path), lazy=True)]
        closers = fonts
    try:
        for index, font in enumerate(fonts):
            name = font["name"]
            family = str(name.getBestFamilyName() or path.stem)
            style = str(name.getBestSubFamilyName() or "")
            cmap = font.getBestCmap() or {}
            faces.append({"index": index, "family": family, "style": style, "ranges": _ranges(cmap)})
    finally:
        for c in closers:
            c.close()
    return faces


@lru_cache(maxsize=1)
def font_faces() -> tuple[FontFace, ...]:
    """Every installed face with its code points, read once and cached on disk by file stamp.

    Faces of symbol, dingbat and music families are left out: their character maps put pictures
    on letter code points.
    """
    files = _font_files()
    index_path = cache_dir("builtin") / "font-index.v1.json"
    try:
        known = json.loads(index_path.read_text())
    except (OSError, ValueError):
        known = {}
    entries, changed = {}, False
    for path in files:
        st = path.stat()
        stamp = [st.st_size, st.st_mtime_ns]
        entry = known.get(str(path))
        if entry is None or entry.get("stamp") != stamp:
            try:
                entry = {"stamp": stamp, "faces": _scan_file(path)}
            except Exception:  # noqa: BLE001 - an unreadable font is skipped, not fatal
                entry = {"stamp": stamp, "faces": []}
            changed = True
        entries[str(path)] = entry
    if changed or set(entries) != set(known):
        write_bytes(index_path, dumps(entries, digits=None).encode())
    faces = []
    for path, entry in entries.items():
        for f in entry["faces"]:
            if any(s in f["family"].lower() for s in _SKIP_FAMILIES):
                continue
            cps = frozenset(cp for lo, hi in f["ranges"] for cp in range(lo, hi + 1))
            faces.append(FontFace(path, f["index"], f["family"], f["style"], _kind(f["family"]), cps))
    return tuple(faces)


def _matches(face: FontFace, typeface: str | None) -> bool:
    if typeface is None:
        return True
    if typeface in TYPEFACE_KINDS:
        return face.kind == typeface
    return typeface.lower() in face.family.lower()


def covering_fonts(ch: str, typeface: str | None = None) -> list[FontFace]:
    """Faces whose character map holds ``ch`` (optionally only a kind or a family substring)."""
    cp = ord(ch)
    return [f for f in font_faces() if cp in f.codepoints and _matches(f, typeface)]


def installed(script: str = "latin-upper", typeface: str | None = None) -> bool:
    """Whether at least two characters of ``script`` are covered by an installed face."""
    chars = SCRIPTS[script].chars if script in SCRIPTS else ""
    covered = 0
    for ch in chars:
        covered += bool(covering_fonts(ch, typeface))
        if covered >= 2:
            return True
    return False


# -------------------------------------------------------------------------------------- rendering
@dataclass(frozen=True)
class GlyphJitter:
    """Ranges of the random distortions applied to every sample (uniform draws)."""

    rotation_deg: float = 12.0  # +-
    scale: tuple[float, float] = (0.65, 0.95)  # height of one em, as a fraction of the image
    aspect: float = 0.15  # +- relative width change
    shear: float = 0.25  # +- horizontal shear
    translate: float = 0.08  # +- fraction of the image side
    bold_probability: float = 0.3  # emboldened stroke
    thin_probability: float = 0.2  # thinned stroke
    background: tuple[int, int] = (0, 60)
    ink: tuple[int, int] = (170, 255)
    noise_sigma: tuple[float, float] = (0.0, 12.0)


def _master(face: FontFace, ch: str, weight: int, fonts: dict) -> Image.Image | None:
    """The character drawn at RENDER_PX, cropped to its ink, for one stroke weight (-1, 0, 1, 2)."""
    from PIL import ImageDraw, ImageFilter, ImageFont  # only when rendering: the catalogue imports this module

    key = (face.path, face.index)
    if key not in fonts:
        fonts[key] = ImageFont.truetype(face.path, RENDER_PX, index=face.index, layout_engine=ImageFont.Layout.BASIC)
    font = fonts[key]
    stroke = max(weight, 0)
    x0, y0, x1, y1 = font.getbbox(ch, stroke_width=stroke)
    if x1 <= x0 or y1 <= y0:
        return None
    pad = 4
    canvas = Image.new("L", (x1 - x0 + 2 * pad, y1 - y0 + 2 * pad), 0)
    ImageDraw.Draw(canvas).text((pad - x0, pad - y0), ch, font=font, fill=255, stroke_width=stroke, stroke_fill=255)
    if weight < 0:
        thinned = canvas.filter(ImageFilter.MinFilter(3))
        # thinning would erase the strokes of a light face: keep such faces as drawn
        ink = np.asarray(canvas, dtype=np.float32).sum()
        if np.asarray(thinned, dtype=np.float32).sum() >= 0.6 * ink:
            canvas = thinned
    box = canvas.getbbox()
    return canvas.crop(box) if box else None


def render_glyphs(
    chars: str,
    *,
    per_class: int = 200,
    size: int = 32,
    seed: int = 0,
    typeface: str | None = None,
    jitter: GlyphJitter = GlyphJitter(),
) -> tuple[np.ndarray, np.ndarray, list[str], list[str]]:
    """Render ``per_class`` jittered samples of every character that an installed face covers.

    Parameters
    ----------
    chars : str
        One class per character.
    per_class : int
        Samples per character; faces are used in turn so each covering face appears about
        equally often.
    size : int
        Output side in pixels.
    seed : int
        Seed of every random draw.
    typeface : str, optional
        Only faces of this kind (``"serif"``, ``"sans"``, ``"mono"``) or whose family name
        contains this text (``"DejaVu"``, ``"Noto Serif"``).
    jitter : GlyphJitter
        Ranges of the random distortions.

    Returns
    -------
    images : np.ndarray
        ``(n, size, size)`` uint8.
    labels : np.ndarray
        ``(n,)`` int64 index into ``rendered``.
    rendered : list of str
        The characters that got images, in label order.
    faces : list of str
        Labels of the faces used.
    """
    rng = np.random.default_rng(seed)
    big = 2 * size
    fonts: dict = {}
    masks, labels, rendered, used = [], [], [], set()
    for ch in chars:
        faces = covering_fonts(ch, typeface)
        weights = rng.choice([-1, 0, 1, 2], p=_weight_p(jitter), size=per_class)
        masters: dict = {}
        good: list[FontFace] = []
        for f in faces:  # keep only faces that leave ink for this character
            m = _master(f, ch, 0, fonts)
            if m is not None:
                masters[(f, 0)] = m
                good.append(f)
        if not good:
            continue
        order = [good[i % len(good)] for i in rng.permutation(len(good))]
        label = len(rendered)
        rendered.append(ch)
        draws = np.column_stack(
            [
                rng.uniform(*jitter.scale, size=per_class),
                np.deg2rad(rng.uniform(-jitter.rotation_deg, jitter.rotation_deg, size=per_class)),
                1.0 + rng.uniform(-jitter.aspect, jitter.aspect, size=per_class),
                rng.uniform(-jitter.shear, jitter.shear, size=per_class),
                rng.uniform(-jitter.translate, jitter.translate, size=(per_class, 2)),
            ]
        )  # (per_class, 6)
        for i in range(per_class):
            face, weight = order[i % len(order)], int(weights[i])
            if (face, weight) not in masters:
                masters[(face, weight)] = _master(face, ch, weight, fonts) or masters[(face, 0)]
            masks.append(_jittered(masters[(face, weight)], big, draws[i]))
            labels.append(label)
            used.add(face.label)
    if not masks:
        return np.zeros((0, size, size), np.uint8), np.zeros(0, np.int64), [], []
    stack = np.stack(masks).astype(np.float32) / 255.0  # (n, size, size) ink coverage
    n = len(stack)
    bg = rng.uniform(*jitter.background, size=(n, 1, 1))
    ink = rng.uniform(*jitter.ink, size=(n, 1, 1))
    sigma = rng.uniform(*jitter.noise_sigma, size=(n, 1, 1))
    pixels = bg + (ink - bg) * stack + rng.standard_normal(stack.shape) * sigma
    images = np.clip(np.rint(pixels), 0, 255).astype(np.uint8)
    return images, np.asarray(labels, dtype=np.int64), rendered, sorted(used)


def _weight_p(j: GlyphJitter) -> list[float]:
    normal = max(0.0, 1.0 - j.bold_probability - j.thin_probability)
    return [j.thin_probability, normal, j.bold_probability / 2, j.bold_probability / 2]


def _jittered(master: Image.Image, big: int, draw: np.ndarray) -> np.ndarray:
    """One affine view of a master drawing on a ``big`` x ``big`` canvas, box-reduced to half.

    ``draw`` holds the sample's uniform draws: em scale, rotation (rad), aspect, shear, shift x, y.
    """
    w, h = master.size
    em, theta, aspect, shear, dx, dy = (float(v) for v in draw)
    k = min(em * big / RENDER_PX, 0.92 * big / max(w, h))  # never let a tall or wide glyph leave the canvas
    # forward (master -> canvas) = rotation @ shear @ diag(k * aspect, k); PIL wants its inverse
    c, s = math.cos(theta), math.sin(theta)
    sx, sy = 1.0 / (k * aspect), 1.0 / k
    a, b = sx * (c + shear * s), sx * (s - shear * c)  # first row of diag^-1 @ shear^-1 @ rotation^T
    d, e = sy * -s, sy * c
    cx, cy = big / 2 + dx * big, big / 2 + dy * big
    data = (a, b, w / 2 - a * cx - b * cy, d, e, h / 2 - d * cx - e * cy)
    out = master.transform((big, big), Image.Transform.AFFINE, data, resample=Image.Resampling.BILINEAR)
    return np.asarray(out.reduce(2))


# ------------------------------------------------------------------------------------------ loader
def load_glyphs(
    script: str,
    *,
    per_class: int = 200,
    size: int = 32,
    seed: int = 0,
    typeface: str | None = None,
    chars: tuple[int, int] | None = None,
    jitter: GlyphJitter = GlyphJitter(),
) -> Dataset:
    """Render one registered script (or a range of its characters) as a classification task.

    Parameters
    ----------
    script : str
        A key of :data:`SCRIPTS` (e.g. ``"greek-lower"``).
    per_class : int
        Samples per character (hundreds give a task to train on; tests use a handful).
    size : int
        Output side in pixels.
    seed : int
        Seed of the rendering; the same seed gives the same pixels.
    typeface : str, optional
        Restrict to ``"serif"``, ``"sans"``, ``"mono"`` faces or to families whose name contains
        this text.
    chars : (int, int), optional
        Only the script's characters ``start:stop`` (0-based, in the script's order), so a large
        script can be split into tasks of fewer classes.
    jitter : GlyphJitter
        Ranges of the random distortions.

    Returns
    -------
    Dataset
        ``(n, size, size, 1)`` uint8 grey, one class per covered character (named by its
        Unicode name, e.g. ``"greek small letter alpha"``).

    Raises
    ------
    DatasetError
        If the script is unknown, the arguments are out of range, or fewer than two characters
        are covered by installed fonts.
    """
    if script not in SCRIPTS:
        raise DatasetError(f"Unknown glyph script '{script}'." + did_you_mean(script, SCRIPTS))
    if not 1 <= int(per_class) <= 10_000:
        raise DatasetError(f"Glyph per_class must be between 1 and 10000, got {per_class}.")
    if not 8 <= int(size) <= 256:
        raise DatasetError(f"Glyph size must be between 8 and 256 pixels, got {size}.")
    spec = SCRIPTS[script]
    wanted = spec.chars
    if chars is not None:
        start, stop = (int(c) for c in chars)
        if not 0 <= start < stop <= len(spec.chars):
            raise DatasetError(
                f"Glyph chars must be a range (start, stop) within 0..{len(spec.chars)} of script '{script}', "
                f"got {tuple(chars)}."
            )
        wanted = spec.chars[start:stop]
    images, labels, rendered, faces = render_glyphs(
        wanted, per_class=int(per_class), size=int(size), seed=seed, typeface=typeface, jitter=jitter
    )
    which = f"{spec.title}{' in ' + typeface + ' typefaces' if typeface else ''}"
    if len(rendered) < 2:
        raise DatasetError(
            f"Glyphs '{script}': {which} needs fonts covering at least 2 of its {len(wanted)} characters, "
            f"found {len(rendered)}; {INSTALL_HINT}."
        )
    if len(rendered) < len(wanted):
        warnings.warn(
            f"glyphs '{script}': {len(wanted) - len(rendered)} of {len(wanted)} characters have no "
            f"installed typeface{' of kind ' + typeface if typeface else ''} and were left out.",
            TansWarning,
            stacklevel=2,
        )
    return Dataset(
        images=images[..., None],
        labels=labels,
        class_names=tuple(class_name(ch) for ch in rendered),
        name=f"glyphs-{script}" + (f"-{typeface.lower().replace(' ', '-')}" if typeface else ""),
        family=spec.group,
        source=f"installed fonts ({len(faces)} faces: {', '.join(faces[:8])}{' ...' if len(faces) > 8 else ''})",
        licence=LICENCE,
        seed=seed,
    )
