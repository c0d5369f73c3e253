"""SeqGAN rollout throughput: sampled rollout tokens per second of the one-call batched
rollout (`SeqGenerator.rollout`) against one generation call per prefix length (the
reference's loop over t, each call batched over B x K), same weights, alternating.

Rollout tokens per G update = B * K * T (T - 1) / 2 (prefix t completes T - t positions),
the O(K T^2) cost of the paper. Sizes: SeqGAN's music config (vocab 89, embedding 32,
hidden 32, length 32, batch 64, K 16) and Polyphonic SeqGAN's small config (hidden 128, K 8).
"""

from __future__ import annotations

import time

import torch

from musicgan.benchmarks.timing import median, time_call
from musicgan.models.seqgan import SeqGenerator

CONFIGS = {
    "seqgan-music": {"vocab": 89, "embedding": 32, "hidden": 32, "length": 32, "batch": 64, "rollouts": 16},
    "polyseqgan-small": {"vocab": 400, "embedding": 32, "hidden": 128, "length": 32, "batch": 32, "rollouts": 8},
}


def per_prefix_rollouts(generator: SeqGenerator, ids: torch.Tensor, num_rollouts: int) -> list[torch.Tensor]:
    """One call per prefix length t: replays the prefix, then samples T - t tokens for B x K rows."""
    rows = ids.repeat(num_rollouts, 1)  # (K B, T)
    out = []
    for t in range(1, ids.shape[1]):
        state, tokens = None, torch.full((rows.shape[0],), generator.start_id, dtype=torch.long, device=ids.device)
        seq = rows.clone()
        for position in range(ids.shape[1]):
            hidden, state = generator._step(tokens, state)
            if position >= t:
                seq[:, position] = torch.multinomial(torch.softmax(generator._policy(hidden), -1), 1)[:, 0]
            tokens = seq[:, position]
        out.append(seq)
    return out


@torch.no_grad()
def bench_rollout(name: str, repeats: int = 5, device: str = "cpu") -> dict:
    c = CONFIGS[name]
    torch.manual_seed(0)
    generator = SeqGenerator(c["vocab"], c["embedding"], c["hidden"]).to(device)
    ids = generator.sample(c["batch"], c["length"])
    dev = torch.device(device)
    tokens = c["batch"] * c["rollouts"] * c["length"] * (c["length"] - 1) // 2
    runs = {
        "batched": (lambda: generator.rollout(ids, c["rollouts"])),
        "per_prefix": (lambda: per_prefix_rollouts(generator, ids, c["rollouts"])),
    }
    wall: dict[str, list[float]] = {k: [] for k in runs}
    cpu: dict[str, list[float]] = {k: [] for k in runs}
    for _ in range(repeats):
        for key, fn in runs.items():  # alternating, so drifting load hits both alike
            started = time.process_time()
            wall[key].append(time_call(fn, dev))
            cpu[key].append(time.process_time() - started)  # steadier than wall on a shared machine
    result = {"config": name, **c, "rollout_tokens": tokens, "threads": torch.get_num_threads()}
    for key in runs:
        result.update(
            {
                f"{key}_s": median(wall[key]),
                f"{key}_cpu_s": median(cpu[key]),
                f"{key}_tokens_per_cpu_s": tokens / median(cpu[key]),
            }
        )
    result["speedup_cpu_time"] = median(cpu["per_prefix"]) / median(cpu["batched"])
    return result


if __name__ == "__main__":  # python -m musicgan.benchmarks.rollout [device]
    import json
    import sys

    for config in CONFIGS:
        print(json.dumps(bench_rollout(config, device=sys.argv[1] if len(sys.argv) > 1 else "cpu")))
