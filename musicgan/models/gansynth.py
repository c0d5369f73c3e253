"""GANSynth's progressive generator and critic (Engel et al. 2019, "GANSynth: Adversarial
Neural Audio Synthesis", after Karras et al. 2018, "Progressive Growing of GANs for
Improved Quality, Stability, and Variation"): images of (2 channels: log magnitude,
instantaneous frequency) x time frames x frequency bins.

Stage s (0-based) works at `start` * 2^s (both axes). Block s has
min(FILTER_BASE / 2^(s + 1), filter_cap) filters, kernel 3, leaky ReLU 0.2.

  Generator  [z ⊕ pitch one-hot] -> pixel norm -> linear to filters x start (a "conv" over
             the 1x1 latent) -> conv; block s > 0: [upsample x2, conv, conv]; pixel norm
             after every conv; one 1x1 output layer (tanh) per stage.
  Critic     one 1x1 input layer per stage; block s > 0: [conv, conv, average-pool x2];
             block 0: conv, then one head convolution over the whole start image
             giving the score and the pitch-class logits (a linear layer here got a
             transposed weight gradient from the double backward, which DDP's gradient
             buckets warn about at every step).

`pitch_biases=True` (model.pitch_conditioning=blocks; not the reference's) also adds a pitch
bias to every conv of G: a learned per-class vector of the conv's width (a linear map of the
one-hot whose gain is sqrt(num_pitches), so one class's bias starts at unit scale as the
conv's output does), added before the leaky ReLU. With the reference's input-only
conditioning the one-hot is one of latent_dim + 1 unit-scale inputs after the pixel norm,
and z's variation drowns it: G trained on the pitch loss alone stays at chance for thousands
of steps at the paper's rate (README, GANSynth, `benchmarks.gansynth_conditioning`).
Cost: one (P x width) matmul per conv.

During the fade-in into stage s (alpha < 1) the new block's output is blended with the
previous stage's output upsampled (G) / the input pooled through the previous stage's
input layer (D): out = (1 - alpha) * old + alpha * new. No batch norm (the gradient
penalty is per sample) and no minibatch standard deviation layer (it couples samples).

Equalized learning rate (Karras 2018 §4.1, as GANSynth's reference code): every conv and
linear weight is stored N(0, 1), biases 0, and multiplied at every forward by He's constant
gain / sqrt(fan_in): gain sqrt(2) for layers followed by a leaky ReLU, 1 for the linear
output layers (G's image layers, D's score + pitch head), as the reference's default
`he_initializer_slope` 1.0 gives them. Adam's step is then the same relative change for
every layer whatever its fan-in. With PyTorch's default init (std ~ 1 / sqrt(3 fan_in)) the
signal shrank at every layer and the critic's outputs were its biases, the same for every
input. Cost: one weight x constant multiply per layer per forward.

Both networks add 0 * (sum of all their parameters) to their output, so every parameter is
in every graph: DDP (without find_unused_parameters, which the distributed notes advise
against) then reduces the blocks of later stages too, as zero gradients. With Adam's
beta1 = 0 a zero gradient moves no weight. Cost: one sum over the parameters per forward.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

FILTER_BASE = 4096
LEAK = 0.2
PIXEL_NORM_EPS = 1e-8


def stage_filters(stage: int, cap: int) -> int:
    """Filters of block `stage` (0-based): min(4096 / 2^(stage + 1), cap)."""
    return max(1, min(FILTER_BASE // 2 ** (stage + 1), int(cap)))


def pixel_norm(x: torch.Tensor) -> torch.Tensor:
    """Each position's feature vector scaled to unit mean square (Karras 2018)."""
    return x * torch.rsqrt(x.pow(2).mean(dim=1, keepdim=True) + PIXEL_NORM_EPS)


def blend(old: torch.Tensor, new: torch.Tensor, alpha: float) -> torch.Tensor:
    return new if alpha >= 1.0 else torch.lerp(old, new, float(alpha))


def _touch_all(out: torch.Tensor, module: nn.Module) -> torch.Tensor:
    """out + 0 * sum(parameters): every parameter in the graph (module docstring)."""
    return out + 0.0 * sum(p.sum() for p in module.parameters())


HIDDEN_GAIN = math.sqrt(2.0)  # He's gain before a (leaky) ReLU; the output layers use 1
OUTPUT_GAIN = 1.0


class _HeScaled:
    """Equalized learning rate for a conv / linear layer (module docstring): weight stored
    N(0, 1), biases 0, and `runtime_weight()` = weight x gain / sqrt(fan_in). The constant is
    not state: the state dict keeps `weight` and `bias`, so checkpoints and resume are as before."""

    def reset_parameters(self) -> None:  # called by the layer's __init__
        nn.init.normal_(self.weight)
        nn.init.zeros_(self.bias)

    def set_gain(self, gain: float) -> None:
        self.gain = float(gain)
        self.he_constant = self.gain / math.sqrt(self.weight[0].numel())

    def runtime_weight(self) -> torch.Tensor:
        return self.weight * self.he_constant


class EqualizedConv2d(_HeScaled, nn.Conv2d):
    def __init__(self, cin: int, cout: int, kernel, padding: int = 0, gain: float = HIDDEN_GAIN) -> None:
        super().__init__(cin, cout, kernel, padding=padding)
        self.set_gain(gain)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._conv_forward(x, self.runtime_weight(), self.bias)


class EqualizedLinear(_HeScaled, nn.Linear):
    def __init__(self, fan_in: int, out: int, gain: float = HIDDEN_GAIN) -> None:
        super().__init__(fan_in, out)
        self.set_gain(gain)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, self.runtime_weight(), self.bias)


