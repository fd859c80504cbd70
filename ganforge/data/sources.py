"""Dataset and model sources: which published archives ``ganforge fetch NAME`` and which published
generator weight files ``ganforge models fetch NAME`` can download, and from where.

The core serves nothing itself. Plugins register sources in the ``register_dataset_sources`` hook
(:func:`ganforge.hookspecs.register_dataset_sources`); :func:`ganforge.plugins.collect_dataset_sources`
gathers them into :class:`DatasetSources`, and :func:`ganforge.data.fetch.fetch` downloads one.

A source is a record, not code: a name, the URL of one archive, its format, what the unpacked
folder holds (:data:`LAYOUTS`), optionally its SHA-256 and size, and a one-line summary, e.g.

.. code-block:: python

    register("facades", "https://example.org/datasets/facades.tar.gz", layout="paired",
             summary="building facades: label maps | photos")

Model sources (the ``register_model_sources`` hook) are records of the same kind: a name, the URL of
one weight file (``.pth``, ``.pt``, ``.safetensors`` or ``.onnx``), what the generator translates, the
``--format`` it loads with (``None``: detected), optionally its SHA-256 and size.
"""

from __future__ import annotations

import re
import urllib.parse
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Generic, Protocol, TypeVar

from ganforge.errors import PluginError

#: The archive formats ``fetch`` unpacks, by the file-name ending they are recognised by.
ARCHIVES: dict[str, tuple[str, ...]] = {
    "zip": (".zip",),
    "tar": (".tar",),
    "tar.gz": (".tar.gz", ".tgz"),
    "tar.bz2": (".tar.bz2", ".tbz2"),
    "tar.xz": (".tar.xz", ".txz"),
}

#: What an unpacked archive holds, and the built-in dataset type that reads such a folder.
LAYOUTS: dict[str, tuple[str, str]] = {
    "unpaired": ("trainA/ trainB/ testA/ testB/", "unpaired_folder"),
    "paired": ("train/ test/ (or val/), each image A|B side by side", "paired_folder"),
    "aligned": ("A/train/ B/train/ A/test/ B/test/, pairs matched by file name", "aligned_folders"),
    "images": ("a folder of images", "single_folder"),
    "other": ("anything else", ""),
}

_SAFE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
_SHA256 = re.compile(r"^[0-9a-f]{64}$")


def check_dataset_name(name: object) -> str | None:
    """What is wrong with ``name`` as a dataset (and file) name, or None."""
    if not isinstance(name, str) or not _SAFE_NAME.match(name):
        return "must be letters, digits, '_', '-' or '.', starting with a letter or digit"
    if name.endswith(".part") or any(name.endswith(end) for ends in ARCHIVES.values() for end in ends):
        return "must not end in an archive suffix (.zip, .tar.gz, ...) or .part"
    return None


def archive_of(url: str) -> str | None:
    """The archive format a URL's path ends in (``.../facades.tar.gz`` -> ``tar.gz``), or None."""
    path = urllib.parse.urlsplit(url).path.lower()
    for archive, endings in ARCHIVES.items():
        if path.endswith(endings):
            return archive
    return None


@dataclass(frozen=True)
class DatasetSource:
    """One downloadable archive: ``fetch`` puts its content in ``ROOT/<name>``."""

    name: str
    url: str
    archive: str  # a key of ARCHIVES
    layout: str  # a key of LAYOUTS
    plugin: str  # who registered it ("--base-url" for a name asked of a mirror)
    summary: str = ""
    sha256: str | None = None  # lower-case hex; checked before anything is unpacked
    size: int | None = None  # bytes of the archive

    @property
    def file_name(self) -> str:
        """The archive's file name in ``ROOT`` and on a mirror: ``<name>.<archive>``."""
        return f"{self.name}.{self.archive}"

    @property
    def dataset_type(self) -> str:
        """The built-in dataset type that reads the unpacked folder ("" when none does)."""
        return LAYOUTS[self.layout][1]


def make_source(
    name: object,
    url: object,
    *,
    plugin: str,
    archive: object = None,
    sha256: object = None,
    size: object = None,
    summary: object = "",
    layout: object = "unpaired",
) -> DatasetSource:
    """A checked :class:`DatasetSource`; a bad field is a :class:`PluginError` naming the plugin."""

    def bad(field: str, problem: str) -> PluginError:
        return PluginError(f"plugin '{plugin}': dataset source {name!r}: {field} {problem}")

    if (problem := check_dataset_name(name)) is not None:
        raise bad("name", problem)
    assert isinstance(name, str)
    if not isinstance(url, str) or urllib.parse.urlsplit(url).scheme not in ("http", "https"):
        raise bad("url", f"{url!r} is not an http:// or https:// URL")
    if archive is None:
        archive = archive_of(url)
        if archive is None:
            raise bad(
                "url",
                f"{url!r} does not end in a known archive suffix; pass archive= one of {', '.join(ARCHIVES)}",
            )
    if archive not in ARCHIVES:
        raise bad("archive", f"{archive!r} is not one of {', '.join(ARCHIVES)}")
    if layout not in LAYOUTS:
        raise bad("layout", f"{layout!r} is not one of {', '.join(LAYOUTS)}")
    if sha256 is not None and not (isinstance(sha256, str) and _SHA256.match(sha256.lower())):
        raise bad("sha256", f"{sha256!r} is not 64 hexadecimal digits")
    if size is not None and (isinstance(size, bool) or not isinstance(size, int) or size < 1):
        raise bad("size", f"{size!r} is not a positive number of bytes")
    if not isinstance(summary, str):
        raise bad("summary", f"{summary!r} is not a string")
    return DatasetSource(
        name=name,
        url=url,
        archive=str(archive),
        layout=str(layout),
        plugin=plugin,
        summary=" ".join(summary.split()),
        sha256=sha256.lower() if isinstance(sha256, str) else None,
        size=size,
    )


