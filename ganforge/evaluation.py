"""Evaluating a model's translations on a dataset's test split.

For each direction, every metric gets ``update(real, fake)`` batches: for a distribution metric
(FID, KID) ``real`` is the target domain's test images and ``fake`` the translations of the source
domain's; for a paired metric (``metric.paired``: PSNR, SSIM, L1) ``real[i]`` is the true
counterpart of ``fake[i]``, so those run only where the dataset has true pairs.

Which networks translate is what the model declares (:meth:`ganforge.TrainingModel.directions`);
scores are kept under each direction's key (``A2B.fid``). :func:`identity_translators` is the
"output = input" baseline.
"""

from __future__ import annotations

import functools
import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from ganforge.errors import GanforgeError
from ganforge.metrics.inception import sha256_of
from ganforge.metrics.weights import find_inception_weights
from ganforge.model import run_padded
from ganforge.registry import ComponentSpec

#: The metrics ``ganforge eval`` and ``[eval]`` use unless told otherwise.
DEFAULT_METRICS: tuple[str, ...] = ("fid", "kid", "psnr", "ssim", "l1")

Net = Callable[[torch.Tensor], torch.Tensor]


@dataclass(frozen=True)
class Translator:
    name: str  # "A2B"
    source: str  # domain key of the input images
    target: str  # domain key the output should look like
    net: Net


def translators_of(model: Any) -> list[Translator]:
    """The model's declared directions, each with the submodule that translates."""
    directions = model.directions() if callable(getattr(model, "directions", None)) else []
    if not directions:
        raise GanforgeError(f"{type(model).__name__}: declares no translation directions; nothing to evaluate")
    keys = [d.key for d in directions]
    if len(set(keys)) < len(keys):  # scores are kept by key: two directions between the same domains would mix
        raise GanforgeError(
            f"{type(model).__name__}: two declared directions share the domains of "
            f"{next(k for k in keys if keys.count(k) > 1)}; evaluation keeps scores by source and target"
        )
    return [Translator(d.key, d.source, d.target, padded(getattr(model, d.net))) for d in directions]


def padded(net: Net) -> Net:
    """``net`` on images of any size: padded to the net's ``size_multiple`` and cropped back."""
    return functools.partial(run_padded, net)


def _identity(images: torch.Tensor) -> torch.Tensor:
    return images


def identity_translators(like: Sequence[Translator] | None = None) -> list[Translator]:
    """The baseline that returns its input: what a translation has to beat (for the directions of
    ``like``, a model's translators; by default A -> B and B -> A)."""
    pairs = [(t.source, t.target) for t in like] if like else [("A", "B"), ("B", "A")]
    return [Translator(f"{s}2{t}", s, t, _identity) for s, t in pairs]


def evaluation_split(data: ComponentSpec, split: str = "test", preprocess: str = "dataset") -> Any:
    """The dataset split evaluation scores: as the dataset builds it (``preprocess = "dataset"``), or
    with its ``preprocess`` param set to ``preprocess`` (``"resize"``: whole images resized to the crop
    size, the reference implementation's test protocol that published scores use)."""
    if preprocess != "dataset":
        data = data.with_params(preprocess=preprocess)
    return data.build(split)


def is_paired(dataset: Any) -> bool:
    """Does every item hold a true pair? A dataset says so with a boolean ``paired`` attribute."""
    return getattr(dataset, "paired", None) is True


def domain_counts(dataset: Any, domains: Sequence[str]) -> dict[str, int]:
    """Distinct images per domain: unpaired folders repeat the smaller domain up to the larger's length."""
    n = len(dataset)
    counts = {d: n for d in domains}
    sizes = getattr(dataset, "domain_sizes", None)
    if isinstance(sizes, Mapping):
        counts.update({d: min(n, int(v)) for d, v in sizes.items() if d in counts})
    return counts


