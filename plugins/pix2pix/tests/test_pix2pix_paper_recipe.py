"""recipes/pix2pix_facades.toml holds the paper's facades settings (Isola et al. 2017, sections 3-4, 6.1)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from ganforge.recipe import load_recipe

ROOT = Path(__file__).resolve().parents[3]  # the repository (this file is in plugins/pix2pix/tests/)


@pytest.fixture(scope="module")
def recipe():
    return load_recipe(ROOT / "recipes" / "pix2pix_facades.toml").recipe


def test_data_is_facades_labels_to_photo_with_random_jitter(recipe):
    data = recipe.data.params
    assert recipe.data.type == "paired_folder" and data.root == "datasets/facades"
    assert data.a_half == "right"  # the archive stores photo | label; the paper maps labels -> photo
    assert (data.preprocess, data.load_size, data.crop_size, data.flip) == ("resize_and_crop", 286, 256, True)
    assert recipe.train.batch_size == 1


def test_networks(recipe):
    model = recipe.model.params
    g, d = model.generator.params, model.discriminator.params
    assert model.generator.type == "unet"
    assert (g.num_downs, g.ngf, g.norm, g.dropout, g.init, g.init_gain) == (
        8,
        64,
        "batch",
        0.5,
        "normal",
        0.02,
    )
    assert model.discriminator.type == "patchgan"
    assert (d.ndf, d.n_layers, d.norm, d.init, d.init_gain) == (64, 3, "batch", "normal", 0.02)
    built = recipe.model.build(0)
    assert sum(p.numel() for p in built.G.parameters()) == 54_413_955  # the reference's unet_256, batch norm
    assert built.G.size_multiple == 256
    first = next(m for m in built.D.modules() if isinstance(m, torch.nn.Conv2d))
    assert first.in_channels == 6  # conditional: label map and photo
    assert built.D(torch.zeros(1, 6, 256, 256)).shape == (1, 1, 30, 30)  # 70x70 patches


def test_objective(recipe):
    model = recipe.model.params
    assert (model.gan_loss.type, model.l1_loss.type, model.lambda_l1, model.conditional) == (
        "vanilla",
        "l1",
        100.0,
        True,
    )
    assert (model.real_label, model.fake_label) == (1.0, 0.0)


def test_optimizer_and_schedule(recipe):
    opt = recipe.train.optimizer
    assert opt.type == "adam" and opt.params.lr == 2e-4 and opt.params.betas == (0.5, 0.999)
    assert recipe.train.epochs == 200
    sched = recipe.train.scheduler
    assert sched.type == "linear_decay"
    assert (sched.params.constant_epochs, sched.params.decay_epochs) == (100, 100)
    optimizer = opt.build([torch.nn.Parameter(torch.zeros(1))])
    scheduler = sched.build(optimizer, recipe.train.epochs)
    rates = []
    for _ in range(recipe.train.epochs):
        rates.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    for epoch, factor in ((0, 1), (99, 1), (100, 100 / 101), (199, 1 / 101)):
        assert rates[epoch] == pytest.approx(2e-4 * factor, rel=1e-12), epoch
