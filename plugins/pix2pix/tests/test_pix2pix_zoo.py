"""The pix2pix authors' pretrained U-Nets: registered as ``pix2pix_<name>``, read by ``reference_unet``.

The real files cannot be downloaded here: a loopback HTTP server serves a small U-Net with batch norm
in the authors' key layout (which the core's ``unet`` shares) under a registered name, reached through
the mirror variable ``GANFORGE_MODEL_URL``.
"""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import torch
from ganforge_pix2pix.reference import looks_like_reference_unet
from ganforge_pix2pix.zoo import MODELS, SERVER

from ganforge.builtins.networks import UnetGenerator
from ganforge.cli import main
from ganforge.errors import CheckpointError
from ganforge.inference import load_generator
from ganforge.plugins import collect_model_sources, make_plugin_manager

AUTHORS = "http://efrosgans.eecs.berkeley.edu/pix2pix/models-pytorch"

#: The names in the authors' scripts/download_pix2pix_model.sh, in its order.
SCRIPT = ["edges2shoes", "sat2map", "map2sat", "facades_label2photo", "day2night"]


def test_every_model_of_the_authors_script_is_registered_with_the_prefix():
    sources = collect_model_sources(make_plugin_manager())
    ours = [s for s in sources if s.plugin == "pix2pix"]
    assert [s.name for s in ours] == [f"pix2pix_{name}" for name in SCRIPT]
    assert list(MODELS) == SCRIPT and SERVER == AUTHORS
    for source, name in zip(ours, SCRIPT, strict=True):
        assert (source.url, source.weights_format) == (f"{AUTHORS}/{name}.pth", "reference_unet")


def authors_unet(num_downs: int = 5) -> tuple[UnetGenerator, dict[str, torch.Tensor]]:
    """A batch-norm U-Net with non-trivial running statistics, and its state dict as PyTorch 0.4.0
    wrote it (no ``num_batches_tracked``)."""
    torch.manual_seed(0)
    net = UnetGenerator(3, 3, ngf=2, num_downs=num_downs, norm="batch")
    for module in net.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            module.running_mean.uniform_(-0.5, 0.5)
            module.running_var.uniform_(0.5, 2.0)
            module.weight.data.uniform_(0.5, 1.5)
    state = {k: v for k, v in net.state_dict().items() if not k.endswith("num_batches_tracked")}
    return net.eval(), state


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


def test_pretrained_unet_by_name_gives_the_networks_outputs(mirror, tmp_path, monkeypatch):
    url, files = mirror
    net, state = authors_unet()
    path = tmp_path / "facades_label2photo.pth"
    torch.save(state, path)
    files["/pix2pix_facades_label2photo.pth"] = path.read_bytes()
    monkeypatch.setenv("GANFORGE_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("GANFORGE_MODEL_URL", url)
    monkeypatch.delenv("GANFORGE_OFFLINE", raising=False)
    generator = load_generator("pix2pix_facades_label2photo")
    assert generator.spec == {
        "type": "unet",
        "in_channels": 3,
        "out_channels": 3,
        "ngf": 2,
        "num_downs": 5,
        "upsample": "transpose",
        "norm": "batch",
        "norm_affine": True,
    }
    assert generator.kind == "reference_unet" and generator.plugin == "builtin.networks"
    assert generator.source == tmp_path / "cache" / "models" / "pix2pix_facades_label2photo.pth"
    x = torch.rand(2, 3, 32, 32) * 2 - 1
    with torch.no_grad():
        assert torch.equal(generator(x), net(x))  # eval mode: the running statistics are used
    # export takes the name too (from the cache now: nothing more is downloaded)
    with pytest.raises(SystemExit) as exit_info:
        main(
            [
                "export",
                "pix2pix_facades_label2photo",
                "--out",
                str(tmp_path / "exported"),
                "--to",
                "safetensors",
            ]
        )
    assert exit_info.value.code == 0
    exported = load_generator(tmp_path / "exported" / "pix2pix_facades_label2photo.safetensors")
    with torch.no_grad():
        assert torch.equal(exported(x), net(x))


def test_detected_without_a_name_and_a_misfit_named(tmp_path):
    net, state = authors_unet(num_downs=6)
    state = {f"module.{k}": v for k, v in state.items()}  # DataParallel
    assert looks_like_reference_unet(state)
    path = tmp_path / "latest_net_G.pth"
    torch.save(state, path)
    generator = load_generator(path)
    assert (generator.kind, generator.spec["num_downs"]) == ("pix2pix", 6)  # detected: the plugin's name
    x = torch.rand(1, 3, 64, 64) * 2 - 1
    with torch.no_grad():
        assert torch.equal(generator(x), net(x))
    broken = {k.removeprefix("module."): v for k, v in state.items() if ".model.5.weight" not in k}
    torch.save(broken, path)
    with pytest.raises(
        CheckpointError, match=r"do not fit generator 'unet' .*missing: .*model\.model\.1\.model\.5\.weight"
    ):
        load_generator(path, weights_format="reference_unet")
