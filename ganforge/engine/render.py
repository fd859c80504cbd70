"""Pictures and a page for a run: loss curves and metric curves as PNG, and a static ``report.html``.

Charts are drawn with PIL alone (small multiples: one panel per series, the raw values in a light
line and a moving average on top), so reports need no plotting library. The page is one HTML file
with its charts and newest sample grid embedded as data URIs and inline CSS, no script: any browser
opens it, from the run directory or copied elsewhere (older sample grids are linked by relative path).
"""

from __future__ import annotations

import base64
import html
import json
import math
import time
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from PIL import Image, ImageDraw, ImageFont

from ganforge.engine.images import encode_png

PANEL_W, PANEL_H = 360, 220
MARGIN_L, MARGIN_R, MARGIN_T, MARGIN_B = 58, 14, 30, 34
BASELINE_COLOUR = (150, 150, 150)  # the identity baseline's lines
PALETTE = [(31, 119, 180), (214, 39, 40), (44, 160, 44), (148, 103, 189), (255, 127, 14), (23, 190, 207),
           (140, 86, 75), (227, 119, 194)]  # fmt: skip

Series = Sequence[tuple[float, float]]


# ------------------------------------------------------------------------------------------ data


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    """The records of a JSONL file; a missing file is empty and a line cut short by a kill is skipped."""
    if not path.is_file():
        return []
    records = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(record, dict):
            records.append(record)
    return records


def loss_series(records: Iterable[dict[str, Any]]) -> dict[str, list[tuple[float, float]]]:
    """Loss name -> ``(step, value)`` from ``metrics.jsonl`` log-window records (epoch records if none)."""
    records = list(records)
    chosen = [r for r in records if r.get("kind") == "step"] or [
        r for r in records if r.get("kind") == "epoch"
    ]
    series: dict[str, list[tuple[float, float]]] = {}
    for record in chosen:
        for name, value in (record.get("losses") or {}).items():
            if isinstance(value, (int, float)) and math.isfinite(value):
                series.setdefault(name, []).append((float(record.get("step", 0)), float(value)))
    return series


def metric_series(
    records: Iterable[dict[str, Any]], key: str = "scores"
) -> dict[str, list[tuple[float, float]]]:
    """``DIRECTION.metric`` -> ``(epoch, value)`` from ``eval.jsonl`` records (``key``: their scores, or
    ``identity_baseline``, the paired scores of "output = input")."""
    series: dict[str, list[tuple[float, float]]] = {}
    for record in records:
        for direction, values in (record.get(key) or {}).items():
            for name, value in values.items():
                if isinstance(value, (int, float)) and math.isfinite(value):
                    series.setdefault(f"{direction}.{name}", []).append(
                        (float(record.get("epoch", 0)), float(value))
                    )
    return series


# ---------------------------------------------------------------------------------------- charts


def _font() -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    try:
        return ImageFont.load_default(size=12)
    except TypeError:  # Pillow < 10.1 has a fixed-size bitmap font only
        return ImageFont.load_default()


def format_number(value: float) -> str:
    if not math.isfinite(value):
        return str(value)
    if float(value).is_integer() and abs(value) < 1e6:
        return str(int(value))
    magnitude = abs(value)
    if magnitude >= 1e5 or magnitude < 1e-3:
        return f"{value:.2e}"
    if magnitude >= 100:
        return f"{value:.0f}"
    return f"{value:.3g}"


def trailing_mean(values: Sequence[float], window: int) -> list[float]:
    """Each value averaged with the ``window - 1`` before it (with fewer at the start)."""
    out, total = [], 0.0
    for i, v in enumerate(values):
        total += v
        if i >= window:
            total -= values[i - window]
        out.append(total / min(i + 1, window))
    return out


def _nice_range(lo: float, hi: float) -> tuple[float, float]:
    if hi - lo < 1e-12 * max(1.0, abs(hi)):
        pad = max(abs(hi) * 0.05, 1e-6)
        return lo - pad, hi + pad
    pad = (hi - lo) * 0.05
    return lo - pad, hi + pad


Line = tuple[str, Series, tuple[int, int, int]]  # label, points, colour


