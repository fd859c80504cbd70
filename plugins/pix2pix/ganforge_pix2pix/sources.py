"""The pix2pix authors' paired archives, for ``ganforge fetch NAME``: ``<SERVER>/<NAME>.tar.gz``.

Each unpacks to ``<name>/train/``, ``val/`` and (for most) ``test/``, every image a pair side by side,
which ``paired_folder`` reads. Which half is which differs per set; the summaries say it, left | right.
"""

from __future__ import annotations

from ganforge.hookspecs import SourceRegister

#: Where the pix2pix authors serve their datasets, as ``<SERVER>/<name>.tar.gz``.
SERVER = "http://efrosgans.eecs.berkeley.edu/pix2pix/datasets"

#: The archives on that server, with one line each for ``ganforge fetch --list`` (left | right half).
DATASETS: dict[str, str] = {
    "facades": "CMP building facades: photo | label map (400 train, 100 val, 106 test)",
    "cityscapes": "Cityscapes street scenes: photo | label map (2,975 train, 500 val)",
    "maps": "Google Maps, New York: aerial photo | map tile (1,096 train, 1,098 val)",
    "edges2shoes": "shoes: edge map | photo (about 50k train, 200 val)",
    "edges2handbags": "handbags: edge map | photo (about 137k train, 200 val)",
    "night2day": "outdoor webcam scenes: night | day (Laffont et al. 2014)",
}


def register_sources(register: SourceRegister) -> None:
    for name, summary in DATASETS.items():
        register(name, f"{SERVER}/{name}.tar.gz", archive="tar.gz", summary=summary, layout="paired")
