"""``hf://`` sources and the hub folder, against a Hub that the tests serve on 127.0.0.1.

:class:`FakeHub` implements just the endpoints huggingface_hub's ``hf_hub_download`` and
``snapshot_download`` call (2.x): ``HEAD``/``GET /{repo}/resolve/{revision}/{file}`` with the
``X-Repo-Commit``, ``ETag`` and ``Content-Length`` headers, ``GET /api/models/{repo}/revision/{revision}``
(the commit of a branch or tag) and ``GET /api/models/{repo}/tree/{commit}`` (the files of a snapshot),
with the ``X-Error-Code`` headers the client turns into its exceptions. It sends no Xet headers, so
the client downloads over plain HTTP. The client is pointed at it through its endpoint setting
(``HF_ENDPOINT`` in a subprocess's environment; in this process through ``huggingface_hub.constants``,
which reads the environment once, at import) and given a cache under ``tmp_path``.
"""

from __future__ import annotations

import hashlib
import io
import json
import shutil
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote, urlsplit

import numpy as np
import pytest
import torch
from PIL import Image
from rich.console import Console

import ganforge
from ganforge import api
from ganforge.errors import GanforgeError
from ganforge.inference import load_generator, parse_hf
from tests.conftest import RECIPES, TINY_RUN, run_cli
from tests.test_translate import make_run

pytestmark = pytest.mark.usefixtures("one_thread")

huggingface_hub = pytest.importorskip("huggingface_hub")  # the test extra installs it; CI never skips

TINY = [*TINY_RUN, "model.generator.n_blocks=1", "model.generator.ngf=4", "model.discriminator.ndf=4"]


# -------------------------------------------------------------------------------------------------
# A Hub on the loopback interface
# -------------------------------------------------------------------------------------------------


class FakeHub:
    """Model repositories in memory: ``repos[repo_id][revision] = (commit, {path: bytes})``."""

    def __init__(self) -> None:
        self.repos: dict[str, dict[str, tuple[str, dict[str, bytes]]]] = {}
        self.gated: set[str] = set()
        self.requests: list[str] = []
        hub = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def do_HEAD(self) -> None:
                hub.answer(self, body=False)

            def do_GET(self) -> None:
                hub.answer(self, body=True)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def add(self, repo_id: str, files: dict[str, bytes], revision: str = "main") -> str:
        digest = hashlib.sha1(repo_id.encode() + revision.encode())
        for name in sorted(files):
            digest.update(name.encode() + hashlib.sha256(files[name]).digest())
        commit = digest.hexdigest()
        self.repos.setdefault(repo_id, {})[revision] = (commit, dict(files))
        return commit

    def add_folder(self, repo_id: str, folder: Path, revision: str = "main") -> str:
        files = {
            p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()
        }
        return self.add(repo_id, files, revision)

    def stop(self) -> None:
        if self.thread.is_alive():
            self.httpd.shutdown()
            self.httpd.server_close()

    def _revision(self, repo_id: str, revision: str) -> tuple[str, dict[str, bytes]] | None:
        revisions = self.repos[repo_id]
        if revision in revisions:
            return revisions[revision]
        return next((found for found in revisions.values() if found[0] == revision), None)  # a commit

    def answer(self, handler: BaseHTTPRequestHandler, body: bool) -> None:
        self.requests.append(f"{handler.command} {handler.path}")
        parts = [unquote(p) for p in urlsplit(handler.path).path.strip("/").split("/")]
        api = parts[:2] == ["api", "models"]
        if api:
            parts = parts[2:]
        if len(parts) < 4:
            return self.send(handler, 404, b"", {"X-Error-Code": "RepoNotFound"}, body)
        repo_id, action, revision, rest = f"{parts[0]}/{parts[1]}", parts[2], parts[3], parts[4:]
        if repo_id in self.gated:
            return self.send(handler, 403, b"gated", {"X-Error-Code": "GatedRepo"}, body)
        if repo_id not in self.repos:
            return self.send(handler, 401, b"", {"X-Error-Code": "RepoNotFound"}, body)
        found = self._revision(repo_id, revision)
        if found is None:
            return self.send(handler, 404, b"", {"X-Error-Code": "RevisionNotFound"}, body)
        commit, files = found
        if api and action == "revision":
            info = {"id": repo_id, "sha": commit, "siblings": [{"rfilename": name} for name in files]}
            return self.send(
                handler, 200, json.dumps(info).encode(), {"Content-Type": "application/json"}, body
            )
        if api and action == "tree":
            tree = [
                {"type": "file", "path": name, "size": len(data), "oid": hashlib.sha1(data).hexdigest()}
                for name, data in files.items()
            ]
            return self.send(
                handler, 200, json.dumps(tree).encode(), {"Content-Type": "application/json"}, body
            )
        if not api and action == "resolve":
            name = "/".join(rest)
            if name not in files:
                return self.send(
                    handler, 404, b"", {"X-Error-Code": "EntryNotFound", "X-Repo-Commit": commit}, body
                )
            data = files[name]
            etag = f'"{hashlib.sha1(data).hexdigest()}"'
            return self.send(handler, 200, data, {"X-Repo-Commit": commit, "ETag": etag}, body)
        return self.send(handler, 404, b"", {}, body)

    @staticmethod
    def send(
        handler: BaseHTTPRequestHandler, status: int, data: bytes, headers: dict[str, str], body: bool
    ) -> None:
        handler.send_response(status)
        for key, value in headers.items():
            handler.send_header(key, value)
        handler.send_header("Content-Length", str(len(data)))
        handler.end_headers()
        if body:
            handler.wfile.write(data)


