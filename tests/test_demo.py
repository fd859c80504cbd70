"""``ganforge demo``: a real server on 127.0.0.1, driven over HTTP, against ``ganforge translate``.

The server is the real command in a subprocess, on a tiny run (ngf 4, one block, 32 px), with every
outgoing connection that is not to the loopback recorded and refused: the page must work with
nothing leaving the machine. One image of an odd size (50x37) goes through Gradio's own client, and
each direction's output must equal, pixel for pixel, what ``ganforge translate`` writes for it.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from ganforge.cli import main
from ganforge.demo import INSTALL_HINT, load_panels
from ganforge.errors import GanforgeError
from tests.conftest import ROOT, run_cli
from tests.test_translate import make_run, noise_image

pytestmark = pytest.mark.usefixtures("one_thread")

#: Runs the command with every connection that is not to the loopback logged ("OUTSIDE ...") and refused.
LOOPBACK_ONLY = """
import ipaddress, socket, sys

def local(host):
    try:
        return ipaddress.ip_address(host.split('%')[0]).is_loopback
    except ValueError:
        return host == 'localhost'

real_connect = socket.socket.connect
real_getaddrinfo = socket.getaddrinfo

def connect(self, address):
    if self.family in (socket.AF_INET, socket.AF_INET6) and not local(str(address[0])):
        sys.stderr.write(f'OUTSIDE connect {address}\\n')
        raise OSError('refused by the test: not the loopback')
    return real_connect(self, address)

def getaddrinfo(host, *args, **kwargs):
    if host is not None and not local(host if isinstance(host, str) else host.decode()):
        sys.stderr.write(f'OUTSIDE lookup {host}\\n')
        raise socket.gaierror('refused by the test: not the loopback')
    return real_getaddrinfo(host, *args, **kwargs)

socket.socket.connect = connect
socket.getaddrinfo = getaddrinfo
from ganforge.cli import main
main(sys.argv[1:])
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def answers(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex(("127.0.0.1", port)) == 0


def environment() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("GANFORGE_")}


class Server:
    def __init__(self, process: subprocess.Popen[str], port: int, lines: list[str]) -> None:
        self.process, self.port, self.lines = process, port, lines
        self.url = f"http://127.0.0.1:{port}/"


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    return make_run(tmp_path_factory.mktemp("demo") / "run")


@pytest.fixture(scope="module")
def server(run_dir, tmp_path_factory):
    """``ganforge demo RUN`` on a free port, loopback only; stopped with SIGINT at the end."""
    port = free_port()
    env = environment()
    env["GRADIO_TEMP_DIR"] = str(tmp_path_factory.mktemp("gradio"))
    started = time.perf_counter()
    process = subprocess.Popen(
        [
            sys.executable,
            "-c",
            LOOPBACK_ONLY,
            "demo",
            str(run_dir),
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--backend",
            "direct",  # torch's layers on both sides of the comparison (no kernels compiled in CI)
        ],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    lines: list[str] = []
    try:
        line = ""
        while "serving at" not in line:  # printed once the server answers
            line = process.stdout.readline()
            if not line:
                pytest.fail(f"the demo exited: {process.wait()} {process.stderr.read()}")
            lines.append(line)
            assert time.perf_counter() - started < 120, lines
        assert answers(port)
        print(f"demo server up in {time.perf_counter() - started:.1f} s")
        yield Server(process, port, lines)
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGINT)  # Ctrl-C
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
                pytest.fail("the demo did not stop on Ctrl-C within 30 s")


def test_page_names_both_directions(server) -> None:
    with urllib.request.urlopen(server.url, timeout=30) as response:
        assert response.status == 200
        page = response.read().decode()
    assert '"title":"ganforge demo"' in page
    # the page carries its layout as JSON; the labels are the model's directions
    labels = {json.loads(f'"{m}"') for m in re.findall(r'"label":\s*"((?:[^"\\]|\\.)*)"', page)}
    assert {"AtoB: A -> B (G_A)", "BtoA: B -> A (G_B)", "Image to translate"} <= labels
    assert server.lines[-1] == f"serving at {server.url}; Ctrl-C stops it\n"
    assert server.lines[-2] == "generator: AtoB: A -> B (G_A); BtoA: B -> A (G_B) on cpu\n"


def test_page_output_equals_translate_for_each_direction(server, run_dir, tmp_path, capsys) -> None:
    from gradio_client import Client, handle_file

    image = tmp_path / "photo.png"
    noise_image(image, 50, 37)  # neither side a multiple of 4: padded and cropped back
    client = Client(server.url, verbose=False, download_files=str(tmp_path / "downloads"))
    started = time.perf_counter()
    a_to_b, b_to_a, timing = client.predict(handle_file(str(image)), api_name="/translate")
    seconds = time.perf_counter() - started
    assert timing.startswith("50x37 px; AtoB ")
    for direction, served in (("AtoB", a_to_b), ("BtoA", b_to_a)):
        out = tmp_path / direction
        try:
            main(
                [
                    "translate",
                    str(run_dir),
                    str(image),
                    "--out",
                    str(out),
                    "-d",
                    direction,
                    "--backend",
                    "direct",
                ]
            )
        except SystemExit as exc:
            assert not exc.code, capsys.readouterr().err
        expected = np.asarray(Image.open(out / "photo.png"))
        got = np.asarray(Image.open(served))
        assert got.shape == expected.shape == (37, 50, 3)
        assert np.array_equal(got, expected), np.abs(got.astype(int) - expected).max()
    assert not np.array_equal(np.asarray(Image.open(a_to_b)), np.asarray(Image.open(b_to_a)))
    print(f"one image, both directions, over HTTP: {seconds:.2f} s")


