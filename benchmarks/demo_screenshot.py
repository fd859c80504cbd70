"""The screenshot of ``ganforge demo`` in docs/demo.md, taken in headless Chromium, offline.

Usage::

    ganforge run recipes/quickstart.toml --run-dir runs/quickstart --set train.epochs=2
    python benchmarks/demo_screenshot.py runs/quickstart            # writes docs/images/demo.png
    python benchmarks/demo_screenshot.py RUN --out shot.png --chromium /usr/bin/chromium

It starts ``ganforge demo RUN --example SCENE`` on a free port of 127.0.0.1 (SCENE: a 256 px day
scene of the quickstart's synthetic data, test split, so the page opens with it translated both
ways), points Chromium's ``--headless --screenshot`` at the page, and stops the server with Ctrl-C.
Chromium runs with a fresh profile, no background networking, and every host name but 127.0.0.1
mapped to nothing; its network log is then searched for any request that went elsewhere, and
each one found is printed (none is expected: the page's scripts, styles and fonts come from the
server).
"""

from __future__ import annotations

import argparse
import json
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def scene(path: Path, size: int = 256, index: int = 1) -> None:
    """A day scene (domain A) of the quickstart's synthetic data, test split."""
    from PIL import Image

    from ganforge.recipe import load_recipe

    recipe = load_recipe(ROOT / "recipes" / "quickstart.toml", [f"data.size={size}"]).recipe
    image = recipe.data.build("test")[index]["A"]  # (3, H, W) in [-1, 1]
    array = ((image.clamp(-1, 1) + 1) * 127.5).round().byte().permute(1, 2, 0).numpy()
    Image.fromarray(array).save(path)


def outside_requests(netlog: Path) -> tuple[list[str], list[str]]:
    """URLs in a Chromium network log that are not on 127.0.0.1: (asked for by the page, by Chromium itself).

    A request's ``initiator`` tells them apart: the page's own carry its origin (http://127.0.0.1:PORT);
    Chromium's background services (the clock check, account and search pings it makes even for
    ``about:blank``) have none.
    """
    text = netlog.read_text().rstrip().rstrip(",")
    try:
        log = json.loads(text)
    except json.JSONDecodeError:  # Chromium may leave the closing brackets off
        log = json.loads(text + "]}")
    start_job = log["constants"]["logEventTypes"]["URL_REQUEST_START_JOB"]
    local = ("http://127.0.0.1", "ws://127.0.0.1", "data:", "blob:", "chrome:", "about:")
    page, browser = set(), set()
    for event in log.get("events", []):
        params = event.get("params") or {}
        url = params.get("url")
        if event.get("type") != start_job or not isinstance(url, str) or url.startswith(local):
            continue
        (page if str(params.get("initiator", "")).startswith("http://127.0.0.1") else browser).add(url)
    return sorted(page), sorted(browser)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("source", help="what ganforge demo shows (a run directory, checkpoint, export, name)")
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "images" / "demo.png")
    parser.add_argument("--chromium", default="/usr/bin/chromium")
    parser.add_argument("--window", default="1200,680", help="width,height of the browser window")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        example = tmp / "day_scene.png"
        scene(example)
        port = free_port()
        server = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "ganforge",
                "demo",
                args.source,
                "--port",
                str(port),
                "--example",
                str(example),
            ],
            stdout=subprocess.PIPE,
            text=True,
        )
        try:
            started = time.perf_counter()
            line = ""
            while "serving at" not in line:
                line = server.stdout.readline()
                if not line:
                    sys.exit(f"ganforge demo exited with code {server.wait()}")
                print(line, end="")
            print(f"server up in {time.perf_counter() - started:.1f} s")
            netlog = tmp / "netlog.json"
            args.out.parent.mkdir(parents=True, exist_ok=True)
            command = [
                args.chromium,
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--hide-scrollbars",
                f"--user-data-dir={tmp / 'profile'}",
                "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
                f"--log-net-log={netlog}",
                f"--window-size={args.window}",
                "--virtual-time-budget=15000",  # let the page's scripts render before the picture
                f"--screenshot={args.out.resolve()}",
                f"http://127.0.0.1:{port}/",
            ]
            shot = subprocess.run(command, capture_output=True, text=True, timeout=180, check=False)
            if shot.returncode != 0 or not args.out.is_file():
                sys.exit(f"chromium failed ({shot.returncode}): {shot.stderr.strip()[-2000:]}")
            print(f"wrote {args.out}")
            page, browser = outside_requests(netlog)
            print("requests by the page outside 127.0.0.1: " + (", ".join(page) if page else "none"))
            hosts = sorted({url.split("/")[2] for url in browser})
            print(
                f"Chromium's own background requests (not the page's; refused): {', '.join(hosts) or 'none'}"
            )
        finally:
            server.send_signal(signal.SIGINT)
            server.wait(timeout=30)


if __name__ == "__main__":
    main()
