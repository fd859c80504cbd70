"""Built-in datasets: synthetic scenes and photo mappings (no download) and image folders (unpaired, paired, aligned, single)."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, model_validator

from ganforge.data.folders import (
    AlignedFolders,
    OnCorrupt,
    OnUnmatched,
    PairedFolder,
    Preprocess,
    SingleFolder,
    UnpairedFolders,
)
from ganforge.data.photos import MAPPINGS, PhotoMappings
from ganforge.data.synthetic import SyntheticScenes
from ganforge.hookspecs import Register, hookimpl
from ganforge.registry import Params

Channels = Literal[1, 3]


class DomainChannels(Params):
    """Channels of the two domains' images (the reference code's input_nc and output_nc)."""

    a_channels: Channels = Field(
        3, description="Channels of domain A's images: 3 (RGB) or 1 (greyscale, converted on loading)."
    )
    b_channels: Channels = Field(
        3, description="Channels of domain B's images: 3 (RGB) or 1 (greyscale, converted on loading)."
    )


class SyntheticScenesParams(DomainChannels):
    size: int = Field(64, ge=16, le=1024, description="Image side in pixels.")
    length: int = Field(200, ge=1, le=10_000_000, description="Training images per domain (one epoch).")
    test_length: int = Field(16, ge=1, le=10_000_000, description="Test pairs.")
    seed: int = Field(0, ge=0, description="Seed of the scenes (independent of the run's seed).")
    min_shapes: int = Field(2, ge=1, le=16, description="Fewest shapes in a scene.")
    max_shapes: int = Field(4, ge=1, le=16, description="Most shapes in a scene.")

    @model_validator(mode="after")
    def _check_range(self) -> SyntheticScenesParams:
        if self.min_shapes > self.max_shapes:
            raise ValueError(f"min_shapes ({self.min_shapes}) is greater than max_shapes ({self.max_shapes})")
        return self


def build_synthetic_scenes(params: SyntheticScenesParams, split: str) -> SyntheticScenes:
    """Random shapes rendered by day (A) and at dusk (B); test pairs share the scene."""
    return SyntheticScenes(
        size=params.size,
        length=params.length if split == "train" else params.test_length,
        seed=params.seed,
        split=split,
        min_shapes=params.min_shapes,
        max_shapes=params.max_shapes,
        a_channels=params.a_channels,
        b_channels=params.b_channels,
    )


class PhotoMappingsParams(DomainChannels):
    mapping: Literal[MAPPINGS] = Field(  # type: ignore[valid-type]
        "grade",
        description="The edit that makes domain B: 'grade' (teal-orange colour grade), 'cartoon' "
        "(smoothing, posterised tones, dark edges) or 'clarity' (local contrast, non-linear).",
    )
    size: int = Field(64, ge=16, le=256, description="Image side in pixels.")
    scale: float = Field(
        0.5,
        ge=0.1,
        le=1.0,
        description="Crop side as a fraction of the photograph's shorter side (at most the test strip's width).",
    )
    length: int = Field(200, ge=1, le=10_000_000, description="Training images per domain (one epoch).")
    test_length: int = Field(40, ge=1, le=100_000, description="Test pairs.")
    seed: int = Field(0, ge=0, description="Seed of the test crops (independent of the run's seed).")
    flip: bool = Field(True, description="Random horizontal flips while training.")


def build_photo_mappings(params: PhotoMappingsParams, split: str) -> PhotoMappings:
    """Crops of scikit-image's bundled photographs (A) and the same crops after a known edit (B); test pairs share the crop."""
    return PhotoMappings(
        mapping=params.mapping,
        size=params.size,
        scale=params.scale,
        length=params.length if split == "train" else params.test_length,
        seed=params.seed,
        split=split,
        flip=params.flip,
        a_channels=params.a_channels,
        b_channels=params.b_channels,
    )


class FolderParams(Params):
    """What every image-folder dataset shares: where, how images are brought to size, unreadable files."""

    root: str = Field(description="Dataset folder (relative to the working directory).")
    preprocess: Literal[
        "resize_and_crop", "crop", "scale_width", "scale_width_and_crop", "none", "resize"
    ] = Field(
        "resize_and_crop",
        description="How images are brought to crop_size ('resize': the whole image resized to crop_size, no crop).",
    )
    load_size: int = Field(286, ge=4, le=16_384, description="Size images are scaled to before cropping.")
    crop_size: int = Field(256, ge=4, le=16_384, description="Side of the crop fed to the networks.")
    flip: bool = Field(True, description="Random horizontal flips while training.")
    on_corrupt: OnCorrupt = Field(
        "error",
        description="An unreadable image: 'error' stops naming the file; 'skip' uses the next image and "
        "logs a warning with a running count.",
    )

    @model_validator(mode="after")
    def _check_sizes(self) -> FolderParams:
        if self.preprocess in ("resize_and_crop", "scale_width_and_crop") and self.crop_size > self.load_size:
            raise ValueError(f"crop_size ({self.crop_size}) is larger than load_size ({self.load_size})")
        return self