# -------------------------------------------------------------------------------------------------
# Fixtures: a tiny model, its hub folder, the Hub serving it, the client pointed at it
# -------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def made(tmp_path_factory) -> dict[str, Path]:
    """A tiny CycleGAN run (ngf 4, 1 block, 32 px), its hub folder, a 32x40 image."""
    base = tmp_path_factory.mktemp("hub")
    run = make_run(base / "run", seed=3)
    folder = base / "folder"
    written = ganforge.export(run, folder, to=["hub-folder"], repo_id="tester/tiny-cyclegan")
    assert [(w.format, w.how, w.max_abs_diff) for w in written] == [
        ("hub-folder", ", net G_A", 0.0),
        ("hub-folder", ", net G_B", 0.0),
    ]
    image = base / "photo.png"
    pixels = (np.random.default_rng(0).random((32, 40, 3)) * 255).astype(np.uint8)
    Image.fromarray(pixels).save(image)
    return {"base": base, "run": run, "folder": folder, "image": image}


@pytest.fixture()
def hub(made, tmp_path, monkeypatch) -> Iterator[FakeHub]:
    """The Hub, serving tester/tiny-cyclegan (main: the hub folder; tag v1: a checkpoint), with this
    process's huggingface_hub pointed at it and caching under tmp_path."""
    from huggingface_hub import constants

    server = FakeHub()
    server.add_folder("tester/tiny-cyclegan", made["folder"])
    server.add(
        "tester/tiny-cyclegan",
        {"checkpoints/latest.pt": (made["run"] / "checkpoints/latest.pt").read_bytes()},
        "v1",
    )
    server.add_folder("tester/tiny-run", made["run"])
    monkeypatch.setattr(constants, "ENDPOINT", server.url)
    monkeypatch.setattr(
        constants, "HUGGINGFACE_CO_URL_TEMPLATE", server.url + "/{repo_id}/resolve/{revision}/{filename}"
    )
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hf" / "hub"))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    for name in ("HF_TOKEN", "HF_HUB_OFFLINE", "GANFORGE_OFFLINE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    yield server
    server.stop()


def hub_env(server: FakeHub, tmp_path: Path, **more: str) -> dict[str, str]:
    """A subprocess's environment: the client pointed at ``server``, its cache under ``tmp_path``."""
    return {
        "HF_ENDPOINT": server.url,
        "HF_HOME": str(tmp_path / "hf"),
        "HF_HUB_DISABLE_TELEMETRY": "1",
        "HF_HUB_OFFLINE": "0",
        "HF_TOKEN": "",
        "OMP_NUM_THREADS": "1",
        **more,
    }


def outputs(generator, seed: int = 0) -> torch.Tensor:
    x = torch.rand(2, 3, 32, 40, generator=torch.Generator().manual_seed(seed)) * 2 - 1
    with torch.no_grad():
        return generator(x)


# -------------------------------------------------------------------------------------------------
# The forms
# -------------------------------------------------------------------------------------------------


