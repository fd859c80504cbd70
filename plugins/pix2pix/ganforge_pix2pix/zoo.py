"""The pix2pix authors' pretrained generators, for ``ganforge models fetch NAME`` and ``translate NAME``.

The files and the URL scheme ``<SERVER>/<file>.pth`` are those of the authors' download script
(``scripts/download_pix2pix_model.sh`` in pytorch-CycleGAN-and-pix2pix). Each is one ``unet_256``
generator (8 levels, ngf 64, batch norm) as a plain state dict, which the plugin's ``reference_unet``
format reads. They are registered as ``pix2pix_<file>``, since the CycleGAN plugin registers its own
``sat2map``, ``map2sat`` and ``facades_label2photo`` under the plain names (a name belongs to one plugin).
"""

from __future__ import annotations

from ganforge.hookspecs import ModelSourceRegister
from ganforge_pix2pix.reference import FORMAT

#: Where the pix2pix authors serve their pretrained generators, as ``<SERVER>/<file>.pth``.
SERVER = "http://efrosgans.eecs.berkeley.edu/pix2pix/models-pytorch"

#: Registered names are this prefix plus the file's name.
PREFIX = "pix2pix_"

#: The files on that server (in the order of the authors' script), with what each generator does.
MODELS: dict[str, str] = {
    "edges2shoes": "edge map -> shoe photo",
    "sat2map": "aerial photo -> map tile",
    "map2sat": "map tile -> aerial photo",
    "facades_label2photo": "label map -> facade photo",
    "day2night": "daytime scene -> night",
}


def register_models(register: ModelSourceRegister) -> None:
    for name, translates in MODELS.items():
        register(
            f"{PREFIX}{name}",
            f"{SERVER}/{name}.pth",
            translates=translates,
            summary="pix2pix authors' pretrained unet_256 generator (batch norm)",
            weights_format=FORMAT,
        )
