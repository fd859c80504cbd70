"""The CycleGAN authors' archives reach ``ganforge fetch`` through the plugin's dataset-source hook."""

from __future__ import annotations

import pytest

from ganforge.plugins import collect_dataset_sources, make_plugin_manager
from ganforge_cyclegan.sources import DATASETS, SERVER

AUTHORS = "http://efrosgans.eecs.berkeley.edu/cyclegan/datasets"


@pytest.fixture(scope="module")
def sources():
    return collect_dataset_sources(make_plugin_manager())


def test_every_archive_of_the_authors_script_is_registered(sources):
    ours = [source for source in sources if source.plugin == "cyclegan"]
    assert [source.name for source in ours] == list(DATASETS)
    assert SERVER == AUTHORS
    for name in ("apple2orange", "summer2winter_yosemite", "monet2photo", "maps", "facades", "grumpifycat"):
        source = sources.get(name)
        assert source is not None and source.plugin == "cyclegan"
        assert (source.url, source.archive) == (f"{AUTHORS}/{name}.zip", "zip")
    assert sources.get("horse2zebra").layout == "unpaired"
    assert sources.get("mini_pix2pix").layout == "paired"
