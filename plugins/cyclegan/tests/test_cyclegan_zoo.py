"""The CycleGAN authors' pretrained generators reach ``ganforge models`` and ``translate NAME``.

The real files cannot be downloaded here: a loopback HTTP server serves a small generator in the
authors' key layout under a registered name, reached through the mirror variable ``GANFORGE_MODEL_URL``.
"""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np
import pytest
import torch
from ganforge_cyclegan.zoo import MODELS, SERVER
from PIL import Image

from ganforge.builtins.networks import ResnetGenerator
from ganforge.cli import main
from ganforge.plugins import collect_model_sources, make_plugin_manager

AUTHORS = "http://efrosgans.eecs.berkeley.edu/cyclegan/pretrained_models"

#: The names in the authors' scripts/download_cyclegan_model.sh, in its order.
SCRIPT = [
    "apple2orange",
    "orange2apple",
    "summer2winter_yosemite",
    "winter2summer_yosemite",
    "horse2zebra",
    "zebra2horse",
    "monet2photo",
    "style_monet",
    "style_cezanne",
    "style_ukiyoe",
    "style_vangogh",
    "sat2map",
    "map2sat",
    "cityscapes_photo2label",
    "cityscapes_label2photo",
    "facades_photo2label",
    "facades_label2photo",
    "iphone2dslr_flower",
]


def test_every_model_of_the_authors_script_is_registered():
    sources = collect_model_sources(make_plugin_manager())
    ours = [s for s in sources if s.plugin == "cyclegan"]
    assert [s.name for s in ours] == SCRIPT == list(MODELS)
    assert SERVER == AUTHORS
    for source in ours:
        assert (source.url, source.suffix, source.weights_format) == (
            f"{AUTHORS}/{source.name}.pth",
            ".pth",
            "reference",
        )
        assert source.translates
    assert sources.get("style_monet").translates == "photo -> Monet painting"


@pytest.fixture
def mirror():
    files: dict[str, bytes] = {}

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = files.get(self.path)
            if body is None:
                self.send_error(404)
                return
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}", files
    httpd.shutdown()
    httpd.server_close()


def test_translate_style_monet_by_name(mirror, tmp_path, monkeypatch, capsys):
    url, files = mirror
    torch.manual_seed(0)
    net = ResnetGenerator(3, 3, 4, 2, "transpose", False).eval()  # the authors' keys, at toy size
    path = tmp_path / "style_monet.pth"
    torch.save(net.state_dict(), path)
    files["/style_monet.pth"] = path.read_bytes()
    monkeypatch.setenv("GANFORGE_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("GANFORGE_MODEL_URL", url)
    monkeypatch.delenv("GANFORGE_OFFLINE", raising=False)
    pixels = np.random.default_rng(1).integers(0, 256, (16, 12, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(tmp_path / "photo.png")
    with pytest.raises(SystemExit) as exit_info:
        main(
            [
                "translate",
                "style_monet",
                str(tmp_path / "photo.png"),
                "--out",
                str(tmp_path / "out"),
                "--device",
                "cpu",
            ]
        )
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    assert "generator: style_monet (photo -> Monet painting; style_monet.pth (cyclegan: resnet" in out
    assert (tmp_path / "cache" / "models" / "style_monet.pth").read_bytes() == files["/style_monet.pth"]
    with torch.no_grad():
        x = torch.from_numpy(pixels).permute(2, 0, 1)[None].float() / 127.5 - 1
        expected = net(x).clamp(-1, 1).add(1).mul(127.5).round().to(torch.uint8)[0].permute(1, 2, 0).numpy()
    got = np.array(Image.open(tmp_path / "out" / "photo.png"))
    assert np.abs(got.astype(int) - expected.astype(int)).max() <= 1
