"""Route any method of a network through `forward`, optionally under bf16 autocast.

DDP (and a DeepSpeed engine) hook only `forward`: calling `G.teacher_forced(x)` on the
wrapped module would bypass gradient synchronisation. Both backends therefore wrap each
network in `MethodDispatch`, and the loop calls `wrapper("teacher_forced", x)`. The inner
network keeps its own state-dict keys; checkpoints store the inner network.

Mixed precision (`dist.precision=bf16`) is the same for both backends: the forward of a
network being trained runs under `torch.autocast(bfloat16)`; weights, optimizer state,
gradients and the backward stay fp32, and the plain modules (D frozen inside G's step,
sampling) run in fp32. DeepSpeed does this with its `torch_autocast` config section; the DDP
backend does it here, inside the DDP wrapper, as torch's AMP notes recommend for DDP.
"""

from __future__ import annotations

import torch
from torch import nn


def bf16_autocast_supported(device: torch.device) -> bool:
    """bf16 autocast is used on CUDA devices that support bf16 (Ampere and later). On CPU
    musicgan trains in fp32: CPUs without AVX512-BF16/AMX run bf16 products slower than fp32,
    and the DeepSpeed backend's CPU accelerator makes the same choice."""
    return device.type == "cuda" and torch.cuda.is_bf16_supported()


class MethodDispatch(nn.Module):
    def __init__(self, net: nn.Module, autocast_dtype: torch.dtype | None = None) -> None:
        super().__init__()
        self.net = net
        self.autocast_dtype = autocast_dtype  # None: the network's own dtype (fp32)

    def forward(self, method: str, *args, **kwargs):
        if self.autocast_dtype is None:
            return self._call(method, *args, **kwargs)
        device_type = next(self.net.parameters()).device.type
        with torch.autocast(device_type, dtype=self.autocast_dtype):
            return self._call(method, *args, **kwargs)

    def _call(self, method: str, *args, **kwargs):
        if method == "forward":
            return self.net(*args, **kwargs)
        return getattr(self.net, method)(*args, **kwargs)
