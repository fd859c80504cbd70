"""pix2pix with DiffAugment: D sees augmented pairs in both updates, and the input and the image of a
pair get one and the same transform, so they stay aligned."""

from __future__ import annotations

import torch

from ganforge.model import Optimizers
from ganforge.plugins import collect_registries, make_plugin_manager

REGISTRIES = collect_registries(make_plugin_manager())


def tiny(in_channels: int = 3, **extra):
    spec = {
        "type": "pix2pix",
        "generator": {"type": "resnet", "ngf": 4, "n_blocks": 1, "in_channels": in_channels},
        "discriminator": {"type": "patchgan", "ndf": 4, "n_layers": 2},
        **extra,
    }
    return REGISTRIES.resolve("model", spec, "model").build(0)


def watch(net: torch.nn.Module) -> list[torch.Tensor]:
    seen: list[torch.Tensor] = []
    net.register_forward_hook(lambda module, args, out: seen.append(args[0].detach().clone()))
    return seen


def adam(model) -> Optimizers:
    return Optimizers({g: torch.optim.Adam(p, lr=2e-4) for g, p in model.optimizer_groups().items()})


def test_default_is_none_and_d_sees_the_pairs_as_they_are(one_thread) -> None:
    model = tiny()
    assert model.p.augment.type == "none" and not model.augment.enabled
    seen = watch(model.D)
    a = torch.rand(2, 3, 24, 24) * 2 - 1
    model.discriminator_losses(a, a.flip(-1), a)
    assert torch.equal(seen[1], torch.cat([a, a.flip(-1)], 1))  # the real pair, untouched


def test_both_halves_of_a_pair_get_the_same_transform(one_thread) -> None:
    """With target = input, an aligned augmentation keeps the two halves equal; the pair D sees is
    augmented (not the raw images) in the D step and the G step."""
    torch.manual_seed(0)
    model = tiny(augment={"type": "diffaugment"})
    seen = watch(model.D)
    opt = adam(model)
    for step in range(3):
        a = torch.rand(4, 3, 20, 16, generator=torch.Generator().manual_seed(step)) * 2 - 1
        losses = model.train_step({"A": a, "B": a.clone()}, opt)
        assert all(torch.isfinite(v) for v in losses.values())
        fake_pair, real_pair, g_pair = seen[3 * step : 3 * step + 3]  # D step (fake, real), then G step
        assert torch.equal(real_pair[:, :3], real_pair[:, 3:])  # aligned: same shift, cutout, colour
        assert not torch.equal(real_pair[:, :3], a)  # augmented
        for pair in (fake_pair, g_pair):  # the input half of a fake pair is augmented like the fake
            assert torch.equal(pair[:, :3] == 0, pair[:, 3:] == 0) and not torch.equal(pair[:, :3], a)


def test_pairs_of_different_channels_stay_aligned(one_thread) -> None:
    """A grey input (1 channel) and a grey target in 3 channels: after augmentation the target half is
    still the input half repeated, the colour factors having been applied alike to both."""
    torch.manual_seed(1)
    model = tiny(in_channels=1, augment={"type": "diffaugment"})
    seen = watch(model.D)
    a = torch.rand(3, 1, 20, 20) * 2 - 1
    model.discriminator_losses(a, a.expand(-1, 3, -1, -1), a.expand(-1, 3, -1, -1))
    real_pair = seen[1]
    assert real_pair.shape[1] == 4 and not torch.equal(real_pair[:, :1], a)
    torch.testing.assert_close(real_pair[:, 1:], real_pair[:, :1].expand(-1, 3, -1, -1), rtol=0, atol=1e-6)


def test_unconditional_d_sees_the_image_alone_augmented(one_thread) -> None:
    torch.manual_seed(2)
    model = tiny(conditional=False, augment={"type": "diffaugment"})
    seen = watch(model.D)
    a = torch.rand(2, 3, 16, 16) * 2 - 1
    model.discriminator_losses(a, a, a)
    assert seen[1].shape == a.shape and not torch.equal(seen[1], a)
