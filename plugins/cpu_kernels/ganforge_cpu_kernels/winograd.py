"""3x3 and 4x4 convolutions by Winograd's minimal filtering F(4x4, 3x3) and F(3x3, 4x4) (Lavin & Gray
2016, arXiv 1509.09308).

A stride-1 3x3 convolution over 6x6 input tiles (stride 4) becomes 36 independent matrix products in
the transformed domain: 2.25 multiplications per output instead of 9, a quarter of the direct
arithmetic. On a CPU whose direct convolution already runs near its matmul peak this is the one way
left to make the residual blocks of an image-to-image generator cheaper. A stride-1 4x4 convolution
(a PatchGAN's next-to-last layer) takes the same 6x6 tiles at stride 3: 4 multiplications per output
instead of 16. The results equal the direct convolution up to fp32 rounding (relative error about
1e-5, see ``tests/test_winograd.py``).

In fp32 on the CPU the transforms of F(4x4, 3x3) run as fused loops (``winograd_cpu.cpp``), compiled
for this machine on first use (about 30 s with the other CPU kernels, then cached by torch in
``~/.cache/torch_extensions``).
Where that cannot be built (no C++ compiler) or ``GANFORGE_WINOGRAD_KERNELS=torch`` is set, the same
transforms run as torch operators: equal results, about a third of a training step slower. F(3x3, 4x4)
has compiled filter transforms only; its tile transforms are torch operators, cheap at the 16x16 to
32x32 pixels of the layers it serves.

:func:`use_winograd` replaces the eligible ``nn.Conv2d`` layers below a module, each in its parent, by a
:class:`WinogradConv2d` holding the same Parameter objects (state-dict keys, hooks and optimizer
references stay as they are). The switched layers
compute Winograd on the CPU in fp32 and fall back to the direct convolution everywhere else (CUDA and
MPS pick their own algorithms, autocast runs in reduced precision where Winograd's error grows). A
``ReflectionPad2d(1)`` right before a switched 3x3 layer in an ``nn.Sequential`` (a ResNet block) hands
its padding to that layer, whose input transform makes it (:class:`FoldedReflectionPad2d`); 3.5% of a
128 px / 6-block CycleGAN step (A/B in turns: 2299 -> 2218 ms).
"""

from __future__ import annotations

import logging
import math
import os
import threading
import warnings
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from torch.autograd.function import once_differentiable

from ganforge.backends import rebuild_as
from ganforge.errors import GanforgeWarning
from ganforge_cpu_kernels import (
    KernelLayer,
    cpu_fp32,
    link,
    observed,
    plain_conv,
    single_use_pairs,
    switch_class,
)

# The three transforms of F(4x4, 3x3) at the interpolation points 0, 1, -1, 2, -2 and infinity:
# output = A^T [ (G g G^T) * (B^T d B) ] A for a 3x3 filter g and a 6x6 input tile d.
_BT = [
    [4, 0, -5, 0, 1, 0],
    [0, -4, -4, 1, 1, 0],
    [0, 4, -4, -1, 1, 0],
    [0, -2, -1, 2, 1, 0],
    [0, 2, -1, -2, 1, 0],
    [0, 4, 0, -5, 0, 1],
]
_G = [
    [1 / 4, 0, 0],
    [-1 / 6, -1 / 6, -1 / 6],
    [-1 / 6, 1 / 6, -1 / 6],
    [1 / 24, 1 / 12, 1 / 6],
    [1 / 24, -1 / 12, 1 / 6],
    [0, 0, 1],
]
_AT = [
    [1, 1, 1, 1, 1, 0],
    [0, 1, -1, 2, -2, 0],
    [0, 1, 1, 4, 4, 0],
    [0, 1, -1, 8, -8, 1],
]
# F(3x3, 4x4) at the same points: the same B^T (Toom-Cook gives it for any m + r = 7 at these points),
# and G and A^T for a 4x4 filter and a 3x3 output tile.
_G4 = [
    [1 / 4, 0, 0, 0],
    [-1 / 6, -1 / 6, -1 / 6, -1 / 6],
    [-1 / 6, 1 / 6, -1 / 6, 1 / 6],
    [1 / 24, 1 / 12, 1 / 6, 1 / 3],
    [1 / 24, -1 / 12, 1 / 6, -1 / 3],
    [0, 0, 0, 1],
]
_AT3 = [
    [1, 1, 1, 1, 1, 0],
    [0, 1, -1, 2, -2, 0],
    [0, 1, 1, 4, 4, 1],
]
_MATRICES = {3: {"BT": _BT, "G": _G, "AT": _AT}, 4: {"BT": _BT, "G": _G4, "AT": _AT3}}

