"""The CycleGAN authors' archives reach ``ganforge fetch`` through the plugin's dataset-source hook."""

from __future__ import annotations

import json
import re

import pytest
from ganforge_cyclegan.sources import DATASETS, REGISTERED_AS, SERVER

from ganforge.cli import main
from ganforge.data.fetch import FetchError, resolve
from ganforge.plugins import collect_dataset_sources, make_plugin_manager

AUTHORS = "http://efrosgans.eecs.berkeley.edu/cyclegan/datasets"


@pytest.fixture(scope="module")
def sources():
    return collect_dataset_sources(make_plugin_manager())


def test_every_archive_of_the_authors_script_is_registered(sources):
    ours = [source for source in sources if source.plugin == "cyclegan"]
    assert [source.name for source in ours] == [REGISTERED_AS.get(name, name) for name in DATASETS]
    assert SERVER == AUTHORS
    for name in ("apple2orange", "summer2winter_yosemite", "monet2photo", "grumpifycat"):
        source = sources.get(name)
        assert source is not None and source.plugin == "cyclegan"
        assert (source.url, source.archive) == (f"{AUTHORS}/{name}.zip", "zip")


def test_the_unpaired_maps_cityscapes_and_facades_are_renamed_and_keep_their_archive(sources):
    # the plain names belong to the paired originals (the pix2pix plugin's sources)
    for name in ("maps", "cityscapes", "facades"):
        source = sources.get(f"{name}_unpaired")
        assert source is not None and source.plugin == "cyclegan"
        assert (source.url, source.layout) == (f"{AUTHORS}/{name}.zip", "unpaired")
        assert sources.get(name) is None or sources.get(name).plugin != "cyclegan"
    assert sources.get("horse2zebra").layout == "unpaired"
    assert sources.get("mini_pix2pix").layout == "paired"


def test_list_shows_monet2photo_from_the_cyclegan_plugin(capsys, monkeypatch):
    monkeypatch.delenv("GANFORGE_DATASET_URL", raising=False)
    with pytest.raises(SystemExit) as exit_info:
        main(["fetch", "--list"])
    assert exit_info.value.code == 0
    assert re.search(
        r"monet2photo\s+.\s+cyclegan\s+.\s+zip\s+.\s+Monet paintings / photos", capsys.readouterr().out
    )
    with pytest.raises(SystemExit):
        main(["fetch", "--list", "--json"])
    rows = {row["name"]: row for row in json.loads(capsys.readouterr().out)}
    assert rows["monet2photo"]["plugin"] == "cyclegan"
    assert rows["monet2photo"]["url"] == f"{AUTHORS}/monet2photo.zip"


def test_names_resolve_to_the_authors_server_or_a_mirror(sources):
    assert resolve("monet2photo", sources).url == f"{AUTHORS}/monet2photo.zip"
    assert resolve("monet2photo", sources, "http://mirror.example/cg/").url == (
        "http://mirror.example/cg/monet2photo.zip"
    )
    with pytest.raises(FetchError, match=r"unknown dataset 'monet2foto' \(did you mean 'monet2photo'\?\)"):
        resolve("monet2foto", sources)


def test_another_plugin_registering_an_authors_name_is_refused_naming_both(tmp_path, capsys):
    mine = tmp_path / "mine.py"
    mine.write_text(
        "from ganforge import hookimpl\n\n\n"
        "@hookimpl\n"
        "def register_dataset_sources(register):\n"
        '    register("monet2photo", "https://example.org/monet2photo.zip")\n'
    )
    with pytest.raises(SystemExit) as exit_info:
        main(["fetch", "monet2photo", "--plugin", str(mine), "--root", str(tmp_path / "datasets")])
    assert exit_info.value.code == 2
    assert capsys.readouterr().err == (
        f"error: dataset source 'monet2photo' is registered twice: by plugin 'cyclegan' and by plugin '{mine}'\n"
    )
    assert not (tmp_path / "datasets").exists()