def test_the_forms_parse_strictly():
    assert parse_hf("hf://tester/tiny") == parse_hf("hf://tester/tiny")
    whole = parse_hf("hf://tester/tiny")
    assert (whole.repo_id, whole.revision, whole.filename) == ("tester/tiny", None, None)
    one = parse_hf("hf://tester/tiny@v1/checkpoints/latest.pt")
    assert (one.repo_id, one.revision, one.filename) == ("tester/tiny", "v1", "checkpoints/latest.pt")
    pr = parse_hf("hf://tester/tiny@refs/pr/3/model.safetensors")
    assert (pr.revision, pr.filename) == ("refs/pr/3", "model.safetensors")
    assert parse_hf("hf://tester/tiny@refs%2Fpr%2F3").revision == "refs/pr/3"
    assert str(one) == "hf://tester/tiny@v1/checkpoints/latest.pt"
    for bad, why in [
        ("hf://tester", "name the repository as OWNER/REPO"),
        ("hf://tester/tiny/../x.pt", "'..' part"),
        ("hf://tester/tiny//x.pt", "empty"),
        ("hf://tester/tiny@/x.pt", "empty or blank revision"),
        ("hf://tester/tiny/x.pt@v1", "goes right after the repository name"),
        ("hf://datasets/tester/tiny", "model repositories only, not datasets"),
        ("hf://-tester/tiny", "not a valid owner"),
        ("hf://tester/ti--ny", "not a valid repository name"),
    ]:
        with pytest.raises(GanforgeError) as caught:
            parse_hf(bad)
        message = str(caught.value)
        assert (
            "\n" not in message
            and why in message
            and "use hf://OWNER/REPO, hf://OWNER/REPO/PATH/IN/REPO" in message
        )


# -------------------------------------------------------------------------------------------------
# The hub folder
# -------------------------------------------------------------------------------------------------


def test_hub_folder_holds_tensors_config_and_card(made):
    from safetensors import safe_open

    folder = made["folder"]
    assert sorted(p.name for p in folder.iterdir()) == ["README.md", "config.json", "model.safetensors"]
    config = json.loads((folder / "config.json").read_text())
    assert config["format"] == "ganforge.hub-folder" and config["format_version"] == "1"
    assert config["model_type"] == "cyclegan"
    assert [d["name"] for d in config["directions"]] == ["AtoB", "BtoA"]
    assert [d["net"] for d in config["directions"]] == ["G_A", "G_B"]
    assert config["nets"]["G_A"]["generator"] == {
        "type": "resnet", "in_channels": 3, "out_channels": 3, "ngf": 4, "n_blocks": 1,
        "upsample": "resize_conv", "output": "image", "norm": "instance", "init": "normal", "init_gain": 0.02,
    }  # fmt: skip
    assert config["nets"]["G_B"]["in_channels"] == 3 and config["nets"]["G_B"]["size_multiple"] == 4
    assert config["exported_from"] == "run"  # its name, not the local folder it was in
    assert config["training"]["model"]["generator"]["ngf"] == 4
    with safe_open(str(folder / "model.safetensors"), "pt") as f:
        keys = set(f.keys())
        assert f.metadata()["format"] == "ganforge.hub-folder"
        assert json.loads(f.metadata()["config"]) == config
    checkpoint = torch.load(made["run"] / "checkpoints" / "latest.pt", weights_only=True)
    expected = {k for k in checkpoint["model"] if k.split(".")[0] in ("G_A", "G_B")}
    assert keys == expected  # both generators, keyed as in the model's state dict; no discriminators
    card = (folder / "README.md").read_text()
    front = card.split("---\n")[1]
    assert front.splitlines() == [
        "library_name: ganforge", "license: other", "pipeline_tag: image-to-image", "tags:",
        "- ganforge", "- image-to-image", "- gan", "- cyclegan",
    ]  # fmt: skip
    assert "ganforge translate hf://tester/tiny-cyclegan photo.jpg --out out/" in card
    assert "--direction BtoA" in card and "## Training recipe (excerpt)" in card and "ngf = 4" in card
    for path in folder.iterdir():  # no pickle (torch.save's zip or protocol-2 header) anywhere
        head = path.read_bytes()[:2]
        assert head not in (b"PK", b"\x80\x02")


