"""The CycleGAN authors' pretrained generators, for ``ganforge models fetch NAME`` and ``translate NAME``.

The names and the URL scheme ``<SERVER>/<NAME>.pth`` are those of the authors' download script
(``scripts/download_cyclegan_model.sh`` in pytorch-CycleGAN-and-pix2pix). Each file is one ResNet
generator (9 residual blocks, ngf 64, instance norm) as a plain state dict, which the plugin's
``reference`` format reads. The ``style_*`` models turn photos into paintings; the others are one
direction of a CycleGAN trained on the dataset of that name (``ganforge fetch --list``).
"""

from __future__ import annotations

from ganforge.hookspecs import ModelSourceRegister
from ganforge_cyclegan.reference import FORMAT

#: Where the CycleGAN authors serve their pretrained generators, as ``<SERVER>/<name>.pth``.
SERVER = "http://efrosgans.eecs.berkeley.edu/cyclegan/pretrained_models"

#: The files on that server (in the order of the authors' script), with what each generator does.
MODELS: dict[str, str] = {
    "apple2orange": "apple -> orange",
    "orange2apple": "orange -> apple",
    "summer2winter_yosemite": "Yosemite in summer -> in winter",
    "winter2summer_yosemite": "Yosemite in winter -> in summer",
    "horse2zebra": "horse -> zebra",
    "zebra2horse": "zebra -> horse",
    "monet2photo": "Monet painting -> photo",
    "style_monet": "photo -> Monet painting",
    "style_cezanne": "photo -> Cezanne painting",
    "style_ukiyoe": "photo -> ukiyo-e print",
    "style_vangogh": "photo -> Van Gogh painting",
    "sat2map": "aerial photo -> map tile (trained unpaired)",
    "map2sat": "map tile -> aerial photo (trained unpaired)",
    "cityscapes_photo2label": "street photo -> label map (trained unpaired)",
    "cityscapes_label2photo": "label map -> street photo (trained unpaired)",
    "facades_photo2label": "facade photo -> label map (trained unpaired)",
    "facades_label2photo": "label map -> facade photo (trained unpaired)",
    "iphone2dslr_flower": "phone flower photo -> DSLR look (shallow depth of field)",
}


def register_models(register: ModelSourceRegister) -> None:
    for name, translates in MODELS.items():
        register(
            name,
            f"{SERVER}/{name}.pth",
            translates=translates,
            summary="CycleGAN authors' pretrained ResNet generator",
            weights_format=FORMAT,
        )