class _Named(Protocol):
    @property
    def name(self) -> str: ...
    @property
    def plugin(self) -> str: ...


S = TypeVar("S", bound=_Named)


class _Sources(Generic[S]):
    """Registered records by name, in registration order; a name belongs to one plugin."""

    what = "source"

    def __init__(self) -> None:
        self._sources: dict[str, S] = {}

    def add(self, source: S) -> None:
        existing = self._sources.get(source.name)
        if existing is not None:
            raise PluginError(
                f"{self.what} '{source.name}' is registered twice: by plugin '{existing.plugin}' and "
                f"by plugin '{source.plugin}'"
            )
        self._sources[source.name] = source

    def get(self, name: str) -> S | None:
        return self._sources.get(name)

    def names(self) -> list[str]:
        return list(self._sources)

    def __contains__(self, name: object) -> bool:
        return name in self._sources

    def __iter__(self) -> Iterator[S]:
        return iter(self._sources.values())

    def __len__(self) -> int:
        return len(self._sources)


class DatasetSources(_Sources[DatasetSource]):
    """Every registered dataset source by name, in registration order; a name belongs to one plugin."""

    what = "dataset source"


# ------------------------------------------------------------------------------------ model sources

#: The weight files a model source may point at, by the file-name ending they are recognised by.
WEIGHT_SUFFIXES = (".pth", ".pt", ".safetensors", ".onnx")


@dataclass(frozen=True)
class ModelSource:
    """One published generator weight file: ``ganforge models fetch`` puts it in the model cache."""

    name: str
    url: str
    suffix: str  # one of WEIGHT_SUFFIXES: the file in the cache is <name><suffix>
    plugin: str  # who registered it ("--base-url" for a name asked of a mirror)
    summary: str = ""
    translates: str = ""  # what the generator does, "photo -> Monet painting"
    weights_format: str | None = None  # the --format to load it with; None: detect
    sha256: str | None = None
    size: int | None = None

    @property
    def file_name(self) -> str:
        """The file's name in the cache and on a mirror: ``<name><suffix>``."""
        return f"{self.name}{self.suffix}"


def make_model_source(
    name: object,
    url: object,
    *,
    plugin: str,
    summary: object = "",
    translates: object = "",
    weights_format: object = None,
    sha256: object = None,
    size: object = None,
) -> ModelSource:
    """A checked :class:`ModelSource`; a bad field is a :class:`PluginError` naming the plugin."""

    def bad(field: str, problem: str) -> PluginError:
        return PluginError(f"plugin '{plugin}': model source {name!r}: {field} {problem}")

    if not isinstance(name, str) or not _SAFE_NAME.match(name) or name.endswith((".part", *WEIGHT_SUFFIXES)):
        raise bad(
            "name",
            "must be letters, digits, '_', '-' or '.', starting with a letter or digit, "
            "without a file suffix",
        )
    if not isinstance(url, str) or urllib.parse.urlsplit(url).scheme not in ("http", "https"):
        raise bad("url", f"{url!r} is not an http:// or https:// URL")
    path = urllib.parse.urlsplit(url).path.lower()
    suffix = next((s for s in WEIGHT_SUFFIXES if path.endswith(s)), None)
    if suffix is None:
        raise bad("url", f"{url!r} does not end in a weight file suffix ({', '.join(WEIGHT_SUFFIXES)})")
    for field, value in (("summary", summary), ("translates", translates)):
        if not isinstance(value, str):
            raise bad(field, f"{value!r} is not a string")
    if weights_format is not None and not (isinstance(weights_format, str) and weights_format):
        raise bad("weights_format", f"{weights_format!r} is not a format name")
    if sha256 is not None and not (isinstance(sha256, str) and _SHA256.match(sha256.lower())):
        raise bad("sha256", f"{sha256!r} is not 64 hexadecimal digits")
    if size is not None and (isinstance(size, bool) or not isinstance(size, int) or size < 1):
        raise bad("size", f"{size!r} is not a positive number of bytes")
    assert isinstance(summary, str) and isinstance(translates, str)
    return ModelSource(
        name=name,
        url=url,
        suffix=suffix,
        plugin=plugin,
        summary=" ".join(summary.split()),
        translates=" ".join(translates.split()),
        weights_format=weights_format if isinstance(weights_format, str) else None,
        sha256=sha256.lower() if isinstance(sha256, str) else None,
        size=size,
    )


class ModelSources(_Sources[ModelSource]):
    """Every registered model source by name, in registration order; a name belongs to one plugin."""

    what = "model"