def test_hub_folder_loads_back_as_the_source(made):
    for direction in ("AtoB", "BtoA"):
        source = load_generator(made["run"], direction=direction)
        folder = load_generator(made["folder"], direction=direction)
        alone = load_generator(made["folder"] / "model.safetensors", direction=direction)
        assert folder.net == source.net == alone.net
        assert torch.equal(outputs(folder), outputs(source))
        assert torch.equal(outputs(alone), outputs(source))
    assert not torch.equal(
        outputs(load_generator(made["folder"])), outputs(load_generator(made["folder"], net="G_B"))
    )


def test_a_lone_generator_makes_a_one_net_folder(made, tmp_path):
    (single,) = ganforge.export(made["folder"], tmp_path, to=["safetensors"], name="g", check_size=16)
    written = api.export_hub_folder(single.path, tmp_path / "lone", check_size=16)
    assert [(w.how, w.max_abs_diff) for w in written] == [(", net generator", 0.0)]
    config = json.loads((tmp_path / "lone" / "config.json").read_text())
    assert (
        list(config["nets"]) == ["generator"] and config["directions"] == [] and config["model_type"] is None
    )
    assert "- gan\n---" in (tmp_path / "lone" / "README.md").read_text()  # no model type tag
    assert torch.equal(outputs(load_generator(tmp_path / "lone")), outputs(load_generator(made["run"])))
    assert load_generator(tmp_path / "lone", direction="BtoA").notes == [
        "lone declares no translation directions; --direction does not apply"
    ]
    with pytest.raises(GanforgeError, match="no net 'G_B' to translate with .* exported nets: generator"):
        load_generator(tmp_path / "lone", net="G_B")


def test_export_refuses_to_overwrite_and_checks_the_repo_id(made, tmp_path):
    with pytest.raises(GanforgeError, match="exists; pass --overwrite"):
        ganforge.export(made["run"], made["folder"], to=["hub-folder"])
    with pytest.raises(GanforgeError, match="--repo-id 'a/b/c': use OWNER/REPO"):
        ganforge.export(made["run"], tmp_path / "x", to=["hub-folder"], repo_id="a/b/c")


# -------------------------------------------------------------------------------------------------
# hf:// sources
# -------------------------------------------------------------------------------------------------