def _conv(cin: int, cout: int) -> EqualizedConv2d:
    return EqualizedConv2d(cin, cout, 3, padding=1)


class ProgressiveGenerator(nn.Module):
    """(z (B, latent), pitch one-hot (B, P), stage, alpha) -> (B, 2, H_s, W_s) in (-1, 1)."""

    def __init__(
        self,
        latent_dim: int,
        num_pitches: int,
        start: tuple[int, int],
        num_stages: int,
        filter_cap: int,
        channels: int = 2,
        pitch_biases: bool = False,
    ) -> None:
        super().__init__()
        self.latent_dim, self.num_pitches, self.start = int(latent_dim), int(num_pitches), tuple(start)
        self.num_stages = int(num_stages)
        width = [stage_filters(s, filter_cap) for s in range(self.num_stages)]
        self.width = width
        self.project = EqualizedLinear(self.latent_dim + self.num_pitches, width[0] * start[0] * start[1])
        self.blocks = nn.ModuleList(
            [nn.ModuleList([_conv(width[0], width[0])])]
            + [nn.ModuleList([_conv(width[s - 1], width[s]), _conv(width[s], width[s])]) for s in range(1, num_stages)]
        )
        self.outputs = nn.ModuleList([EqualizedConv2d(w, channels, 1, gain=OUTPUT_GAIN) for w in width])
        self.pitch_biases = None
        if pitch_biases:
            self.pitch_biases = nn.ModuleList(
                [nn.ModuleList([self._pitch_bias(conv.out_channels) for conv in block]) for block in self.blocks]
            )

    def _pitch_bias(self, width: int) -> EqualizedLinear:
        return EqualizedLinear(self.num_pitches, width, gain=math.sqrt(self.num_pitches))

    def _conv_block(self, s: int, h: torch.Tensor, pitch: torch.Tensor) -> torch.Tensor:
        for i, conv in enumerate(self.blocks[s]):
            h = conv(h)
            if self.pitch_biases is not None:
                h = h + self.pitch_biases[s][i](pitch)[:, :, None, None]
            h = pixel_norm(F.leaky_relu(h, LEAK))
        return h

    def forward(self, z: torch.Tensor, pitch: torch.Tensor, stage: int, alpha: float = 1.0) -> torch.Tensor:
        pitch = pitch.to(z.dtype)
        x = pixel_norm(torch.cat([z, pitch], dim=1))
        h = self.project(x).view(len(z), self.width[0], *self.start)
        h = pixel_norm(F.leaky_relu(h, LEAK))
        previous = None
        for s in range(stage + 1):
            if s > 0:
                previous = h
                h = F.interpolate(h, scale_factor=2, mode="nearest")
            h = self._conv_block(s, h, pitch)
        image = torch.tanh(self.outputs[stage](h))
        if stage > 0 and alpha < 1.0:
            old = F.interpolate(torch.tanh(self.outputs[stage - 1](previous)), scale_factor=2, mode="nearest")
            image = blend(old, image, alpha)
        return _touch_all(image, self)


class ProgressiveCritic(nn.Module):
    """((B, 2, H_s, W_s), stage, alpha) -> (score (B,), pitch logits (B, P))."""

    def __init__(
        self, num_pitches: int, start: tuple[int, int], num_stages: int, filter_cap: int, channels: int = 2
    ) -> None:
        super().__init__()
        self.num_pitches, self.start, self.num_stages = int(num_pitches), tuple(start), int(num_stages)
        width = [stage_filters(s, filter_cap) for s in range(self.num_stages)]
        self.inputs = nn.ModuleList([EqualizedConv2d(channels, w, 1) for w in width])
        self.blocks = nn.ModuleList(
            [nn.ModuleList([_conv(width[0], width[0])])]
            + [nn.ModuleList([_conv(width[s], width[s]), _conv(width[s], width[s - 1])]) for s in range(1, num_stages)]
        )
        # [score, pitch logits]
        self.heads = EqualizedConv2d(width[0], 1 + self.num_pitches, tuple(start), gain=OUTPUT_GAIN)

    def forward(self, image: torch.Tensor, stage: int, alpha: float = 1.0) -> tuple[torch.Tensor, torch.Tensor]:
        h = F.leaky_relu(self.inputs[stage](image), LEAK)
        for s in range(stage, -1, -1):
            for conv in self.blocks[s]:
                h = F.leaky_relu(conv(h), LEAK)
            if s > 0:
                h = F.avg_pool2d(h, 2)
                if s == stage and alpha < 1.0:
                    old = F.leaky_relu(self.inputs[s - 1](F.avg_pool2d(image, 2)), LEAK)
                    h = blend(old, h, alpha)
        heads = self.heads(h).flatten(1)  # (B, 1 + P)
        return _touch_all(heads[:, 0], self), heads[:, 1:]


def resolution(start: tuple[int, int], stage: int) -> tuple[int, int]:
    """(frames, bins) of stage `stage`."""
    return start[0] * 2**stage, start[1] * 2**stage


def downscale(image: torch.Tensor, stage: int, num_stages: int, alpha: float = 1.0) -> torch.Tensor:
    """A full-resolution real image at stage `stage`: average-pooled to its size, and during
    a fade-in blended with the previous stage's size upsampled, as the generator's output is
    (Karras 2018), so real and fake images go through the same low-pass."""
    factor = 2 ** (num_stages - 1 - stage)
    current = F.avg_pool2d(image, factor) if factor > 1 else image
    if stage == 0 or alpha >= 1.0:
        return current
    old = F.interpolate(F.avg_pool2d(current, 2), scale_factor=2, mode="nearest")
    return blend(old, current, alpha)