TILE = 6  # input tile side, for both
OUT = 4  # output tile side of F(4x4, 3x3); F(3x3, 4x4)'s is 3: see out_side()
CHUNK_TILES = 256  # tiles per batched product, see winograd_conv
# A 4x4 layer (a PatchGAN's 256 -> 512) computes directly below this many tiles per call: there the
# filter transforms outweigh the products saved. Forward and backward of that layer on the 2-core AVX2
# CPU: 25 tiles (one 16x16 input) 0.98x the direct speed, input gradient only 0.76x; 50 tiles 1.5x /
# 1.14x; 121 tiles 1.7x / 1.2x.
MIN_TILES_4X4 = 50

_cache: dict[tuple[str, int, torch.device, torch.dtype], torch.Tensor] = {}
_thread = threading.local()  # see _scratch

KERNEL_SOURCE = Path(__file__).with_name("winograd_cpu.cpp")
NARROW_SOURCE = Path(__file__).with_name("narrow_cpu.cpp")  # narrow.py's loops, built into the same library
LAYOUT_SOURCE = Path(__file__).with_name("layout_cpu.cpp")  # upsampling.py's layout copy, likewise
NORM_SOURCE = Path(__file__).with_name("norm_cpu.cpp")  # norm.py's instance norm, likewise
KERNEL_NAME = "ganforge_cpu_kernels"  # + a machine key: ~/.cache/torch_extensions/<python>_cpu/<name>_<key>
_kernel_state = "untried"  # then "built" (torch.ops.ganforge_winograd exists) or "failed"


def compiled_kernels():
    """The fused fp32 CPU transforms as ``torch.ops.ganforge_winograd`` ops (and narrow.py's loops as
    ``torch.ops.ganforge_narrow``, upsampling.py's layout copy as ``torch.ops.ganforge_layout``, norm.py's
    instance norm as ``torch.ops.ganforge_norm``), built on first use; ``None`` where they cannot be built (one warning says why) or
    ``GANFORGE_WINOGRAD_KERNELS=torch`` asks for the torch-operator path. :func:`use_winograd` calls it, so the build happens when layers switch,
    before any ``torch.compile`` traces them."""
    global _kernel_state
    if os.environ.get("GANFORGE_WINOGRAD_KERNELS", "compiled") == "torch":
        return None
    if _kernel_state == "untried":
        try:
            _build_kernels()
            _kernel_state = "built"
        except Exception as error:  # noqa: BLE001 (no compiler, no writable cache, an unsupported platform)
            _kernel_state = "failed"
            reason = " ".join(str(error).split())[:300]
            warnings.warn(
                "cpu_kernels: the compiled CPU kernels could not be built "
                f"({type(error).__name__}: {reason}); "
                "using torch operators instead (same results, slower). Set GANFORGE_WINOGRAD_KERNELS=torch "
                "to skip the attempt.",
                GanforgeWarning,
                stacklevel=2,
            )
    return torch.ops.ganforge_winograd if _kernel_state == "built" else None


def _machine_key() -> str:
    """What the compiled library depends on beyond its source and flags: torch's ABI and, for
    ``-march=native``, this CPU's instruction sets. A home folder shared by machines of different CPUs
    (a cluster) or a torch upgrade then builds anew instead of loading a library that cannot run."""
    import hashlib
    import platform

    flags = platform.processor()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith(("flags", "Features")):
                flags = line
                break
    except OSError:
        pass
    return hashlib.sha1(f"{torch.__version__}|{platform.machine()}|{flags}".encode()).hexdigest()[:10]


