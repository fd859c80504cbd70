"""The CycleGAN authors' dataset archives, for ``ganforge fetch NAME``: ``<SERVER>/<NAME>.zip``.

The names are those of the authors' download script, except three: the unpaired maps, cityscapes
and facades are registered as ``maps_unpaired``, ``cityscapes_unpaired`` and ``facades_unpaired``
(:data:`REGISTERED_AS`), since the paired originals of those sets carry the plain names (the pix2pix
plugin registers them) and a source name belongs to one plugin. Most archives hold the unpaired layout
(``<name>/trainA/ trainB/ testA/ testB/``) that ``unpaired_folder`` reads.
"""

from __future__ import annotations

from ganforge.hookspecs import SourceRegister

#: Where the CycleGAN authors serve their datasets, as ``<SERVER>/<name>.zip``.
SERVER = "http://efrosgans.eecs.berkeley.edu/cyclegan/datasets"

#: The archives on that server.
DATASETS: tuple[str, ...] = (
    "apple2orange",
    "summer2winter_yosemite",
    "horse2zebra",
    "monet2photo",
    "cezanne2photo",
    "ukiyoe2photo",
    "vangogh2photo",
    "maps",
    "cityscapes",
    "facades",
    "iphone2dslr_flower",
    "ae_photos",
    "mini",
    "mini_pix2pix",
    "mini_colorization",
    "grumpifycat",
)

#: Archives registered under another name than their file's (the file on the server keeps its name).
REGISTERED_AS: dict[str, str] = {
    "maps": "maps_unpaired",
    "cityscapes": "cityscapes_unpaired",
    "facades": "facades_unpaired",
}

#: One line each for ``ganforge fetch --list``.
SUMMARIES: dict[str, str] = {
    "apple2orange": "apples / oranges",
    "summer2winter_yosemite": "Yosemite in summer / in winter",
    "horse2zebra": "horses / zebras",
    "monet2photo": "Monet paintings / photos",
    "cezanne2photo": "Cezanne paintings / photos",
    "ukiyoe2photo": "ukiyo-e prints / photos",
    "vangogh2photo": "Van Gogh paintings / photos",
    "maps": "map tiles / aerial photos, unpaired (paired: maps)",
    "cityscapes": "street scene label maps / photos, unpaired (paired: cityscapes)",
    "facades": "facade label maps / photos, unpaired (paired: facades)",
    "iphone2dslr_flower": "flower photos: phone / DSLR",
    "ae_photos": "test photos (by Alexei Efros) to try the pretrained style models on",
    "mini": "a few images in the unpaired layout, for a quick try",
    "mini_pix2pix": "a few A|B pairs, for a quick try",
    "mini_colorization": "a few photos, for a quick try of colorization",
    "grumpifycat": "cats / grumpy cat",
}

#: Archives that do not hold the unpaired layout (for the recipe hint after a fetch).
LAYOUTS: dict[str, str] = {"ae_photos": "images", "mini_pix2pix": "paired", "mini_colorization": "images"}


def register_sources(register: SourceRegister) -> None:
    for name in DATASETS:
        register(
            REGISTERED_AS.get(name, name),
            f"{SERVER}/{name}.zip",
            archive="zip",
            summary=SUMMARIES[name],
            layout=LAYOUTS.get(name, "unpaired"),
        )
