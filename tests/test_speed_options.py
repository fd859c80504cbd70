"""Speed options train the same model: batched calls, foreach/fused Adam, channels_last, bf16 and
torch.compile (the CPU kernels' backend: plugins/cpu_kernels/tests).

Each is compared with the plain reference-order fp32 step from the same weights and data.
"""

from __future__ import annotations

import pytest
import torch

from ganforge.model import Optimizers
from ganforge.engine.runtime import Runtime
from ganforge.plugins import collect_registries, make_plugin_manager
from tests.conftest import RECIPES, run_cli

REGISTRIES = collect_registries(make_plugin_manager())


def train(steps: int = 3, batch_calls: bool = False, adam: str = "for_loop", ngf: int = 8, **runtime_options):
    torch.manual_seed(0)
    spec = {
        "type": "cyclegan",
        "batch_calls": batch_calls,
        "generator": {"type": "resnet", "ngf": ngf, "n_blocks": 2},
        "discriminator": {"type": "patchgan", "ndf": 8},
        "pool": {"type": "history", "size": 2},
    }
    model = REGISTRIES.resolve("model", spec, "model").build(0)
    runtime = Runtime(torch.device("cpu"), **runtime_options)
    model = runtime.prepare_model(model, model.networks())
    adam_spec = {"type": "adam", "lr": 2e-4, "betas": [0.5, 0.999], "implementation": adam}
    optimizer = REGISTRIES.resolve("optimizer", adam_spec, "o")
    optimizers = Optimizers({g: optimizer.build(list(p)) for g, p in model.optimizer_groups().items()})
    generator = torch.Generator().manual_seed(1)
    losses = []
    for _ in range(steps):
        batch = {k: torch.rand(2, 3, 32, 32, generator=generator) * 2 - 1 for k in "AB"}
        with runtime.autocast():
            losses.append(model.train_step(runtime.prepare_batch(batch), optimizers))
        optimizers.end_step()
    return model, losses


PLAIN = train()


def max_loss_diff(a, b, steps=None):
    return max(abs(float(x[k]) - float(y[k])) for x, y in list(zip(a, b))[:steps] for k in x)


def test_batched_calls_compute_the_same_step():
    model, losses = train(batch_calls=True)
    assert max_loss_diff(losses, PLAIN[1], steps=1) == 0.0  # same weights, same data: identical
    assert max_loss_diff(losses, PLAIN[1]) < 1e-4
    # After the updates, only biases of convolutions followed by instance norm may drift (their true
    # gradient is zero, so Adam turns rounding noise into steps); the norm cancels them exactly.
    for (name, a), (_, b) in zip(model.named_parameters(), PLAIN[0].named_parameters()):
        limit = 1e-2 if name.endswith("bias") else 1e-4
        assert (a - b).abs().max() < limit, name


@pytest.mark.parametrize("adam", ["foreach", "fused"])
def test_adam_implementations_agree(adam):
    _, losses = train(adam=adam)
    assert max_loss_diff(losses, PLAIN[1]) < 1e-5


@pytest.mark.parametrize(
    ("options", "first_step", "three_steps"),
    [({"channels_last": True}, 1e-4, 1e-2), ({"precision": "bf16"}, 5e-2, 0.1)],
    ids=["channels_last", "bf16"],
)
def test_memory_format_and_mixed_precision_stay_close(options, first_step, three_steps):
    """Other summation orders (channels_last) or 8-bit mantissas (bf16): close, not identical.

    Losses are O(1); after the first update the pre-norm biases' noise (see above) moves them by ~1e-3.
    """
    model, losses = train(batch_calls=True, **options)
    assert max_loss_diff(losses, PLAIN[1], steps=1) < first_step
    assert max_loss_diff(losses, PLAIN[1]) < three_steps
    if options.get("channels_last"):
        conv = model.G_A.model[1].weight
        assert conv.is_contiguous(memory_format=torch.channels_last)


def test_compiled_networks_compute_what_eager_ones_do():
    """torch.compile fuses the pointwise work around the convolutions: fp32 still, other rounding.

    One small generator, forward and backward (a cold compile of the whole CycleGAN step takes ~2
    minutes on 2 cores; benchmarks/train_step.py --compare reports its losses against eager).
    """
    torch.manual_seed(0)
    spec = {"type": "resnet", "ngf": 8, "n_blocks": 1}
    eager = REGISTRIES.resolve("generator", spec, "g").build()
    compiled = REGISTRIES.resolve("generator", spec, "g").build()
    compiled.load_state_dict(eager.state_dict())
    Runtime(torch.device("cpu"), compile=True).prepare_model(compiled, {"G": compiled})
    x = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(1)) * 2 - 1
    outputs = []
    for net in (eager, compiled):
        out = net(x)
        out.square().mean().backward()
        outputs.append(out.detach())
    assert compiled._compiled_call_impl is not None  # really compiled, in place
    assert (outputs[0] - outputs[1]).abs().max() < 1e-5
    # Biases before an instance norm have a true gradient of 0: theirs is rounding noise (~1e-8).
    for (name, a), (_, b) in zip(eager.named_parameters(), compiled.named_parameters()):
        assert (a.grad - b.grad).abs().max() <= 1e-4 * a.grad.abs().max() + 1e-6, name
    assert list(compiled.state_dict()) == list(eager.state_dict())  # checkpoints are unchanged


def test_cuda_graphs_off_cuda_compile_without_them_and_say_so():
    from ganforge.errors import GanforgeWarning

    net = REGISTRIES.resolve("generator", {"type": "resnet", "ngf": 8, "n_blocks": 1}, "g").build()
    runtime = Runtime(torch.device("cpu"), compile=True, cuda_graphs=True)
    with pytest.warns(GanforgeWarning, match=r"^train.cuda_graphs: CUDA graphs need a CUDA device \(this run is on "
                      r"cpu\); the networks are compiled without them$"):
        runtime.prepare_model(net, {"G": net})
    assert net._compiled_call_impl is not None  # compiled all the same
    runtime.step_begin()  # nothing to mark off CUDA


def test_speed_options_may_change_when_a_run_resumes():
    from ganforge.engine.resume import recipe_differences

    saved = {"train": {"compile": False, "backend": {"type": "direct"}, "channels_last": False, "batch_size": 1}}
    now = {
        "train": {
            "compile": True, "backend": {"type": "cpu_kernels", "norm": False}, "channels_last": True,
            "batch_size": 1, "cuda_graphs": True,
        }
    }
    assert recipe_differences(saved, now) == []
    assert recipe_differences(saved, {"train": {**now["train"], "batch_size": 2}}) == [
        "train.batch_size: checkpoint 1, recipe 2"
    ]


def test_fp16_needs_cuda():
    result = run_cli("validate", str(RECIPES / "quickstart.toml"), "--set", 'train.precision="fp16"')
    assert result.returncode == 0  # a valid recipe: a CUDA machine can run it
    result = run_cli("run", str(RECIPES / "quickstart.toml"), "--set", 'train.precision="fp16"', "--set", 'train.device="cpu"')
    assert result.returncode == 1
    assert result.stderr.strip() == (
        "error: train.precision: 'fp16' needs a CUDA device (this run is on cpu); use 'bf16' or 'fp32'"
    )