@dataclass
class EvalResult:
    """Scores by direction and metric, and what they were computed on."""

    scores: dict[str, dict[str, float]]
    n_images: dict[str, int]
    paired: bool
    skipped: list[str] = field(default_factory=list)
    seconds: float = 0.0
    info: dict[str, Any] = field(default_factory=dict)  # what was scored, where (written with the scores)
    higher_is_better: dict[str, bool] = field(default_factory=dict)  # by metric (for tables, not the JSON)
    baseline: dict[str, dict[str, float]] | None = None  # the identity baseline's scores, when asked for

    def flat(self) -> dict[str, float]:
        """``{"A2B.fid": ..., "B2A.psnr": ...}`` plus the mean over directions (``"fid"``, ...)."""
        out: dict[str, float] = {}
        names: dict[str, list[float]] = {}
        for direction, values in self.scores.items():
            for name, value in values.items():
                out[f"{direction}.{name}"] = value
                names.setdefault(name, []).append(value)
        for name, values in names.items():
            out[name] = sum(values) / len(values)
        return out

    def to_dict(self) -> dict[str, Any]:
        return {
            "scores": _json_scores(self.scores),
            "mean": {k: _json_number(v) for k, v in self.flat().items() if "." not in k},
            "n_images": self.n_images,
            "paired": self.paired,
            "skipped": self.skipped,
            "seconds": round(self.seconds, 2),
            **({"identity_baseline": _json_scores(self.baseline)} if self.baseline is not None else {}),
            **self.info,
        }


def _json_scores(scores: dict[str, dict[str, float]]) -> dict[str, dict[str, float | None]]:
    return {d: {k: _json_number(v) for k, v in s.items()} for d, s in scores.items()}


def _json_number(value: float) -> float | None:
    return value if math.isfinite(value) else None


def _stack(items: list[dict[str, torch.Tensor]], key: str) -> torch.Tensor:
    return torch.stack([item[key] for item in items])


@torch.no_grad()
def evaluate(
    translators: Sequence[Translator],
    dataset: Any,
    metrics: Mapping[str, ComponentSpec],
    *,
    device: torch.device | str = "cpu",
    batch_size: int = 8,
    max_images: int | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> EvalResult:
    """Run every translator over ``dataset`` and score it with every metric (see the module docstring)."""
    started = time.perf_counter()
    device = torch.device(device)
    paired = is_paired(dataset)
    n = len(dataset) if max_images is None else min(len(dataset), max_images)
    if n == 0:
        raise GanforgeError("the evaluation split is empty")
    domains = sorted({d for t in translators for d in (t.source, t.target)})
    counts = domain_counts(dataset, domains)
    counts = {d: min(c, n) for d, c in counts.items()}
    skipped: list[str] = []
    instances: dict[str, dict[str, Any]] = {t.name: {} for t in translators}
    for name, spec in metrics.items():
        probe = spec.build()
        if getattr(probe, "paired", False) and not paired:
            skipped.append(name)
            continue
        instances[translators[0].name][name] = probe
        for t in translators[1:]:
            instances[t.name][name] = spec.build()
    for start in range(0, n, batch_size):
        indices = range(start, min(n, start + batch_size))
        items = [dataset[i] for i in indices]
        batch = {d: _stack(items, d).to(device) for d in domains}
        for t in translators:
            source_rows = sum(1 for i in indices if i < counts[t.source])
            target_rows = sum(1 for i in indices if i < counts[t.target])
            sources = batch[t.source][:source_rows]
            fake = t.net(sources).float() if source_rows else sources.float()  # no empty batch into a net
            real = batch[t.target][:target_rows].float()
            for metric in instances[t.name].values():
                if getattr(metric, "paired", False):
                    rows = min(source_rows, target_rows)
                    metric.update(real[:rows], fake[:rows])
                else:
                    metric.update(real, fake)
        if progress is not None:
            progress(min(n, start + batch_size), n)
    scores: dict[str, dict[str, float]] = {}
    for t in translators:
        scores[t.name] = {name: float(metric.compute()) for name, metric in instances[t.name].items()}
    return EvalResult(
        scores=scores,
        n_images={d: counts[d] for d in domains},
        paired=paired,
        skipped=skipped,
        seconds=time.perf_counter() - started,
    )


def weights_info(metrics: Mapping[str, ComponentSpec]) -> dict[str, Any]:
    """Where the Inception weights of the Inception metrics came from (for the JSON report)."""
    for spec in metrics.values():
        params = spec.params
        if hasattr(params, "weights") and hasattr(params, "quantize"):
            found = find_inception_weights(params.weights)
            return {
                "inception_weights": {
                    "path": str(found.path),
                    "source": found.source,
                    "sha256": sha256_of(found.path),
                }
            }
    return {}
