"""Next-frame regressors on spectral audio frames (`fft_blocks`): the six architectures of the
spectral-LSTM study, a GRUV-style baseline and five variants (Nayebi & Vitelli 2015, "GRUV:
Algorithmic Music Generation using Recurrent Neural Networks", for the baseline).

Every network maps frames x (B, T, D) to predictions (B, T, D), where output t is the
model's guess of frame t + 1 from frames 0..t (teacher forcing; the loss and the sliding
generation loop belong to the family). D = 2N for the faithful `fft_blocks` layout, N + 2
with `rfft`. H = hidden size.

  baseline  LSTM(H) -> dense D (no input layer)
  fc        dense(H, ReLU, dropout) -> LSTM(H) -> dense D
  conv      per step Conv1d(1 -> 12, width 3) + max-pool 2 over the D values -> flatten
            (12 * (D - 2) // 2 values: ~48k at D = 8,000, so `conv_project` can map them to H
            first) -> LSTM(H) -> dense D
  stacked   dense(H, ReLU, dropout) -> LSTM(H) -> LSTM(H) -> dense D
  bilinear  dense(H, ReLU, dropout) -> two independently initialised LSTM(H) on the same
            input, outputs summed -> dense D
  kblock    per step the K latest frames as a 2-channel K x D/2 image (real parts, imaginary
            parts; zeros before the song starts) -> two stride-2 3x3 convolutions -> dense H
            -> LSTM(H) -> dense D

The LSTMs are `DropoutLSTM`: dropout on the inputs and on the recurrent state, one mask per
sequence held for all its steps (Gal & Ghahramani 2016, "A Theoretically Grounded
Application of Dropout in Recurrent Neural Networks"; what Keras' `dropout` /
`recurrent_dropout` do). nn.LSTM and the fast CPU stack (lstm_stack.py) have no recurrent
dropout, hence this cell in plain torch ops (autograd backward: slower than the fast stack).
The L2 penalty on dense layers is the optimiser's business (weight decay on
`dense_parameters()`).
"""

from __future__ import annotations

import torch
from torch import nn

from musicgan.errors import ConfigError

SPECTRAL_ARCHS = ("baseline", "fc", "conv", "stacked", "bilinear", "kblock")
CONV_FILTERS, CONV_WIDTH = 12, 3


class DropoutLSTM(nn.Module):
    """One LSTM layer (gate order i, f, g, o as nn.LSTM) with input and recurrent dropout."""

    def __init__(
        self, input_size: int, hidden_size: int, input_dropout: float = 0.5, recurrent_dropout: float = 0.5
    ) -> None:
        super().__init__()
        self.input_size, self.hidden_size = int(input_size), int(hidden_size)
        self.input_dropout, self.recurrent_dropout = float(input_dropout), float(recurrent_dropout)
        self.weight_ih = nn.Parameter(torch.empty(4 * hidden_size, input_size))
        self.weight_hh = nn.Parameter(torch.empty(4 * hidden_size, hidden_size))
        self.bias = nn.Parameter(torch.zeros(4 * hidden_size))
        bound = hidden_size**-0.5  # nn.LSTM's initialisation
        nn.init.uniform_(self.weight_ih, -bound, bound)
        nn.init.uniform_(self.weight_hh, -bound, bound)
        nn.init.uniform_(self.bias, -bound, bound)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, T, F) -> (B, T, H)
        batch, steps, _ = x.shape
        x = x * self._mask(batch, self.input_size, self.input_dropout, x)[:, None, :]
        projected = x @ self.weight_ih.T + self.bias  # all steps in one product: (B, T, 4H)
        h = x.new_zeros(batch, self.hidden_size)
        c = x.new_zeros(batch, self.hidden_size)
        recurrent_mask = self._mask(batch, self.hidden_size, self.recurrent_dropout, x)
        outputs = []
        for t in range(steps):
            gates = projected[:, t] + (h * recurrent_mask) @ self.weight_hh.T
            i, f, g, o = gates.chunk(4, dim=1)
            c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
            h = torch.sigmoid(o) * torch.tanh(c)
            outputs.append(h)
        return torch.stack(outputs, dim=1) if outputs else x.new_zeros(batch, 0, self.hidden_size)

    def _mask(self, batch: int, size: int, p: float, like: torch.Tensor) -> torch.Tensor:
        """(B, size) inverted-dropout mask drawn once per sequence; ones in eval mode or at p = 0."""
        if not self.training or p <= 0.0:
            return like.new_ones(batch, size)
        return torch.bernoulli(like.new_full((batch, size), 1.0 - p)) / (1.0 - p)


def _dense_input(num_features: int, hidden: int, dropout: float) -> nn.Sequential:
    return nn.Sequential(nn.Linear(num_features, hidden), nn.ReLU(), nn.Dropout(dropout))


