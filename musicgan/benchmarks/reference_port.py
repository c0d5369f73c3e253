"""The reference the events/s ratio divides by: C-RNN-GAN's adversarial step written the way
the main public PyTorch port (cjbayron/c-rnn-gan.pytorch: `c_rnn_gan.py`, `train.py`)
writes it, at the benchmarked sizes. Written here from what that port does, not copied:

- G: per step concat(z_t, previous output) -> Linear -> relu -> nn.LSTMCell -> dropout ->
  nn.LSTMCell -> Linear (the output fed back), a Python loop over the T steps.
- D: dropout on the input, nn.LSTM(bidirectional=True, 2 layers, dropout between them),
  Linear on both directions' features, sigmoid, mean over the steps.
- G's update: zero_grad, G forward, D on the real batch and D on the fakes (two forwards of
  the trainable D, which also receives weight gradients nobody uses), feature matching as
  nn.MSELoss(reduction="sum") between the two feature tensors (or -log clamp(D(fake))),
  backward, clip_grad_norm_(5), SGD step.
- D's update: zero_grad, D on the real batch and on fake.detach() (two more forwards), the
  loss -log clamp(p_real) - log clamp(1 - p_fake) averaged, backward, clip, SGD step.

The port trains on unpadded windows; here the replayed batch is used as it is (same tensor
for both sides of the ratio). The port's SGD uses momentum 0.9 and no L2 penalty.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

TINY = 1e-40  # the port clamps probabilities to [1e-40, 1] before the log


class PortGenerator(nn.Module):
    def __init__(self, num_features: int, hidden: int, dropout: float) -> None:
        super().__init__()
        self.num_features = num_features
        self.input_layer = nn.Linear(2 * num_features, hidden)
        self.cell1 = nn.LSTMCell(hidden, hidden)
        self.dropout = nn.Dropout(dropout)
        self.cell2 = nn.LSTMCell(hidden, hidden)
        self.output_layer = nn.Linear(hidden, num_features)

    def forward(self, z: torch.Tensor, states) -> torch.Tensor:
        """z (B, T, F) uniform noise -> (B, T, F), one step at a time."""
        batch_size = z.shape[0]
        previous = torch.empty(batch_size, self.num_features, dtype=z.dtype).uniform_()
        (h1, c1), (h2, c2) = states
        outputs = []
        for z_t in z.unbind(1):
            x = torch.relu(self.input_layer(torch.cat([z_t, previous], dim=-1)))
            h1, c1 = self.cell1(x, (h1, c1))
            h1 = self.dropout(h1)
            h2, c2 = self.cell2(h1, (h2, c2))
            previous = self.output_layer(h2)
            outputs.append(previous)
        return torch.stack(outputs, dim=1)

    def zero_states(self, batch_size: int):
        hidden = self.cell1.hidden_size
        weight = self.input_layer.weight
        return tuple((weight.new_zeros(batch_size, hidden), weight.new_zeros(batch_size, hidden)) for _ in range(2))


class PortDiscriminator(nn.Module):
    def __init__(self, num_features: int, hidden: int, dropout: float) -> None:
        super().__init__()
        self.dropout = nn.Dropout(dropout)
        self.lstm = nn.LSTM(num_features, hidden, 2, batch_first=True, dropout=dropout, bidirectional=True)
        self.classifier = nn.Linear(2 * hidden, 1)

    def forward(self, x: torch.Tensor, state):
        """x (B, T, F) -> (mean probability per sequence (B,), features (B, T, 2H))."""
        features, _ = self.lstm(self.dropout(x), state)
        probability = torch.sigmoid(self.classifier(features))
        return probability.mean(dim=(1, 2)), features

    def zero_state(self, batch_size: int):
        weight = self.classifier.weight
        shape = (2 * self.lstm.num_layers, batch_size, self.lstm.hidden_size)
        return weight.new_zeros(shape), weight.new_zeros(shape)


@dataclass
class PortNets:
    generator: PortGenerator
    discriminator: PortDiscriminator
    opt_g: torch.optim.Optimizer
    opt_d: torch.optim.Optimizer
    feature_matching: bool
    clip: float


def build_port(cfg, num_features: int) -> PortNets:
    """The port's networks at the config's sizes (hidden, dropout, learning rates), with the
    port's optimizer (SGD, momentum 0.9) and clip."""
    m, o = cfg.model, cfg.optim
    generator = PortGenerator(num_features, m.g_hidden, m.g_dropout)
    discriminator = PortDiscriminator(num_features, m.d_hidden, m.d_dropout)
    return PortNets(
        generator,
        discriminator,
        torch.optim.SGD(generator.parameters(), lr=o.g_lr, momentum=0.9),
        torch.optim.SGD(discriminator.parameters(), lr=o.d_lr, momentum=0.9),
        cfg.train.feature_matching,
        o.grad_clip,
    )


def port_step(nets: PortNets, real: torch.Tensor) -> tuple[float, float]:
    """One adversarial step the port's way on real (B, T, F); (g_loss, d_loss)."""
    generator, discriminator = nets.generator, nets.discriminator
    batch_size, seq_len, num_features = real.shape
    g_states = generator.zero_states(batch_size)
    d_state = discriminator.zero_state(batch_size)

    nets.opt_g.zero_grad()
    z = torch.empty(batch_size, seq_len, num_features).uniform_()
    fake = generator(z, g_states)
    if nets.feature_matching:
        _, real_features = discriminator(real, d_state)
        _, fake_features = discriminator(fake, d_state)
        g_loss = nn.functional.mse_loss(real_features, fake_features, reduction="sum")
    else:
        p_fake, _ = discriminator(fake, d_state)
        g_loss = -torch.log(torch.clamp(p_fake, TINY, 1.0)).mean()
    g_loss.backward()
    nn.utils.clip_grad_norm_(generator.parameters(), max_norm=nets.clip)
    nets.opt_g.step()

    nets.opt_d.zero_grad()
    p_real, _ = discriminator(real, d_state)
    p_fake, _ = discriminator(fake.detach(), d_state)
    d_loss = (-torch.log(torch.clamp(p_real, TINY, 1.0)) - torch.log(torch.clamp(1 - p_fake, TINY, 1.0))).mean()
    d_loss.backward()
    nn.utils.clip_grad_norm_(discriminator.parameters(), max_norm=nets.clip)
    nets.opt_d.step()
    return float(g_loss.detach()), float(d_loss.detach())
