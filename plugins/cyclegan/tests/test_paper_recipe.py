"""recipes/cyclegan_monet.toml holds the paper's monet2photo settings (Zhu et al. 2017, sec. 4, 7.1)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from ganforge.recipe import load_recipe

ROOT = Path(__file__).resolve().parents[3]  # the repository (this file is in plugins/cyclegan/tests/)
RECIPE = load_recipe(ROOT / "recipes" / "cyclegan_monet.toml").recipe


def test_data_settings():
    data = RECIPE.data.params
    assert RECIPE.data.type == "unpaired_folder"
    assert (data.preprocess, data.load_size, data.crop_size, data.flip) == ("resize_and_crop", 286, 256, True)
    assert RECIPE.train.batch_size == 1


def test_networks():
    model = RECIPE.model.params
    g, d = model.generator.params, model.discriminator.params
    generator = (model.generator.type, g.ngf, g.n_blocks, g.upsample, g.init_gain)
    assert generator == ("resnet", 64, 9, "transpose", 0.02)
    assert (model.discriminator.type, d.ndf, d.n_layers, d.init_gain) == ("patchgan", 64, 3, 0.02)
    built = model.generator.build()
    assert sum(p.numel() for p in built.parameters()) == 11_378_179  # the reference's 11.378 M


def test_objective():
    model = RECIPE.model.params
    assert model.gan_loss.type == "lsgan" and model.cycle_loss.type == "l1"
    assert model.lambda_cycle == 10.0 and model.lambda_identity == 0.5
    assert (model.real_label, model.fake_label) == (1.0, 0.0)
    assert model.pool.type == "history" and model.pool.params.size == 50 and model.pool.params.p_swap == 0.5


def test_optimizer_and_schedule():
    opt = RECIPE.train.optimizer
    assert opt.type == "adam" and opt.params.lr == 2e-4 and opt.params.betas == (0.5, 0.999)
    assert RECIPE.train.epochs == 200
    sched = RECIPE.train.scheduler
    assert sched.type == "linear_decay"
    assert (sched.params.constant_epochs, sched.params.decay_epochs) == (100, 100)
    optimizer = opt.build([torch.nn.Parameter(torch.zeros(1))])
    scheduler = sched.build(optimizer, RECIPE.train.epochs)
    rates = []
    for _ in range(RECIPE.train.epochs):
        rates.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    for epoch, factor in ((0, 1), (99, 1), (100, 100 / 101), (150, 50 / 101), (199, 1 / 101)):
        assert rates[epoch] == pytest.approx(2e-4 * factor, rel=1e-12), epoch
