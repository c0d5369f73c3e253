"""MidiNet (Yang et al. 2017, "MidiNet: A Convolutional Generative Adversarial Network for
Symbolic-domain Music Generation"): one bar of melody at a time, conditioned on the bar's
chord and, through a conditioner CNN, on the previous bar. Architecture only.

Shapes: B batch, S steps per bar (16), P = 128 pitches, C = 13 chord values (one-hot root +
minor flag). Bars are images (B, 1, S, P): time down, pitch across. `y` is (B, 13) and is
concatenated on channels at every scale, broadcast over space.

Conditioner (previous bar): conv 16 (1, P) -> (16, S, 1), then three conv 16 (2, 1) stride 2
-> S/2, S/4, S/8 (LeakyReLU 0.2 after batch norm); the generator concatenates the map of the
matching height at each of its scales.
Generator: [z ; y] -> dense 1024 -> [h ; y] -> dense 128 * S/8 -> (128, S/8, 1); three times
[h ; y ; cond] -> transposed conv 128 (2, 1) stride 2 (batch norm, ReLU); then [h ; y ; cond]
-> transposed conv 1 channel (1, P) -> sigmoid (B, 1, S, P).
Discriminator: [x ; y] -> conv (1 + C) (2, P) stride 2 -> (14, S/2, 1), LeakyReLU: the
feature-matching features; [h ; y] -> conv 77 (4, 1) stride 2 (batch norm, LeakyReLU) ->
flatten; [h ; y] -> dense 1024 (batch norm, LeakyReLU); [h ; y] -> dense 1: one logit. D
sees the chord, not the previous bar.

Batch norm and the one-forward convention. The reference calls D on the real batch and on
the fake batch separately, so each batch norm normalises real and fake with their own
statistics. Our discriminator step sends [real ; fake] through ONE forward (one forward per
backward under DDP), so every batch norm here is a `SplitBatchNorm`: `splits` equal parts
of the batch, each normalised with its own statistics and the running statistics updated
once per part, in order: exactly what separate calls compute (tests/test_midinet.py). It
costs one kernel call per part. Under DDP the statistics are per rank (plain batch norm,
not SyncBatchNorm: a rank normalises its own half of the global batch, and the backend does
not broadcast buffers), so the running statistics a checkpoint stores are rank 0's.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from musicgan.errors import ConfigError
from musicgan.models.minibatch import MinibatchFeatures, halves_of

NUM_PITCHES = 128
CHORD_DIM = 13
CONDITIONER_CHANNELS = 16
LEAK = 0.2
INIT_STD = 0.02  # DCGAN's N(0, 0.02) initialisation, as the reference


class SplitBatchNorm(nn.BatchNorm2d):
    """Batch norm over (B, C, H, W) or (B, C) that normalises `splits` equal parts of the
    batch separately (module docstring). Set by the owner before a forward (`splits`)."""

    splits = 1

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.splits == 1 or not self.training:
            return self._norm(x)
        return torch.cat([self._norm(part) for part in x.chunk(self.splits)])

    def _norm(self, x: torch.Tensor) -> torch.Tensor:
        flat = x.dim() == 2  # dense layers: (B, C) as (B, C, 1, 1)
        out = super().forward(x[:, :, None, None] if flat else x)
        return out[:, :, 0, 0] if flat else out


def with_chord(h: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """[h ; y] on channels: y (B, C) broadcast over h's spatial axes."""
    if h.dim() == 2:
        return torch.cat([h, y], dim=1)
    return torch.cat([h, y[:, :, None, None].expand(-1, -1, *h.shape[2:])], dim=1)


def init_weights(module: nn.Module) -> None:
    """N(0, 0.02) weights and zero biases for every convolution and dense layer; batch norm
    scale 1 and shift 0 (torch's defaults)."""
    for m in module.modules():
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)):
            nn.init.normal_(m.weight, 0.0, INIT_STD)
            if m.bias is not None:
                nn.init.zeros_(m.bias)


def check_bar(steps_per_bar: int) -> int:
    """The networks halve the bar three times: it must be a multiple of 8 steps."""
    if steps_per_bar < 8 or steps_per_bar % 8:
        raise ConfigError(f"MidiNet needs a bar of a multiple of 8 steps (>= 8), got {steps_per_bar}")
    return steps_per_bar


class Conditioner(nn.Module):
    """Previous bar (B, 1, S, P) -> maps of heights S, S/2, S/4, S/8 (16 channels, width 1)."""

    def __init__(self) -> None:
        super().__init__()
        c = CONDITIONER_CHANNELS
        self.convs = nn.ModuleList(
            [nn.Conv2d(1, c, (1, NUM_PITCHES), stride=(1, 2))]
            + [nn.Conv2d(c, c, (2, 1), stride=(2, 1)) for _ in range(3)]
        )
        self.norms = nn.ModuleList([SplitBatchNorm(c) for _ in self.convs])

    def forward(self, previous: torch.Tensor) -> list[torch.Tensor]:
        maps, h = [], previous
        for conv, norm in zip(self.convs, self.norms):
            h = F.leaky_relu(norm(conv(h)), LEAK)
            maps.append(h)
        return maps  # heights S, S/2, S/4, S/8