def draw_panel(
    draw: ImageDraw.ImageDraw,
    box: tuple[int, int],
    title: str,
    lines: Sequence[Line],
    x_label: str,
    font: Any,
) -> None:
    """One chart at ``box`` (top-left corner): title, legend, y grid with labels, x range, lines.

    A long line is drawn raw in a light tint with a moving average on top; a short one with markers.
    """
    left, top = box
    x0, y0 = left + MARGIN_L, top + MARGIN_T
    x1, y1 = left + PANEL_W - MARGIN_R, top + PANEL_H - MARGIN_B
    draw.rectangle(
        (left, top, left + PANEL_W - 1, top + PANEL_H - 1), fill=(255, 255, 255), outline=(220, 220, 220)
    )
    draw.text((left + 8, top + 6), title, fill=(20, 20, 20), font=font)
    lines = [line for line in lines if line[1]]
    if not lines:
        draw.rectangle((x0, y0, x1, y1), outline=(160, 160, 160))
        draw.text((x0 + 8, y0 + 8), "no data yet", fill=(120, 120, 120), font=font)
        return
    if len(lines) > 1:  # legend, right-aligned on the title line
        x = left + PANEL_W - MARGIN_R
        for label, _, color in reversed(lines):
            x -= draw.textlength(label, font=font)
            draw.text((x, top + 6), label, fill=color, font=font)
            x -= 16
            draw.line((x, top + 13, x + 12, top + 13), fill=color, width=3)
            x -= 10
    xs = [p[0] for _, points, _ in lines for p in points]
    ys = [p[1] for _, points, _ in lines for p in points]
    lo, hi = _nice_range(min(ys), max(ys))
    x_lo, x_hi = min(xs), max(xs)
    if x_hi == x_lo:
        x_lo, x_hi = x_lo - 1, x_hi + 1

    def px(x: float) -> float:
        return x0 + (x - x_lo) / (x_hi - x_lo) * (x1 - x0)

    def py(y: float) -> float:
        return y1 - (y - lo) / (hi - lo) * (y1 - y0)

    for i in range(5):
        value = lo + (hi - lo) * i / 4
        y = py(value)
        draw.line((x0, y, x1, y), fill=(235, 235, 235))
        label = format_number(value)
        width = draw.textlength(label, font=font)
        draw.text((x0 - 6 - width, y - 7), label, fill=(90, 90, 90), font=font)
    for value, anchor in ((x_lo, "l"), (x_hi, "r")):
        label = format_number(value)
        width = draw.textlength(label, font=font)
        x = px(value) if anchor == "l" else px(value) - width
        draw.text((x, y1 + 4), label, fill=(90, 90, 90), font=font)
    width = draw.textlength(x_label, font=font)
    draw.text(((x0 + x1 - width) / 2, y1 + 16), x_label, fill=(90, 90, 90), font=font)
    draw.rectangle((x0, y0, x1, y1), outline=(160, 160, 160))
    for _, points, color in lines:
        coords = [(px(x), py(y)) for x, y in points]
        if len(coords) == 1:
            cx, cy = coords[0]
            draw.ellipse((cx - 3, cy - 3, cx + 3, cy + 3), fill=color)
            continue
        window = max(1, len(points) // 20)
        if window > 1:
            light = tuple(int(c + (255 - c) * 0.65) for c in color)
            draw.line(coords, fill=light, width=1)
            smooth = trailing_mean([y for _, y in points], window)
            draw.line([(px(x), py(y)) for (x, _), y in zip(points, smooth, strict=True)], fill=color, width=2)
        else:
            draw.line(coords, fill=color, width=2)
            for cx, cy in coords if len(coords) <= 40 else []:
                draw.ellipse((cx - 2, cy - 2, cx + 2, cy + 2), fill=color)


def chart(panels: dict[str, dict[str, Series]], *, x_label: str, columns: int = 4) -> Image.Image:
    """Small multiples: one panel per entry of ``panels``, each with one line per labelled series."""
    names = list(panels)
    columns = max(1, min(columns, len(names) or 1))
    rows = max(1, math.ceil(len(names) / columns))
    image = Image.new("RGB", (columns * PANEL_W, rows * PANEL_H), (250, 250, 250))
    draw = ImageDraw.Draw(image)
    font = _font()
    for i, name in enumerate(names):
        box = ((i % columns) * PANEL_W, (i // columns) * PANEL_H)
        series = {k: v for k, v in panels[name].items() if not k.startswith(IDENTITY)}
        if len(series) == 1:  # one series: a colour of its own per panel
            lines = [(label, points, PALETTE[i % len(PALETTE)]) for label, points in series.items()]
        else:
            lines = [
                (label, points, PALETTE[j % len(PALETTE)]) for j, (label, points) in enumerate(series.items())
            ]
        lines += [(k, v, BASELINE_COLOUR) for k, v in panels[name].items() if k.startswith(IDENTITY)]
        draw_panel(draw, box, name, lines, x_label, font)
    return image


def loss_curves_png(records: Iterable[dict[str, Any]]) -> bytes | None:
    """One panel per loss, over the steps."""
    series = loss_series(records)
    panels = {name: {name: points} for name, points in series.items()}
    return encode_png(chart(panels, x_label="step")) if panels else None


#: Label prefix of the identity baseline's lines (drawn in grey).
IDENTITY = "identity"


def metric_curves_png(records: Iterable[dict[str, Any]]) -> bytes | None:
    """One panel per metric, with a line per direction, over the epochs; where the records hold the
    identity baseline's paired scores, a grey line each (``identity`` when the directions agree)."""
    records = list(records)
    panels: dict[str, dict[str, Series]] = {}
    for key, points in metric_series(records).items():
        direction, name = key.split(".", 1)
        panels.setdefault(name, {})[direction] = points
    baselines: dict[str, dict[str, Series]] = {}
    for key, points in metric_series(records, "identity_baseline").items():
        direction, name = key.split(".", 1)
        if name in panels:
            baselines.setdefault(name, {})[direction] = points
    for name, lines in baselines.items():
        if len({tuple(points) for points in lines.values()}) == 1:  # the same for every direction
            panels[name][IDENTITY] = next(iter(lines.values()))
        else:
            panels[name].update({f"{IDENTITY} {d}": points for d, points in lines.items()})
    return encode_png(chart(panels, x_label="epoch")) if panels else None


# ------------------------------------------------------------------------------------------ page

_CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:24px auto;max-width:1480px;
padding:0 16px;color:#1b1b1b;background:#fafafa}
h1{margin-bottom:4px}h2{margin-top:32px;border-bottom:1px solid #ddd;padding-bottom:4px}
.muted{color:#666}table{border-collapse:collapse;margin:8px 0}
td,th{border:1px solid #ddd;padding:4px 10px;text-align:right}th{background:#f0f0f0}
td:first-child,th:first-child{text-align:left}img{max-width:100%;border:1px solid #ddd;background:#fff}
pre{background:#fff;border:1px solid #ddd;padding:12px;overflow:auto;font-size:13px}
.best{font-weight:bold;color:#0a6}.grid{display:flex;flex-wrap:wrap;gap:12px}
.grid figure{margin:0}figcaption{font-size:13px;color:#555}
"""


def _data_uri(data: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(data).decode("ascii")


def _table(header: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    head = "".join(f"<th>{html.escape(str(h))}</th>" for h in header)
    body = "".join(
        "<tr>"
        + "".join(f"<td>{c if isinstance(c, _Raw) else html.escape(_cell(c))}</td>" for c in row)
        + "</tr>"
        for row in rows
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


class _Raw(str):
    """Table cell content that is already HTML."""


def _cell(value: Any) -> str:
    if isinstance(value, float):
        return format_number(value)
    return "" if value is None else str(value)


def _scores_table(
    scores: dict[str, dict[str, Any]], baseline: dict[str, dict[str, Any]] | None = None
) -> str:
    """A row per metric, a column per direction; with ``baseline`` (the identity's paired scores) an
    ``identity`` column beside each direction."""
    directions = list(scores)
    names: list[str] = []
    for values in scores.values():
        names.extend(n for n in values if n not in names)
    if not baseline:
        rows = [[name, *[scores[d].get(name) for d in directions]] for name in names]
        return _table(["metric", *directions], rows)
    header = ["metric", *[c for d in directions for c in (d, f"{d} identity")]]
    rows = [
        [name, *[v for d in directions for v in (scores[d].get(name), baseline.get(d, {}).get(name))]]
        for name in names
    ]
    return _table(header, rows)


def newest_file(folder: Path, pattern: str) -> Path | None:
    """The last of ``folder``'s files matching ``pattern`` in name order (epoch numbers are zero-padded)."""
    found = sorted(folder.glob(pattern))
    return found[-1] if found else None


def render_report(run_path: Path, status: dict[str, Any]) -> str:
    """The HTML of ``report.html`` for the run directory ``run_path``.

    ``status``: ``name``, ``description``, ``epoch``, ``epochs``, ``step``, ``state`` (running,
    finished, stopped), optional ``best`` (metric, value, epoch, checkpoint) and ``final_losses``.
    Files read from the run directory: recipe.toml, metrics.jsonl, eval.jsonl, loss_curves.png,
    metrics.png and samples/epoch_*.png.
    """
    esc = html.escape
    name = str(status.get("name") or run_path.name)
    parts = [
        "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>",
        f"<title>{esc(name)} - ganforge report</title><style>{_CSS}</style></head><body>",
        f"<h1>{esc(name)}</h1>",
    ]
    if status.get("description"):
        parts.append(f"<p>{esc(str(status['description']))}</p>")
    stamp = time.strftime("%Y-%m-%d %H:%M:%S")
    parts.append(
        f"<p class='muted'>{esc(str(status.get('state', 'running')))}: epoch {status.get('epoch', 0)}/"
        f"{status.get('epochs', '?')}, step {status.get('step', 0)}; updated {stamp}; "
        f"run directory <code>{esc(str(run_path))}</code></p>"
    )

    evals = read_jsonl(run_path / "eval.jsonl")
    best = status.get("best")
    parts.append("<h2>Metrics</h2>")
    if evals:
        last = evals[-1]
        counts = ", ".join(f"{k}: {v}" for k, v in (last.get("n_images") or {}).items())
        parts.append(f"<p>Test split after epoch {last.get('epoch')} (images per domain: {esc(counts)}).</p>")
        parts.append(_scores_table(last.get("scores", {}), last.get("identity_baseline")))
        if last.get("identity_baseline"):
            parts.append(
                "<p class='muted'>identity: the paired scores of output = input on the same images, what a "
                "translation has to beat (grey lines in the chart).</p>"
            )
        if best:
            metric, value, where = (esc(_cell(best.get(k))) for k in ("metric", "value", "checkpoint"))
            epoch = best.get("epoch")
            parts.append(
                f"<p class='best'>best {metric} = {value} at epoch {epoch}: <code>{where}</code></p>"
            )
        png = run_path / "metrics.png"
        if png.is_file():
            parts.append(
                f"<h3>Metrics over time</h3><img alt='metrics over time' src='{_data_uri(png.read_bytes())}'>"
            )
        series = metric_series(evals)
        if series:
            epochs = sorted({int(e) for points in series.values() for e, _ in points})
            lookup = {k: dict(v) for k, v in series.items()}
            rows = [[k, *[lookup[k].get(float(e)) for e in epochs]] for k in series]
            parts.append("<details><summary>all evaluations</summary>")
            parts.append(_table(["metric", *[f"epoch {e}" for e in epochs]], rows) + "</details>")
    else:
        parts.append(
            "<p class='muted'>No evaluation yet (set <code>eval.every_epochs</code>, or run "
            "<code>ganforge eval RUN_DIR</code>).</p>"
        )

    parts.append("<h2>Losses</h2>")
    losses = status.get("final_losses")
    if not losses:
        epochs_records = [r for r in read_jsonl(run_path / "metrics.jsonl") if r.get("kind") == "epoch"]
        losses = epochs_records[-1].get("losses") if epochs_records else None
    if losses:
        parts.append(_table(["loss", "last epoch mean"], [[k, v] for k, v in losses.items()]))
    png = run_path / "loss_curves.png"
    if png.is_file():
        parts.append(f"<img alt='loss curves' src='{_data_uri(png.read_bytes())}'>")
    else:
        parts.append("<p class='muted'>No losses logged yet.</p>")

    parts.append("<h2>Samples</h2>")
    truth = newest_file(run_path / "samples", "truth_epoch_*.png")
    if truth is not None:
        epoch = truth.stem.rsplit("_", 1)[-1].lstrip("0") or "0"
        parts.append(
            f"<h3>Translations beside the ground truth (epoch {esc(epoch)})</h3><p>The test set is paired: "
            "for each direction, input | translation | the input's true counterpart.</p>"
        )
        parts.append(f"<img alt='{esc(truth.name)}' src='{_data_uri(truth.read_bytes())}'>")
        parts.append("<h3>The model's sample grid</h3>")
    samples = sorted((run_path / "samples").glob("epoch_*.png"))
    if samples:
        newest = samples[-1]
        parts.append(f"<p>{esc(newest.stem.replace('_', ' '))} (newest)</p>")
        parts.append(f"<img alt='{esc(newest.name)}' src='{_data_uri(newest.read_bytes())}'>")
        if len(samples) > 1:
            parts.append(f"<details><summary>every epoch ({len(samples)} grids)</summary><div class='grid'>")
            for sample in reversed(samples):
                rel = f"samples/{sample.name}"
                parts.append(
                    f"<figure><a href='{esc(rel)}'><img loading='lazy' width='360' alt='{esc(sample.name)}' "
                    f"src='{esc(rel)}'></a><figcaption>{esc(sample.stem)}</figcaption></figure>"
                )
            parts.append("</div></details>")
    else:
        parts.append("<p class='muted'>No sample grid yet.</p>")

    parts.append("<h2>Recipe</h2>")
    recipe = run_path / "recipe.toml"
    text = recipe.read_text(encoding="utf-8") if recipe.is_file() else "(recipe.toml not written yet)"
    parts.append(f"<pre>{esc(text)}</pre>")
    parts.append("<p class='muted'>Written by ganforge.</p></body></html>")
    return "\n".join(parts)
