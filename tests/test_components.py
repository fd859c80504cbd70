"""Every registered component, built with its default parameters and run on a tiny input.

A new component in any plugin is covered here with no new test code.
"""

from __future__ import annotations

import inspect
from pathlib import Path

import pytest
import torch
from PIL import Image

import ganforge
from ganforge.engine.callbacks import Callback, as_callback
from ganforge.model import Optimizers, TrainingModel
from ganforge.plugins import collect_registries, make_plugin_manager
from ganforge.registry import KINDS
from tests.conftest import RECIPES, TINY_RUN

REGISTRIES = collect_registries(make_plugin_manager())
ALL = [(kind, name) for kind in KINDS for name in REGISTRIES[kind].names()]


def build(kind: str, name: str, tmp_path: Path, **params):
    component = REGISTRIES[kind].get(name)
    required = {n for n, f in component.params.model_fields.items() if f.is_required()}
    if "root" in required:  # folder datasets: tiny unpaired (trainA/...) and paired (train/, A|B) sets
        for folder, color, width in (
            ("trainA", 40, 40), ("trainB", 200, 40), ("testA", 90, 40), ("testB", 150, 40), ("train", 70, 80), ("test", 120, 80),
            ("A/train", 40, 40), ("B/train", 200, 40), ("A/test", 90, 40), ("B/test", 150, 40),  # aligned: A/ and B/
        ):
            (tmp_path / folder).mkdir(parents=True)
            for i in range(2):
                Image.new("RGB", (width, 36), (color, i * 50, 0)).save(tmp_path / folder / f"{i}.png")
        params = {"root": str(tmp_path), "load_size": 40, "crop_size": 32, **params}
    return REGISTRIES.resolve(kind, {"type": name, **params}, kind)


def test_every_kind_has_components():
    for kind in KINDS:
        assert len(REGISTRIES[kind]) > 0, kind


