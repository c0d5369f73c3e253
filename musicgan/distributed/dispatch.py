"""Route any method of a network through `forward`.

DDP (and a DeepSpeed engine) hook only `forward`: calling `G.teacher_forced(x)` on the
wrapped module would bypass gradient synchronisation. Both backends therefore wrap each
network in `MethodDispatch`, and the loop calls `wrapper("teacher_forced", x)`. The inner
network keeps its own state-dict keys; checkpoints store the inner network.
"""

from __future__ import annotations

from torch import nn


class MethodDispatch(nn.Module):
    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward(self, method: str, *args, **kwargs):
        if method == "forward":
            return self.net(*args, **kwargs)
        return getattr(self.net, method)(*args, **kwargs)
