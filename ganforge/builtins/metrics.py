"""Built-in metrics: FID and KID (Inception features) and the paired PSNR, SSIM and L1."""

from __future__ import annotations

from ganforge.hookspecs import Register, hookimpl
from ganforge.metrics.fid import InceptionParams, KIDParams, build_fid, build_kid
from ganforge.metrics.paired import SSIMParams, build_l1, build_psnr, build_ssim


@hookimpl
def register_metrics(register: Register) -> None:
    register("fid", build_fid, params=InceptionParams)
    register("kid", build_kid, params=KIDParams)
    register("psnr", build_psnr)
    register("ssim", build_ssim, params=SSIMParams)
    register("l1", build_l1)