@pytest.mark.parametrize(("kind", "name"), ALL, ids=[f"{k}-{n}" for k, n in ALL])
def test_component_builds_and_runs(kind, name, tmp_path):
    torch.manual_seed(0)
    spec = build(kind, name, tmp_path)
    component = spec.resolved.component
    assert component.summary, f"{kind} {name} has no one-line summary"
    x = torch.rand(1, 3, 32, 32) * 2 - 1
    if kind == "generator":
        net = spec.build()
        assert isinstance(net, torch.nn.Module)
        side = max(32, getattr(net, "size_multiple", 1))  # a U-Net of 8 levels needs 256 px
        x = torch.rand(1, 3, side, side) * 2 - 1
        y = net(x)
        assert y.shape == x.shape and y.min() >= -1 and y.max() <= 1
        y.mean().backward()
    elif kind == "discriminator":
        out = spec.build()(x)
        assert out.dim() == 4 and out.shape[0] == 1 and torch.isfinite(out).all()
    elif kind == "loss":
        loss = spec.build()
        if hasattr(loss, "enabled"):  # a gradient penalty: penalty(D, real, fake)
            value = loss(torch.nn.Conv2d(3, 1, 3), x, x.flip(-1))
            assert value.dim() == 0 and torch.isfinite(value) and (value > 0) == loss.enabled
            return
        # adversarial losses take discriminator=; with it, hinge and wgan compare to the target too
        flag = {"discriminator": True} if "discriminator" in inspect.signature(loss.forward).parameters else {}
        for target in (x.flip(0) * 0.5, 1.0, 0.0):
            value = loss(x, target, **flag)
            assert value.dim() == 0 and torch.isfinite(value)
        assert loss(x, x, **flag) <= loss(x, -x, **flag)
    elif kind == "buffer":
        pool = spec.build(0)
        for _ in range(3):
            assert pool.query(x).shape == x.shape
    elif kind == "augment":
        augment = spec.build()
        for images in (x.clone().requires_grad_(True), torch.rand(3, 1, 17, 9) * 2 - 1):
            out = augment(images)
            assert out.shape == images.shape and torch.isfinite(out).all()
        x.requires_grad_(True)
        augment(x).sum().backward()  # differentiable: the gradient reaches the input
        assert x.grad is not None and torch.isfinite(x.grad).all()
        assert torch.equal(augment(x), x) or augment.enabled
    elif kind in ("optimizer", "scheduler"):
        weight = torch.nn.Parameter(torch.ones(3))
        optimizer = spec.build([weight]) if kind == "optimizer" else torch.optim.SGD([weight], lr=0.1)
        if "monitor" in component.params.model_fields:  # a schedule that watches a logged value
            spec = build(kind, name, tmp_path, monitor="loss")
        scheduler = spec.build(optimizer, 5) if kind == "scheduler" else None
        for _ in range(5):
            loss = (weight**2).sum()
            loss.backward()
            optimizer.step()
            optimizer.zero_grad()
            if scheduler is not None:
                scheduler.step(loss.item()) if getattr(scheduler, "monitor", None) else scheduler.step()
        assert weight.detach().abs().sum() < 3  # it moved towards the minimum
    elif kind == "dataset":
        for split in ("train", "test"):
            item = spec.build(split)[0]
            assert "A" in item  # a translation-only dataset has no B
            for image in item.values():
                assert image.shape[0] == 3 and image.min() >= -1 and image.max() <= 1
    elif kind == "model":
        model = spec.build(0)
        assert isinstance(model, TrainingModel)
        nets = [getattr(model, d.net) for d in model.directions()]
        side = max([32, *(getattr(net, "size_multiple", 1) for net in nets)])  # a U-Net 256 needs 256 px
        x = torch.rand(1, 3, side, side) * 2 - 1
        groups = model.optimizer_groups()
        optimizers = Optimizers({g: torch.optim.Adam(p, lr=1e-4) for g, p in groups.items()})
        losses = model.train_step({"A": x, "B": x.flip(-1)}, optimizers)
        assert losses and all(v.dim() == 0 and torch.isfinite(v) for v in losses.values())
        rows = model.sample_rows({"A": x, "B": x})
        assert all(images.shape == x.shape for row in rows for _, images in row)
        for direction in model.directions():  # what translate, eval and export will use
            net = getattr(model, direction.net)
            assert isinstance(net, torch.nn.Module) and net(x).shape == x.shape
        assert set(model.exported_nets()) <= set(dict(model.named_children()))
    elif kind == "metric":
        metric = spec.build()
        generator = torch.Generator().manual_seed(0)
        for _ in range(2):
            metric.update(torch.rand(2, 3, 32, 32, generator=generator) * 2 - 1, x.expand(2, -1, -1, -1))
        value = metric.compute()
        assert isinstance(value, float) and value == value  # a number, not NaN
    elif kind == "callback":
        seen = []

        class Watch(Callback):
            def on_train_end(self, trainer):
                seen.append(trainer.epoch)

        ganforge.train(
            RECIPES / "quickstart.toml",
            overrides=[*TINY_RUN, "model.generator.n_blocks=1", "model.generator.ngf=4"],
            run_dir=tmp_path / "run",
            callbacks=[as_callback(spec.build()), Watch()],
        )
        assert seen == [1]
    elif kind == "backend":
        backend = spec.build()
        cpu = torch.device("cpu")
        if callable(getattr(backend, "choose", None)):  # a selector (auto): it picks one of the others
            names = REGISTRIES["backend"].names()
            others = [REGISTRIES.resolve("backend", {"type": n}, "b").build() for n in names]
            backend, note = backend.choose([b for b in others if not hasattr(b, "choose")], cpu, "fp32")
            assert isinstance(note, str)
        assert isinstance(backend.name, str) and isinstance(backend.priority, int)
        verdict = backend.available(cpu, "fp32")
        assert verdict is True or (isinstance(verdict, str) and verdict)
        if verdict is True:
            net = torch.nn.Sequential(
                torch.nn.ReflectionPad2d(1), torch.nn.Conv2d(3, 32, 3), torch.nn.InstanceNorm2d(32),
                torch.nn.ReLU(), torch.nn.Conv2d(32, 3, 3, padding=1),
            )
            expected = net(x)
            parameters, keys = list(net.parameters()), list(net.state_dict())
            assert isinstance(backend.prepare(net, cpu, training=True), str)
            assert all(a is b for a, b in zip(net.parameters(), parameters, strict=True))
            assert list(net.state_dict()) == keys
            assert (net(x) - expected).abs().max() < 1e-4
    else:
        pytest.fail(f"no smoke protocol for kind {kind!r}: add one here")