def test_translate_by_hf_equals_local_translate(hub, made, tmp_path):
    """The CLI (a subprocess: HF_ENDPOINT read at import) by hf://, against the local folder in-process."""
    local = tmp_path / "local"
    ganforge.translate(
        ganforge.load(made["folder"], direction="BtoA", backend="direct"), made["image"], local
    )
    remote = tmp_path / "remote"
    result = run_cli(
        "translate", "hf://tester/tiny-cyclegan", str(made["image"]), "--out", str(remote),
        "--direction", "BtoA", "--backend", "direct", "--device", "cpu",
        env=hub_env(hub, tmp_path),
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "generator: hf://tester/tiny-cyclegan (G_B of" in result.stdout
    assert np.array_equal(
        np.asarray(Image.open(remote / "photo.png")), np.asarray(Image.open(local / "photo.png"))
    )
    snapshots = list((tmp_path / "hf" / "hub" / "models--tester--tiny-cyclegan" / "snapshots").iterdir())
    assert len(snapshots) == 1 and {p.name for p in snapshots[0].iterdir()} == {
        "README.md", "config.json", "model.safetensors",
    }  # fmt: skip

    # the same cache, offline (the server stopped): the snapshot is used as it is
    hub.stop()
    again = tmp_path / "again"
    result = run_cli(
        "translate", "hf://tester/tiny-cyclegan", str(made["image"]), "--out", str(again),
        "--direction", "BtoA", "--backend", "direct", "--device", "cpu",
        env=hub_env(hub, tmp_path, HF_HUB_OFFLINE="1"),
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert np.array_equal(
        np.asarray(Image.open(again / "photo.png")), np.asarray(Image.open(local / "photo.png"))
    )


def test_one_file_and_a_revision(hub, made):
    source = load_generator(made["run"], direction="AtoB")
    alone = ganforge.load("hf://tester/tiny-cyclegan/model.safetensors", backend="direct")
    assert alone.net == "G_A" and torch.equal(outputs(alone), outputs(source))
    tagged = ganforge.load(
        "hf://tester/tiny-cyclegan@v1/checkpoints/latest.pt", direction="BtoA", backend="direct"
    )
    assert tagged.kind == "checkpoint" and tagged.net == "G_B"
    assert tagged.label.startswith("hf://tester/tiny-cyclegan@v1/checkpoints/latest.pt (G_B of latest.pt")
    assert torch.equal(outputs(tagged), outputs(load_generator(made["run"], direction="BtoA")))
    requests = " ".join(hub.requests)
    assert "/tester/tiny-cyclegan/resolve/v1/checkpoints/latest.pt" in requests
    with pytest.raises(GanforgeError) as caught:  # the file is on v1, not on main
        ganforge.load("hf://tester/tiny-cyclegan/checkpoints/latest.pt")
    assert str(caught.value) == (
        "hf://tester/tiny-cyclegan/checkpoints/latest.pt: tester/tiny-cyclegan has no file 'checkpoints/latest.pt'"
    )
    with pytest.raises(GanforgeError) as caught:
        ganforge.load("hf://tester/tiny-cyclegan@v2/model.safetensors")
    assert str(caught.value) == (
        "hf://tester/tiny-cyclegan@v2/model.safetensors: tester/tiny-cyclegan has no revision 'v2' "
        "(a branch, tag or commit)"
    )


def test_export_eval_and_init_from_by_hf(hub, made, tmp_path):
    # export: the hub folder from the Hub, as a hub folder again and as a safetensors export
    written = ganforge.export("hf://tester/tiny-cyclegan", tmp_path / "out", to=["safetensors", "hub-folder"])
    assert [(w.format, w.path.name, w.max_abs_diff) for w in written[:2]] == [
        ("hub-folder", "model.safetensors", 0.0),
        ("hub-folder", "model.safetensors", 0.0),
    ]
    assert (written[2].format, written[2].path.name) == ("safetensors", "tiny-cyclegan_G_A.safetensors")
    assert written[2].max_abs_diff < 1e-5  # the check runs the "auto" backend (cpu_kernels' rounding)
    again = json.loads((tmp_path / "out" / "config.json").read_text())
    assert again["exported_from"] == "hf://tester/tiny-cyclegan" and list(again["nets"]) == ["G_A", "G_B"]

    # eval: a repository holding a run directory (its snapshot), and a checkpoint in one
    whole = ganforge.evaluate("hf://tester/tiny-run", metrics=["l1"], max_images=2, device="cpu")
    local = ganforge.evaluate(made["run"], metrics=["l1"], max_images=2, device="cpu")
    assert whole.scores == local.scores and set(whole.scores) == {"A2B", "B2A"}
    one = ganforge.evaluate(
        "hf://tester/tiny-cyclegan@v1/checkpoints/latest.pt", metrics=["l1"], max_images=2, device="cpu"
    )
    assert one.scores == local.scores
    with pytest.raises(
        GanforgeError, match="a hub folder holds generators only; evaluation needs a run directory"
    ):
        ganforge.evaluate("hf://tester/tiny-cyclegan", metrics=["l1"], device="cpu")

    # init-from: a new run starts from the hub folder's generators (its discriminators stay as initialised)
    class AtStart:
        def on_train_start(self, trainer) -> None:
            self.G_A = {k: v.detach().cpu().clone() for k, v in trainer.model.G_A.state_dict().items()}
            self.D_A = {k: v.detach().cpu().clone() for k, v in trainer.model.D_A.state_dict().items()}

    seen = AtStart()
    report = io.StringIO()
    ganforge.train(
        RECIPES / "quickstart.toml",
        overrides=[*TINY, "data.length=1", "output.report=false"],
        run_dir=tmp_path / "tuned",
        init_from="hf://tester/tiny-cyclegan",
        callbacks=[seen],
        console=Console(file=report, width=200),
    )
    published = load_generator(made["folder"], net="G_A").module.state_dict()
    assert seen.G_A.keys() == published.keys()
    assert all(torch.equal(seen.G_A[k], v) for k, v in published.items())
    checkpoint = torch.load(made["run"] / "checkpoints" / "latest.pt", weights_only=True)["model"]
    assert not torch.equal(seen.D_A["model.0.weight"], checkpoint["D_A.model.0.weight"])
    lines = [line for line in report.getvalue().splitlines() if line.startswith("initialised")]
    assert lines == [f"initialised {len(published) * 2} tensors (G_A, G_B) from hf://tester/tiny-cyclegan"]


def test_errors_are_one_line(hub, monkeypatch):
    from huggingface_hub import constants

    def error(source: str) -> str:
        with pytest.raises(GanforgeError) as caught:
            ganforge.load(source)
        assert "\n" not in str(caught.value)
        return str(caught.value)

    assert error("hf://tester/missing") == (
        f"hf://tester/missing: no repository tester/missing on {hub.url}, or it is private "
        "(log in with hf auth login, or set HF_TOKEN)"
    )
    hub.gated.add("tester/tiny-cyclegan")
    assert error("hf://tester/tiny-cyclegan/model.safetensors") == (
        "hf://tester/tiny-cyclegan/model.safetensors: tester/tiny-cyclegan is gated: accept its conditions "
        "on its Hub page, then log in (hf auth login, or set HF_TOKEN)"
    )
    hub.gated.clear()
    cache = constants.HF_HUB_CACHE
    asked = len(hub.requests)
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)  # what HF_HUB_OFFLINE=1 sets at import
    assert error("hf://tester/tiny-cyclegan") == (
        f"hf://tester/tiny-cyclegan: not in the Hugging Face cache ({cache}) and offline (HF_HUB_OFFLINE is set): "
        "download it once while online"
    )
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setenv("GANFORGE_OFFLINE", "1")
    assert error("hf://tester/tiny-cyclegan/model.safetensors") == (
        f"hf://tester/tiny-cyclegan/model.safetensors: not in the Hugging Face cache ({cache}) and offline "
        "(GANFORGE_OFFLINE is set): download it once while online"
    )
    assert len(hub.requests) == asked  # offline: the Hub was not even asked
    monkeypatch.delenv("GANFORGE_OFFLINE")
    ganforge.load("hf://tester/tiny-cyclegan/model.safetensors")  # online: downloaded
    monkeypatch.setenv("GANFORGE_OFFLINE", "1")
    hub.repos.clear()  # the cached copy is used; the Hub is not asked
    before = len(hub.requests)
    assert ganforge.load("hf://tester/tiny-cyclegan/model.safetensors").net == "G_A"
    assert len(hub.requests) == before


def test_without_huggingface_hub_one_line_says_what_to_install(made, tmp_path):
    code = (
        "import sys; sys.modules['huggingface_hub'] = None; sys.argv = ['ganforge', *sys.argv[1:]]; "
        "from ganforge.cli import main; main()"
    )
    result = run_cli(
        "-c",
        code,
        "translate",
        "hf://tester/tiny",
        str(made["image"]),
        "--out",
        str(tmp_path / "o"),
        module=False,
    )
    assert result.returncode == 1
    assert result.stderr.strip() == (
        'error: hf://tester/tiny: reading from the Hugging Face Hub needs huggingface_hub: pip install "ganforge[hub]"'
    )


def test_the_cli_exports_a_hub_folder(made, tmp_path):
    if sys.platform == "win32":
        pytest.skip("the same on every platform; one subprocess fewer")
    out = tmp_path / "card"
    result = run_cli(
        "export", str(made["folder"]), "--to", "hub-folder", "--out", str(out), "--net", "G_B",
        "--license", "mit", "--repo-id", "me/night", "--backend", "direct", env={"OMP_NUM_THREADS": "1"},
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert (
        f"hub-folder   {out}/model.safetensors, net G_B  max abs diff vs the source 0.00e+00" in result.stdout
    )
    config = json.loads((out / "config.json").read_text())
    assert list(config["nets"]) == ["G_B"] and [d["name"] for d in config["directions"]] == ["BtoA"]
    card = (out / "README.md").read_text()
    assert "license: mit" in card and "ganforge translate hf://me/night photo.jpg" in card
    shutil.rmtree(out)


@pytest.mark.parametrize("command", ["translate", "export", "eval", "run"])
def test_help_of_the_commands_that_take_hf_sources_renders(command):
    """Their help names the hf:// forms; rich must not read the text as markup (``[/FILE]`` would be)."""
    from typer.testing import CliRunner

    from ganforge.cli import build_app

    result = CliRunner().invoke(build_app(), [command, "--help"], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    assert "hf://OWNER/REPO" in result.output and "@REVISION" in result.output