def test_a_taken_port_is_one_line(server, run_dir) -> None:
    result = run_cli("demo", str(run_dir), "--port", str(server.port), "--backend", "direct")
    assert result.returncode == 1
    assert (
        result.stderr.splitlines()[-1]
        == f"error: --port {server.port}: in use on 127.0.0.1; choose another --port"
    )
    assert "serving at" not in result.stdout


def test_ctrl_c_stops_it_and_nothing_left_the_machine(server) -> None:
    server.process.send_signal(signal.SIGINT)
    out, err = server.process.communicate(timeout=30)
    assert server.process.returncode == 0, err
    assert out.splitlines()[-1] == "stopped"
    assert "OUTSIDE" not in err, err
    assert "Traceback" not in err, err
    assert not answers(server.port)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["no-such-run/"], "error: no-such-run: no such file"),
        (["RUN", "--direction", "CtoD"], "error: --direction 'CtoD'"),
        (["RUN", "--tile", "10"], "error: --tile 10: use a multiple of 4, at least 16 (or 0 to never tile)"),
    ],
)
def test_a_bad_source_or_option_is_one_line_before_serving(run_dir, args, message, capsys) -> None:
    port = free_port()
    args = [str(run_dir) if a == "RUN" else a for a in args]
    with pytest.raises(SystemExit) as stopped:
        main(["demo", *args, "--port", str(port), "--backend", "direct"])
    assert stopped.value.code == 1
    captured = capsys.readouterr()
    errors = captured.err.splitlines()
    assert len(errors) == 1 and errors[0].startswith(message), captured.err
    assert "serving at" not in captured.out and not answers(port)


def test_without_gradio_one_line_says_what_to_install(run_dir) -> None:
    code = "import sys; sys.modules['gradio'] = None\nfrom ganforge.cli import main\nmain(sys.argv[1:])"
    result = subprocess.run(
        [sys.executable, "-c", code, "demo", str(run_dir)],
        check=False,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 1
    assert result.stderr == f"error: {INSTALL_HINT}\n"
    assert INSTALL_HINT == 'the demo page needs Gradio: pip install "ganforge[demo]"'


# -------------------------------------------------------------------------------------------------
# Panels, without a server
# -------------------------------------------------------------------------------------------------


def test_a_checkpoint_gives_a_panel_per_declared_direction(run_dir) -> None:
    panels = load_panels(run_dir, backend="direct")
    assert [p.title for p in panels] == ["AtoB: A -> B (G_A)", "BtoA: B -> A (G_B)"]
    assert [p.generator.net for p in panels] == ["G_A", "G_B"]
    only = load_panels(run_dir, directions=["b-to-a"], backend="direct")
    assert [p.generator.net for p in only] == ["G_B"]
    both = load_panels(run_dir, directions=["BtoA", "AtoB", "B2A"], backend="direct")
    assert [p.generator.net for p in both] == ["G_B", "G_A"]


def test_an_export_gives_one_panel(run_dir, tmp_path) -> None:
    import ganforge

    (exported,) = ganforge.export(ganforge.load(run_dir, direction="BtoA"), tmp_path, to=["safetensors"])
    panels = load_panels(exported.path, backend="direct")
    assert len(panels) == 1 and panels[0].generator.kind == "safetensors"
    assert panels[0].title == panels[0].generator.label
    with pytest.raises(GanforgeError, match="holds one generator; name one direction at most"):
        load_panels(exported.path, directions=["AtoB", "BtoA"])


def test_example_opens_translated_as_translate_would(run_dir, tmp_path, monkeypatch) -> None:
    """``--example IMAGE``: the page opens with the image and its translations (the screenshot's way)."""
    from ganforge.demo import build_page
    from ganforge.inference import translate_image

    monkeypatch.setenv("GRADIO_TEMP_DIR", str(tmp_path / "gradio"))
    image = tmp_path / "photo.png"
    noise_image(image, 30, 21, seed=3)
    panels = load_panels(run_dir, backend="direct")
    page = build_page(panels, example=image)
    shown = {b.label: b.value for b in page.blocks.values() if type(b).__name__ == "Image"}
    assert set(shown) == {"Image to translate", "AtoB: A -> B (G_A)", "BtoA: B -> A (G_B)"}
    assert Path(shown["Image to translate"]["path"]).read_bytes() == image.read_bytes()
    for panel in panels:
        expected = translate_image(panel.generator, image).permute(1, 2, 0).numpy()
        assert np.array_equal(np.asarray(Image.open(shown[panel.title]["path"])), expected)
    with pytest.raises(GanforgeError, match="--example nope.png: no such file"):
        build_page(panels, example="nope.png")
