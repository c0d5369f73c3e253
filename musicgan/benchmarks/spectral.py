"""Training throughput of the six spectral-LSTM networks: blocks (frames) per second of one
forward + backward + RMSprop step on random frames, in train mode (dropout on), at the
spectral-chorales and spectral-paper sizes.

    python -m musicgan.benchmarks.spectral [small|paper|toy] [repeats]
"""

from __future__ import annotations

import platform

import torch

from musicgan.benchmarks.timing import median, time_call
from musicgan.models.spectral import SPECTRAL_ARCHS, build_spectral_net

# (values per frame D, hidden H, window T, batch): rfft N = 1,000 -> 1,002; full N = 4,000 -> 8,000
SIZES = {"small": (1002, 256, 40, 16), "paper": (8000, 2048, 40, 4), "toy": (18, 8, 4, 2)}  # toy: tests


def train_step(net: torch.nn.Module, optimizer: torch.optim.Optimizer, frames: torch.Tensor) -> None:
    optimizer.zero_grad(set_to_none=True)
    predictions = net(frames[:, :-1])
    torch.nn.functional.mse_loss(predictions, frames[:, 1:]).backward()
    optimizer.step()


def blocks_per_second(arch: str, size: str, repeats: int = 3, device: str = "cpu") -> dict:
    features, hidden, window, batch = SIZES[size]
    torch.manual_seed(0)
    # conv at the paper's size would feed 12 x 3,999 values to the LSTM (~393M weights): the
    # benchmark uses the projection, as the paper preset should.
    net = build_spectral_net(arch, features, hidden, conv_project=hidden if arch == "conv" else None).to(device)
    optimizer = torch.optim.RMSprop(net.parameters(), lr=1e-4)
    frames = torch.randn(batch, window + 1, features, device=device)
    train_step(net, optimizer, frames)  # warm-up
    seconds = median(
        [time_call(lambda: train_step(net, optimizer, frames), torch.device(device)) for _ in range(repeats)]
    )
    return {
        "arch": arch,
        "size": size,
        "blocks_per_s": batch * window / seconds,
        "step_s": seconds,
        "parameters": sum(p.numel() for p in net.parameters()),
        "batch": batch,
        "window": window,
    }


def run(size: str, repeats: int = 3) -> dict:
    rows = [blocks_per_second(arch, size, repeats) for arch in SPECTRAL_ARCHS]
    return {
        "rows": rows,
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "machine": platform.processor() or platform.machine(),
    }


if __name__ == "__main__":
    import json
    import sys

    result = run(sys.argv[1] if len(sys.argv) > 1 else "small", int(sys.argv[2]) if len(sys.argv) > 2 else 3)
    for row in result["rows"]:
        print(
            f"{row['size']:<6} {row['arch']:<9} {row['blocks_per_s']:9.1f} blocks/s  "
            f"{row['parameters'] / 1e6:7.2f}M params"
        )
    print(json.dumps({k: v for k, v in result.items() if k != "rows"}))