class ConvFrontEnd(nn.Module):
    """Per step: Conv1d(1 -> 12, width 3) + max-pool 2 over the frame's values, flattened."""

    def __init__(self, num_features: int, project_to: int | None, dropout: float) -> None:
        super().__init__()
        self.conv = nn.Conv1d(1, CONV_FILTERS, CONV_WIDTH)
        self.pool = nn.MaxPool1d(2)
        flat = conv_features(num_features)
        self.project = _dense_input(flat, project_to, dropout) if project_to else nn.Identity()
        self.out_features = project_to or flat

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, T, D) -> (B, T, out_features)
        batch, steps, features = x.shape
        maps = self.pool(torch.relu(self.conv(x.reshape(batch * steps, 1, features))))
        return self.project(maps.reshape(batch, steps, -1))


def conv_features(num_features: int) -> int:
    """Values the conv front end hands on per step: 12 filters x (D - 2) // 2 pooled positions."""
    return CONV_FILTERS * ((num_features - CONV_WIDTH + 1) // 2)


class KBlockFrontEnd(nn.Module):
    """Per step the K latest frames as a (2, K, D/2) image -> two stride-2 convs -> dense H."""

    def __init__(self, num_features: int, hidden: int, blocks: int, dropout: float, channels: int = 8) -> None:
        super().__init__()
        if num_features % 2:
            raise ConfigError(f"kblock needs frames of real then imaginary parts (an even size), got {num_features}")
        self.blocks = int(blocks)
        self.convs = nn.Sequential(
            nn.Conv2d(2, channels, 3, stride=2, padding=1),
            nn.ReLU(),
            nn.Conv2d(channels, 2 * channels, 3, stride=2, padding=1),
            nn.ReLU(),
        )
        with torch.no_grad():
            flat = self.convs(torch.zeros(1, 2, self.blocks, num_features // 2)).numel()
        self.dense = _dense_input(flat, hidden, dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, T, D) -> (B, T, H)
        batch, steps, features = x.shape
        padded = torch.cat([x.new_zeros(batch, self.blocks - 1, features), x], dim=1)
        windows = padded.unfold(1, self.blocks, 1)  # (B, T, D, K): frames t-K+1 .. t
        images = windows.reshape(batch * steps, 2, features // 2, self.blocks).transpose(2, 3)
        return self.dense(self.convs(images).reshape(batch, steps, -1))


class SpectralLSTM(nn.Module):
    """front end -> one LSTM, or two stacked, or two in parallel summed -> dense D."""

    def __init__(
        self,
        front: nn.Module,
        front_features: int,
        num_features: int,
        hidden: int,
        lstms: int,
        parallel: bool,
        lstm_dropout: float,
    ) -> None:
        super().__init__()
        self.front = front
        sizes = [front_features] + [hidden] * (lstms - 1) if not parallel else [front_features] * lstms
        self.lstms = nn.ModuleList(DropoutLSTM(size, hidden, lstm_dropout, lstm_dropout) for size in sizes)
        self.parallel = parallel
        self.out = nn.Linear(hidden, num_features)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, T, D) -> (B, T, D)
        features = self.front(x)
        if self.parallel:
            return self.out(sum(lstm(features) for lstm in self.lstms))
        for lstm in self.lstms:
            features = lstm(features)
        return self.out(features)

    def dense_parameters(self) -> list[nn.Parameter]:
        """The weights of dense and convolutional layers (the ones the seed's L2 penalty covers)."""
        lstm_params = {id(p) for p in self.lstms.parameters()}
        return [p for p in self.parameters() if id(p) not in lstm_params and p.dim() > 1]


def build_spectral_net(
    arch: str,
    num_features: int,
    hidden: int,
    *,
    dropout: float = 0.2,
    lstm_dropout: float = 0.5,
    kblock: int = 3,
    conv_project: int | None = None,
) -> SpectralLSTM:
    """One of SPECTRAL_ARCHS for frames of `num_features` values (see the module docstring)."""
    if arch not in SPECTRAL_ARCHS:
        raise ConfigError(f"unknown spectral architecture {arch!r}; choose one of {', '.join(SPECTRAL_ARCHS)}")
    if num_features < CONV_WIDTH + 1 or hidden < 1 or kblock < 1:
        raise ConfigError(f"need num_features >= 4, hidden >= 1, kblock >= 1 (got {num_features}, {hidden}, {kblock})")
    common = dict(num_features=num_features, hidden=hidden, lstm_dropout=lstm_dropout)
    if arch == "baseline":
        return SpectralLSTM(nn.Identity(), num_features, lstms=1, parallel=False, **common)
    if arch == "conv":
        front = ConvFrontEnd(num_features, conv_project, dropout)
        return SpectralLSTM(front, front.out_features, lstms=1, parallel=False, **common)
    if arch == "kblock":
        return SpectralLSTM(
            KBlockFrontEnd(num_features, hidden, kblock, dropout), hidden, lstms=1, parallel=False, **common
        )
    lstms, parallel = {"fc": (1, False), "stacked": (2, False), "bilinear": (2, True)}[arch]
    return SpectralLSTM(_dense_input(num_features, hidden, dropout), hidden, lstms=lstms, parallel=parallel, **common)