def _build_kernels() -> None:
    logging.getLogger("ganforge").info("building the compiled CPU kernels (once per machine, ~30 s)")
    # cpp_extension logs, when first imported on a CPU-only machine, that no CUDA was found: not news here
    quiet = logging.getLogger("torch.utils.cpp_extension")
    level = quiet.level
    quiet.setLevel(logging.ERROR)
    try:
        from torch.utils import cpp_extension

        cpp_extension.load(
            name=f"{KERNEL_NAME}_{_machine_key()}",
            sources=[str(KERNEL_SOURCE), str(NARROW_SOURCE), str(LAYOUT_SOURCE), str(NORM_SOURCE)],
            extra_cflags=["-O3", "-march=native", "-fopenmp"],
            extra_ldflags=["-fopenmp"],
            is_python_module=False,
            verbose=False,
        )
    finally:
        quiet.setLevel(level)
    _register_fakes()


def _register_fakes() -> None:
    """Shapes of the ops' results, so torch.compile can trace through them."""
    fake = torch.library.register_fake

    @fake("ganforge_winograd::input_tiles")
    def _(x):
        n, c, hp, wp = x.shape
        return x.new_empty(36, c, n * ((hp - 2) // OUT) * ((wp - 2) // OUT))

    @fake("ganforge_winograd::input_tiles_into")
    def _(x, out):
        return None

    @fake("ganforge_winograd::input_tiles_backward")
    def _(dv, n, hp, wp):
        return dv.new_empty(n, dv.shape[1], hp, wp)

    @fake("ganforge_winograd::output_tiles")
    def _(m, bias, n, th, tw):
        return m.new_empty(n, m.shape[1], th * OUT, tw * OUT)

    @fake("ganforge_winograd::output_tiles_backward")
    def _(dy):
        n, k, h, w = dy.shape
        return dy.new_empty(36, k, n * (h // OUT) * (w // OUT))

    @fake("ganforge_winograd::weight_transform")
    def _(weight):
        return weight.new_empty(36, weight.shape[0], weight.shape[1])

    @fake("ganforge_winograd::weight_transform_into")
    def _(weight, out):
        return None

    @fake("ganforge_winograd::weight_transform_backward")
    def _(du, r):
        return du.new_empty(du.shape[1], du.shape[2], r, r)

    @fake("ganforge_narrow::conv")
    def _(x, w, bias, ph, pw):
        n, _, h, width = x.shape
        return x.new_empty(n, w.shape[0], h + 2 * ph - w.shape[2] + 1, width + 2 * pw - w.shape[3] + 1)

    @fake("ganforge_layout::to_nchw")
    def _(x):
        return x.new_empty(x.shape)


def out_side(r: int) -> int:
    """The output tile side for r x r filters: 4 for 3x3, 3 for 4x4 (tiles of 6 either way)."""
    return TILE - r + 1


def compiled_for(t: torch.Tensor) -> bool:
    """Whether the compiled kernels take ``t`` (fp32 on the CPU, and built): the Winograd transforms
    here, and narrow.py's, upsampling.py's and norm.py's loops. While torch.compile traces, only what
    is loaded already counts (building, warning and the environment stay outside the graph)."""
    if t.dtype != torch.float32 or t.device.type != "cpu":
        return False
    if torch.compiler.is_compiling():
        return _kernel_state == "built"
    return compiled_kernels() is not None


def _fused_tiles(t: torch.Tensor, r: int) -> bool:
    """Whether the compiled tile transforms take ``t``: they exist for F(4x4, 3x3) only (the filter
    transforms for both filter sides)."""
    return r == 3 and compiled_for(t)


def _transform(name: str, like: torch.Tensor, r: int = 3) -> torch.Tensor:
    """The 2-D transform ``kron(M, M)`` for one of B^T, G, A^T for r x r filters (computed in float64),
    on ``like``'s device and in its dtype."""
    key = (name, r, like.device, like.dtype)
    if key not in _cache:
        m = torch.tensor(_MATRICES[r][name], dtype=torch.float64)
        transform = torch.kron(m, m).to(device=like.device, dtype=like.dtype)
        if torch.compiler.is_compiling():
            return transform  # a cache filled while tracing would fail the graph's guards: one recompile per entry
        _cache[key] = transform
    return _cache[key]


def transform_weight(weight: torch.Tensor) -> torch.Tensor:
    """(K, C, r, r) filters -> (36, K, C): G g G^T for each filter, one matrix per tile position."""
    k, c, r = weight.shape[:3]
    if compiled_for(weight):
        return torch.ops.ganforge_winograd.weight_transform(weight.contiguous())
    return torch.matmul(_transform("G", weight, r), weight.reshape(k * c, r * r).t()).view(36, k, c)


def _scratch(role: str, shape: tuple[int, ...], like: torch.Tensor) -> torch.Tensor | None:
    """A buffer for ``role`` of this shape that lives as long as the thread, for results used once and
    dropped within one call (the transformed filters, their gradient, the products in the transformed
    domain); ``None`` while torch.compile traces. Each role has its own buffer, so two results alive at
    once never share one; it grows to the largest shape asked for and smaller ones are views of its start
    (images of many sizes do not pile up buffers).

    A training step transforms each filter bank twice (forward, backward) and takes the gradient once:
    at 256 channels each is a 9 MB result, over a hundred per step. Freed at once, they left glibc's heap
    fragmented: peak RSS 2.1 GB instead of 1.4 GB at 64 px / 9 blocks. Reused, they cost one buffer.
    """
    if torch.compiler.is_compiling():
        return None
    buffers = _thread.__dict__.setdefault("buffers", {})
    key = (role, like.dtype, like.device, torch.is_inference_mode_enabled())
    size = math.prod(shape)
    buffer = buffers.get(key)
    if buffer is None or buffer.numel() < size:
        buffers[key] = None  # the old one goes before the new one is made
        buffer = buffers[key] = torch.empty(size, dtype=like.dtype, device=like.device)
    return buffer[:size].view(shape)


def release_buffers() -> int:
    """Free this thread's reused Winograd buffers (they are made again when next needed); returns the
    bytes freed. They are as large as the largest layer call so far (about 0.3 GB after a 1024 px image
    translated whole), so a long-lived process that is done with Winograd can give that back."""
    buffers = _thread.__dict__.get("buffers", {})
    freed = sum(b.numel() * b.element_size() for b in buffers.values() if b is not None)
    buffers.clear()
    return freed


def _transform_weight_into(weight: torch.Tensor, out: torch.Tensor) -> None:
    """:func:`transform_weight` of ``weight`` (detached) written into ``out``, (36, K, C)."""
    k, c, r = weight.shape[:3]
    if compiled_for(weight):
        torch.ops.ganforge_winograd.weight_transform_into(weight.contiguous(), out)
    else:
        torch.matmul(_transform("G", weight, r), weight.reshape(k * c, r * r).t(), out=out.view(36, k * c))


def _transform_weight_once(weight: torch.Tensor) -> torch.Tensor:
    """:func:`transform_weight` into a reused buffer: valid until the next call in this thread (and
    outside autograd: the callers are the Function's own passes)."""
    weight = weight.detach()
    out = _scratch("filters", (36, *weight.shape[:2]), weight)
    if out is None:
        return transform_weight(weight)
    _transform_weight_into(weight, out)
    return out


def _input_tiles(x: torch.Tensor, r: int = 3, keep: bool = True, reflect: bool = False) -> torch.Tensor:
    """(N, C, s th + r - 1, s tw + r - 1) -> (36, C, N*th*tw) for output tiles of s = out_side(r): B^T d B
    of every overlapping 6x6 tile; into a reused buffer unless ``keep`` (the tiles are saved for a
    backward pass). With ``reflect`` (the compiled F(4x4, 3x3) transforms only), ``x`` is (N, C, 4 th,
    4 tw) and its reflection padding by one pixel is made inside the transform.

    One 6x6, stride-s convolution with 36 fixed filters per channel computes all tile transforms
    without first copying the overlapping tiles out.
    """
    n, c, hp, wp = x.shape
    if reflect:
        hp, wp = hp + 2, wp + 2
    s = out_side(r)
    tiles = (hp - r + 1) // s * ((wp - r + 1) // s)
    if _fused_tiles(x, r):
        ops = torch.ops.ganforge_winograd
        out = None if keep else _scratch("tiles", (36, c, n * tiles), x)
        if out is None:
            return (ops.input_tiles_reflect if reflect else ops.input_tiles)(x.contiguous())
        (ops.input_tiles_reflect_into if reflect else ops.input_tiles_into)(x.contiguous(), out)
        return out
    kernel = _transform("BT", x, r).view(36, 1, TILE, TILE)
    v = F.conv2d(x.reshape(n * c, 1, hp, wp), kernel, stride=s)  # (N*C, 36, th, tw)
    if n == 1:
        return v.view(c, 36, tiles).transpose(0, 1)  # a strided view the batched matmul takes as is
    return v.view(n, c, 36, tiles).permute(2, 1, 0, 3).reshape(36, c, n * tiles)


def _output_tiles(m: torch.Tensor, n: int, th: int, tw: int, r: int = 3) -> torch.Tensor:
    """(36, K, N*th*tw) -> (N, K, s th, s tw) with s = out_side(r): A^T m A of every tile, laid out as an
    image."""
    k, s = m.shape[1], out_side(r)
    y = torch.matmul(_transform("AT", m, r), m.reshape(36, -1)).view(s, s, k, n, th, tw)
    return y.permute(3, 2, 4, 0, 5, 1).reshape(n, k, th * s, tw * s)


def _grad_output_tiles(dy: torch.Tensor, r: int = 3) -> torch.Tensor:
    """Adjoint of :func:`_output_tiles`: (N, K, s th, s tw) -> (36, K, N*th*tw)."""
    if _fused_tiles(dy, r):
        return torch.ops.ganforge_winograd.output_tiles_backward(dy.contiguous())
    n, k, h, w = dy.shape
    s = out_side(r)
    th, tw = h // s, w // s
    tiles = dy.reshape(n, k, th, s, tw, s).permute(3, 5, 1, 0, 2, 4).reshape(s * s, -1)
    return torch.matmul(_transform("AT", dy, r).t(), tiles).view(36, k, n * th * tw)


def _grad_input_tiles(dv: torch.Tensor, n: int, hp: int, wp: int, r: int = 3, reflect: bool = False) -> torch.Tensor:
    """Adjoint of :func:`_input_tiles`: (36, C, N*th*tw) -> (N, C, hp, wp), overlapping tiles summed; with
    ``reflect``, (N, C, hp - 2, wp - 2) with the padding's gradient folded in."""
    if reflect:
        return torch.ops.ganforge_winograd.input_tiles_reflect_backward(dv.contiguous(), n, hp - 2, wp - 2)
    if _fused_tiles(dv, r):
        return torch.ops.ganforge_winograd.input_tiles_backward(dv.contiguous(), n, hp, wp)
    c, s = dv.shape[1], out_side(r)
    tiles = (hp - r + 1) // s * ((wp - r + 1) // s)
    d = torch.matmul(_transform("BT", dv, r).t(), dv.reshape(36, -1)).view(36, c, n, tiles)
    cols = d.permute(2, 1, 0, 3).reshape(n, c * 36, tiles)
    return F.fold(cols, (hp, wp), TILE, stride=s)


def _product(a: torch.Tensor, b: torch.Tensor, role: str) -> torch.Tensor:
    """``torch.bmm(a, b)`` into a reused buffer when the result is consumed within the call."""
    out = _scratch(role, (a.shape[0], a.shape[1], b.shape[2]), b)
    return torch.bmm(a, b) if out is None else torch.bmm(a, b, out=out)


def _forward(
    x: torch.Tensor, u: torch.Tensor, bias: torch.Tensor | None, r: int, keep: bool = True, reflect: bool = False
) -> tuple[torch.Tensor, torch.Tensor]:
    """(output, transformed input tiles) from the padded input (with ``reflect``: the input, padded in
    the transform) and the transformed r x r filters; the tiles are only valid after the call if ``keep``."""
    n, _, hp, wp = x.shape
    if reflect:
        hp, wp = hp + 2, wp + 2
    s = out_side(r)
    th, tw = (hp - r + 1) // s, (wp - r + 1) // s
    v = _input_tiles(x, r, keep, reflect)
    m = _product(u, v, "products")
    if _fused_tiles(m, r):  # the bias is added in the same pass
        no_bias = m.new_empty(0)
        y = torch.ops.ganforge_winograd.output_tiles(m, no_bias if bias is None else bias.detach().contiguous(), n, th, tw)
        return y, v
    y = _output_tiles(m, n, th, tw, r)
    if bias is not None:
        y = y + bias.view(1, -1, 1, 1)
    return y, v


def _forward_chunks(
    x: torch.Tensor, u: torch.Tensor, bias: torch.Tensor | None, r: int, per_chunk: int, keep: bool,
    reflect: bool = False,
) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """:func:`_forward` over chunks of ``per_chunk`` images with one filter transform: (output, the
    chunks' input tiles, valid after the call only if ``keep``)."""
    outputs, tiles = [], []
    for chunk in x.split(per_chunk):
        y, v = _forward(chunk, u, bias, r, keep, reflect)
        outputs.append(y)
        tiles.append(v)
    return outputs[0] if len(outputs) == 1 else torch.cat(outputs), tiles


class _Winograd(torch.autograd.Function):
    """Forward and backward in the Winograd domain, over chunks of images. Saved for the backward pass:
    the weights, each chunk's transformed input tiles, and the transformed filters where the caller
    keeps them anyway (:class:`WinogradConv2d` does); without those, each pass transforms the filters
    itself (a 4x larger tensor per call is not kept alive until the backward)."""

    @staticmethod
    def forward(  # type: ignore[override]
        ctx, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, u: torch.Tensor | None,
        per_chunk: int, reflect: bool,
    ) -> torch.Tensor:
        _, _, hp, wp = x.shape
        if reflect:
            hp, wp = hp + 2, wp + 2
        ctx.reflect = reflect
        ctx.kept = u is not None  # the caller's, kept beyond this call: the backward pass uses it too
        u = _transform_weight_once(weight) if u is None else u
        y, tiles = _forward_chunks(x, u, bias, weight.shape[2], per_chunk, True, reflect)
        if torch.compiler.is_compiling():
            tiles = [v.clone() for v in tiles]  # dynamo does not let a traced Function save views of intermediates
        ctx.save_for_backward(weight, *([u] if ctx.kept else []), *tiles)
        ctx.shape = (hp, wp)
        ctx.per_chunk = per_chunk
        ctx.has_bias = bias is not None
        return y

    @staticmethod
    @once_differentiable  # its ops have no derivatives of their own: a second one raises, not misleads
    def backward(ctx, dy: torch.Tensor):  # type: ignore[override]
        weight, *tiles = ctx.saved_tensors
        kept = tiles.pop(0) if ctx.kept else None
        hp, wp = ctx.shape
        k, c, r = weight.shape[:3]
        need_x, need_w = ctx.needs_input_grad[0], ctx.needs_input_grad[1]
        u = (kept if kept is not None else _transform_weight_once(weight)) if need_x else None
        du = _scratch("filter gradients", (36, k, c), dy) if need_w else None
        dx_parts = []
        for i, (dy_chunk, v) in enumerate(zip(dy.split(ctx.per_chunk), tiles)):
            dm = _grad_output_tiles(dy_chunk.contiguous(), r)
            if u is not None:
                dv = _product(u.transpose(1, 2), dm, "tile gradients")
                dx_parts.append(_grad_input_tiles(dv, dy_chunk.shape[0], hp, wp, r, ctx.reflect))
            if need_w:  # (36, K, C), summed over the chunks
                if du is None:  # tracing: no buffers
                    du = torch.bmm(dm, v.transpose(1, 2))
                elif i == 0:
                    torch.bmm(dm, v.transpose(1, 2), out=du)
                else:
                    du.baddbmm_(dm, v.transpose(1, 2))
        dx = dw = db = None
        if need_x:
            dx = dx_parts[0] if len(dx_parts) == 1 else torch.cat(dx_parts)
        if need_w:
            if compiled_for(du):
                dw = torch.ops.ganforge_winograd.weight_transform_backward(du, r)
            else:
                dw = torch.matmul(_transform("G", du, r).t(), du.reshape(36, k * c)).t().reshape(k, c, r, r)
        if ctx.has_bias and ctx.needs_input_grad[2]:
            db = dy.sum((0, 2, 3))
        return dx, dw, db, None, None, None


def winograd_conv(
    x: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None = None,
    transformed: torch.Tensor | None = None,
    reflect_pad: bool = False,
) -> torch.Tensor:
    """``F.conv2d(x, weight, bias)`` for 3x3 or 4x4 filters, stride 1, no padding, by Winograd F(4x4, 3x3)
    or F(3x3, 4x4); with ``reflect_pad``, of ``x`` reflection-padded by one pixel first (3x3 filters).

    ``x`` is (N, C, H + r - 1, W + r - 1) for r x r filters (with ``reflect_pad``, (N, C, H, W)) and the
    result (N, K, H, W); sizes that are not multiples of the output tile are padded with zeros to the
    next tile and cropped back.
    ``transformed``, the filters' :func:`transform_weight` computed before, saves that work (the
    gradient still reaches ``weight``).
    """
    if weight.dim() != 4 or weight.shape[2:] not in ((3, 3), (4, 4)) or x.dim() != 4:
        raise ValueError(
            f"winograd_conv takes 4-D input and 3x3 or 4x4 filters, not {tuple(x.shape)} and {tuple(weight.shape)}"
        )
    r = weight.shape[2]
    s = out_side(r)
    if reflect_pad and (
        r != 3 or x.shape[2] % s or x.shape[3] % s or not _fused_tiles(x, r) or torch.compiler.is_compiling()
    ):  # the compiled transforms pad inputs of whole tiles; elsewhere the padded copy is made first
        x, reflect_pad = F.pad(x, (1, 1, 1, 1), mode="reflect"), False
    pad = 2 if reflect_pad else 0  # the input transform pads, by reflection
    h, w = x.shape[2] + pad - r + 1, x.shape[3] + pad - r + 1
    th, tw = -(-h // s), -(-w // s)
    extra_h, extra_w = th * s - h, tw * s - w
    if extra_h or extra_w:
        x = F.pad(x, (0, extra_w, 0, extra_h))
    # The batched products run fastest at a few hundred tiles (measured on a 2-core AVX2 CPU: 36
    # products of 256x256 by 256xT at 80-100 GFLOP/s for T = 64-512, falling beyond), so large
    # batches go through in chunks of whole images.
    per_chunk = max(1, CHUNK_TILES // (th * tw))
    if torch.is_grad_enabled() and (x.requires_grad or weight.requires_grad or (bias is not None and bias.requires_grad)):
        y = _Winograd.apply(x, weight, bias, transformed, per_chunk, reflect_pad)
    else:
        u = transformed if transformed is not None else _transform_weight_once(weight)
        y = _forward_chunks(x, u, bias, r, per_chunk, False, reflect_pad)[0]
    if extra_h or extra_w:
        y = y[:, :, :h, :w]
    return y


class WinogradConv2d(KernelLayer, nn.Conv2d):
    """An ``nn.Conv2d`` (3x3 or 4x4, stride 1) computed by :func:`winograd_conv` on the CPU in fp32.

    Made by :func:`use_winograd` from an existing layer, in its place; the same parameters and state dict. The
    transformed filters are kept, and rewritten in place when the weights change: a training step calls
    each layer several times (CycleGAN's generators two or three times, forward and backward), all with
    the same weights. That kept 4.8% of a 128 px / 6-block CycleGAN step (2260 -> 2151 ms) for 9.4 MB
    per 256-channel layer (RSS 1.13x -> 1.29x the plain step's). A change is seen by the weight's
    storage, version counter and sum (CPU fused Adam does not bump the version counter, so the version
    alone would miss its steps).
    """

    _transformed: tuple[tuple[int, int, float], torch.Tensor] | None = None
    reflect_pad = False  # set by use_winograd where it took over the ReflectionPad2d(1) before this layer
    _kernel_attributes = ("_transformed", "reflect_pad", "_fold_partner")

    def _cached_transform(self, weight: torch.Tensor) -> torch.Tensor | None:
        if torch.compiler.is_compiling():
            # Traced: for inference (under freezing) it folds into a constant; for training the
            # Function transforms the weights itself.
            return None if torch.is_grad_enabled() else transform_weight(weight)
        weight = weight.detach()
        key = (weight.data_ptr(), weight._version, float(weight.sum()))
        kept_key, filters = self._transformed or (None, None)
        if kept_key == key:
            return filters
        shape = (36, *weight.shape[:2])
        if filters is None or (filters.shape, filters.dtype, filters.device) != (shape, weight.dtype, weight.device):
            with torch.inference_mode(False):  # a plain tensor, which training may save for its backward
                filters = torch.empty(shape, dtype=weight.dtype, device=weight.device)
        with torch.no_grad():
            _transform_weight_into(weight, filters)
        torch.autograd.graph.increment_version(filters)  # a graph that saved the old filters now refuses them
        self._transformed = (key, filters)
        return filters

    def _conv_forward(self, input: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
        reflect_pad = self.reflect_pad and not observed(self)  # with hooks, the pad before pads by itself
        if not cpu_fp32(input, weight):
            if reflect_pad:
                input = F.pad(input, (1, 1, 1, 1), mode="reflect")
            return super()._conv_forward(input, weight, bias)
        ph, pw = self.padding  # type: ignore[misc]
        r = self.kernel_size[0]
        if r == 4:
            s = out_side(r)
            h, w = input.shape[2] + 2 * ph - r + 1, input.shape[3] + 2 * pw - r + 1
            if input.shape[0] * -(-h // s) * -(-w // s) < MIN_TILES_4X4:
                return super()._conv_forward(input, weight, bias)
        if ph or pw:
            input = F.pad(input, (pw, pw, ph, ph))
        return winograd_conv(input, weight, bias, self._cached_transform(weight), reflect_pad)


class FoldedReflectionPad2d(KernelLayer, nn.ReflectionPad2d):
    """A ``ReflectionPad2d(1)`` whose padding the next layer, a :class:`WinogradConv2d`, makes inside its
    input transform (and folds back in its input gradient): it passes its input on unchanged. That
    saves the padded copy, its backward pass and their zero fills. Made by :func:`use_winograd` only
    for a pad that is used once, right before such a layer in an ``nn.Sequential``. While either of the
    two has a hook, the pad pads and the convolution does not (:func:`ganforge_cpu_kernels.observed`)."""

    _kernel_attributes = ("_fold_partner",)

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        return super().forward(input) if observed(self) else input


def eligible(layer: nn.Module, min_channels: int = 128) -> bool:
    """A plain 3x3 or 4x4, stride-1, undilated, ungrouped, zero- or un-padded convolution (padding below
    the filter size), wide enough to pay."""
    return (
        plain_conv(layer)
        and layer.kernel_size in ((3, 3), (4, 4))
        and all(p < layer.kernel_size[0] for p in layer.padding)
        and min(layer.in_channels, layer.out_channels) >= min_channels
    )


def use_winograd(module: nn.Module, min_channels: int = 128) -> list[str]:
    """Compute the eligible convolutions below ``module`` by Winograd from now on (each replaced in its
    parent by a :class:`WinogradConv2d` with the same parameters); return their names.

    Layers narrower than ``min_channels`` stay direct: there the transforms cost about what they save
    (forward and backward of one layer, batch 1, on the 2-core AVX2 CPU: 64 channels at 32x32 and at
    64x64 0.8x the direct speed, 128 channels at 64x64 1.4x, 256 channels at 32x32 1.8x).
    """
    names = switch_class(module, lambda layer: eligible(layer, min_channels), WinogradConv2d)
    _fold_reflection_pads(module)
    if names:
        compiled_kernels()  # build (or find) the fused transforms now, not inside the first step or a compile
        cpu_fp32 = torch.empty(0)  # the only place the layers compute by Winograd
        for r in _MATRICES:
            for name in ("BT", "G", "AT"):
                _transform(name, cpu_fp32, r)  # before any torch.compile traces them (see _transform)
    return names


def _fold_reflection_pads(module: nn.Module) -> None:
    """Hand each ``ReflectionPad2d(1)`` that feeds a 3x3, unpadded :class:`WinogradConv2d` in an
    ``nn.Sequential`` (a ResNet block's pattern), both used nowhere else, over to that layer."""
    for seq, i in single_use_pairs(module):
        pad, conv = seq[i], seq[i + 1]
        if (
            type(pad) is nn.ReflectionPad2d
            and tuple(pad.padding) == (1, 1, 1, 1)
            and isinstance(conv, WinogradConv2d)
            and conv.kernel_size == (3, 3)
            and conv.padding == (0, 0)
        ):
            seq[i] = rebuild_as(FoldedReflectionPad2d, pad)
            conv.reflect_pad = True
            link(seq[i], conv)