class MidiNetGenerator(nn.Module):
    """(z (B, latent), chord (B, 13), previous bar (B, 1, S, P)) -> bar (B, 1, S, P) in (0, 1)."""

    def __init__(self, steps_per_bar: int = 16, latent_dim: int = 100, hidden: int = 1024, channels: int = 128) -> None:
        super().__init__()
        self.steps_per_bar, self.latent_dim, self.channels = check_bar(steps_per_bar), latent_dim, channels
        self.base_height = steps_per_bar // 8
        self.conditioner = Conditioner()
        self.dense1 = nn.Linear(latent_dim + CHORD_DIM, hidden)
        self.dense2 = nn.Linear(hidden + CHORD_DIM, channels * self.base_height)
        cond_in = channels + CHORD_DIM + CONDITIONER_CHANNELS
        self.upsample = nn.ModuleList([nn.ConvTranspose2d(cond_in, channels, (2, 1), stride=(2, 1)) for _ in range(3)])
        self.to_bar = nn.ConvTranspose2d(cond_in, 1, (1, NUM_PITCHES), stride=(1, 2))
        self.norms = nn.ModuleList(
            [SplitBatchNorm(hidden), SplitBatchNorm(channels * self.base_height)]
            + [SplitBatchNorm(channels) for _ in self.upsample]
        )
        init_weights(self)

    def noise(self, batch_size: int) -> torch.Tensor:
        """z ~ N(0, 1)^latent, as the reference code draws it in training and at generation
        (its comment says the paper's experiments used (-1, 1) and gave similar results)."""
        weight = self.dense1.weight
        return torch.randn(batch_size, self.latent_dim, device=weight.device, dtype=weight.dtype)

    def forward(self, z: torch.Tensor, chord: torch.Tensor, previous: torch.Tensor) -> torch.Tensor:
        maps = self.conditioner(previous)[::-1]  # heights S/8, S/4, S/2, S
        h = F.relu(self.norms[0](self.dense1(with_chord(z, chord))))
        h = F.relu(self.norms[1](self.dense2(with_chord(h, chord))))
        h = h.view(-1, self.channels, self.base_height, 1)
        for up, norm, cond in zip(self.upsample, self.norms[2:], maps):
            h = F.relu(norm(up(torch.cat([with_chord(h, chord), cond], dim=1))))
        return torch.sigmoid(self.to_bar(torch.cat([with_chord(h, chord), maps[3]], dim=1)))


class MidiNetDiscriminator(nn.Module):
    """(bar (B, 1, S, P), chord (B, 13)) -> (logits (B,), first-conv features (B, 14 * S/2))."""

    def __init__(
        self,
        steps_per_bar: int = 16,
        channels: int = 77,
        hidden: int = 1024,
        minibatch_features: int = 0,
        minibatch_kernel_dim: int = 5,
    ) -> None:
        super().__init__()
        steps = check_bar(steps_per_bar)
        features = 1 + CHORD_DIM
        self.conv1 = nn.Conv2d(features, features, (2, NUM_PITCHES), stride=2)
        self.conv2 = nn.Conv2d(features + CHORD_DIM, channels, (4, 1), stride=(2, 1))
        flat = channels * ((steps // 2 - 4) // 2 + 1)
        self.dense = nn.Linear(flat + CHORD_DIM, hidden)
        self.out = nn.Linear(hidden + minibatch_features + CHORD_DIM, 1)
        self.norm2, self.norm_dense = SplitBatchNorm(channels), SplitBatchNorm(hidden)
        init_weights(self)
        # Off: no parameter, so older checkpoints load. The dense features are ~unit scale
        # over `hidden` rows: a std of 0.2 / sqrt(hidden) starts the kernels' L1 distances near 1.
        self.minibatch = (
            MinibatchFeatures(hidden, minibatch_features, minibatch_kernel_dim, init_std=0.2 / hidden**0.5)
            if minibatch_features > 0
            else None
        )

    def features(self, bar: torch.Tensor, chord: torch.Tensor) -> torch.Tensor:
        """The first convolution's output (B, 14, S/2, 1): feature matching reads these."""
        return F.leaky_relu(self.conv1(with_chord(bar, chord)), LEAK)

    def forward(self, bar: torch.Tensor, chord: torch.Tensor, splits: int = 1):
        """`splits` > 1: the batch is that many equal parts (e.g. [real ; fake]) whose batch
        statistics are kept apart, as if D were called on each part."""
        for norm in (self.norm2, self.norm_dense):
            norm.splits = splits
        first = self.features(bar, chord)
        h = F.leaky_relu(self.norm2(self.conv2(with_chord(first, chord))), LEAK).flatten(1)
        h = F.leaky_relu(self.norm_dense(self.dense(with_chord(h, chord))), LEAK)
        if self.minibatch is not None:  # each part ([real ; fake]) compared within itself, like its statistics
            h = torch.cat([h, self.minibatch(h, halves_of(len(h), splits, h.device))], dim=1)
        return self.out(with_chord(h, chord)).squeeze(1), first.flatten(1)