class UnpairedFolderParams(DomainChannels, FolderParams):
    root: str = Field(
        description="Folder holding trainA/ trainB/ testA/ testB/ (relative to the working directory)."
    )


class PairedFolderParams(DomainChannels, FolderParams):
    root: str = Field(
        description="Folder holding train/ and test/ of A|B images side by side (relative to the working "
        "directory)."
    )
    a_half: Literal["left", "right"] = Field(
        "left", description="Which half of each image is domain A (the other is B)."
    )
    test_folder: str = Field(
        "test",
        pattern=r"^[A-Za-z0-9_.-]+$",
        description="Subfolder of the test split (some sets only have val/).",
    )


class AlignedFoldersParams(DomainChannels, FolderParams):
    root: str = Field(
        description="Folder holding A/train/ B/train/ A/test/ B/test/, pairs matched by file name "
        "(relative to the working directory)."
    )
    test_folder: str = Field(
        "test",
        pattern=r"^[A-Za-z0-9_.-]+$",
        description="Subfolder of A/ and B/ holding the test split (some sets only have val/).",
    )
    on_unmatched: OnUnmatched = Field(
        "error",
        description="A file name found in one domain's folder only: 'error' stops naming both folders and "
        "the first names; 'skip' leaves those images out with one warning line.",
    )


class SingleFolderParams(FolderParams):
    root: str = Field(
        description="Folder of images, searched recursively (relative to the working directory)."
    )
    preprocess: Literal[
        "resize_and_crop", "crop", "scale_width", "scale_width_and_crop", "none", "resize"
    ] = Field(
        "none", description="How images are brought to crop_size ('none': whole images, sides rounded to 4)."
    )
    flip: bool = Field(False, description="Random horizontal flips for the train split.")
    channels: Channels = Field(
        3, description="Channels of the images: 3 (RGB) or 1 (greyscale, converted on loading)."
    )


def _preprocess(params: FolderParams, split: str) -> Preprocess:
    return Preprocess(params.preprocess, params.load_size, params.crop_size, params.flip, split == "train")


def build_unpaired_folder(params: UnpairedFolderParams, split: str) -> UnpairedFolders:
    """Unpaired images in the reference layout (trainA/ trainB/ testA/ testB/)."""
    return UnpairedFolders(
        Path(params.root),
        split,
        _preprocess(params, split),
        params.on_corrupt,
        a_channels=params.a_channels,
        b_channels=params.b_channels,
    )


def build_paired_folder(params: PairedFolderParams, split: str) -> PairedFolder:
    """Aligned pairs, A|B side by side in one image (root/train/, root/test/; the layout of the common paired archives)."""
    folder = Path(params.root) / (params.test_folder if split == "test" else split)
    return PairedFolder(
        folder,
        _preprocess(params, split),
        params.a_half,
        params.on_corrupt,
        a_channels=params.a_channels,
        b_channels=params.b_channels,
    )


def build_aligned_folders(params: AlignedFoldersParams, split: str) -> AlignedFolders:
    """Aligned pairs in two folders, root/A/<split>/ and root/B/<split>/, matched by file name."""
    return AlignedFolders(
        Path(params.root),
        params.test_folder if split == "test" else split,
        _preprocess(params, split),
        params.on_corrupt,
        params.on_unmatched,
        a_channels=params.a_channels,
        b_channels=params.b_channels,
    )


def build_single_folder(params: SingleFolderParams, split: str) -> SingleFolder:
    """One folder of images as domain A only (input for translation; both splits read it)."""
    return SingleFolder(Path(params.root), _preprocess(params, split), params.on_corrupt, params.channels)


@hookimpl
def register_datasets(register: Register) -> None:
    register("synthetic_scenes", build_synthetic_scenes, params=SyntheticScenesParams)
    register("photo_mappings", build_photo_mappings, params=PhotoMappingsParams)
    register("unpaired_folder", build_unpaired_folder, params=UnpairedFolderParams)
    register("paired_folder", build_paired_folder, params=PairedFolderParams)
    register("aligned_folders", build_aligned_folders, params=AlignedFoldersParams)
    register("single_folder", build_single_folder, params=SingleFolderParams)
