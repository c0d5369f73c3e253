"""C-RNN-GAN (Mogren 2016): a recurrent generator that feeds back its own output, and a
bidirectional recurrent discriminator with one logit per step. Architecture only.

Shapes: B batch, T steps, F features per step (4 for one tone per step, 3K+1 for K tones),
H hidden units, L stacked LSTM layers.

Generator, per step t:   in_t = concat(z_t ~ U[0,1)^noise_dim, y_{t-1})   (y_{-1} ~ U[0,1)^F)
                         x_t  = relu(dense(in_t))
                         L x LSTM(H), dropout on each layer's output (training only)
                         y_t  = linear(top output)        (no activation)

The free-running loop is the hot path of every adversarial step: `CRNNGenerator.forward`
runs it through `free_running.FreeRunningLoop`, a hand-written forward/backward (BPTT; its
module says what it does differently and why). What it buys: BENCHMARKS.md ("Generator
speed", `python -m musicgan.benchmarks.generator 1`).
`reference_free_running` is the plain eager nn.LSTMCell loop with the same parameters and
the same random draws; tests hold the two equal in outputs and gradients.

Minibatch discrimination (Salimans et al. 2016, `minibatch_features` > 0): D's per-step
features, averaged over each row's valid steps, go through a tensor T (2H x K x C); for
each row and kernel k, c_k = sum over the OTHER rows of its group of exp(-L1 distance of
their rows of T); the K values are appended to every step's features before the logit.

The discriminator (layout "separate") runs its two LSTM stacks on CPU through
`lstm_stack.run_lstm_stacks`: the same treatment (one input projection per layer, per-step
recurrent products only, weight gradients as one product over T*B rows, none when frozen),
the two directions' step loops side by side on two threads; `CRNNDiscriminator.fast_lstm =
False` switches back to nn.LSTM (tests/test_lstm_stack.py holds the two equal). What it buys
against nn.LSTM (oneDNN): BENCHMARKS.md ("The discriminator's LSTM stack",
`python -m musicgan.benchmarks.discriminator 2 7`).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from musicgan.errors import ConfigError
from musicgan.losses import valid_steps
from musicgan.models.free_running import FreeRunningLoop, release_workspace  # noqa: F401 (re-exported)
from musicgan.models.lstm_stack import run_lstm_stacks
from musicgan.models.minibatch import MinibatchFeatures

DISCRIMINATOR_LAYOUTS = ("separate", "interleaved")


def _check_sizes(network: str, num_features: int, hidden: int, layers: int, dropout: float) -> None:
    """The size checks both networks share; the message names the network."""
    if num_features < 1 or hidden < 1 or layers < 1:
        raise ConfigError(f"{network} needs num_features, hidden, layers >= 1 (got {num_features}, {hidden}, {layers})")
    if not 0.0 <= dropout < 1.0:
        raise ConfigError(f"{network} dropout must be in [0, 1) (got {dropout})")


class CRNNGenerator(nn.Module):
    """C-RNN-GAN generator; also the MLE baseline when trained with `teacher_forced` only.

    Parameters (all created here, all used by every forward):
      dense:    Linear(noise_dim + F -> H), input order (noise, previous output)
      lstms[l]: nn.LSTM(H -> H), one layer each so dropout can follow every layer
      output:   Linear(H -> F)
    """

    def __init__(
        self,
        num_features: int,
        hidden: int = 350,
        layers: int = 2,
        dropout: float = 0.5,
        noise_dim: int | None = None,
    ) -> None:
        super().__init__()
        _check_sizes("generator", num_features, hidden, layers, dropout)
        self.num_features = num_features
        self.hidden = hidden
        self.layers = layers
        self.dropout = dropout
        self.noise_dim = num_features if noise_dim is None else noise_dim
        self.dense = nn.Linear(self.noise_dim + num_features, hidden)
        self.lstms = nn.ModuleList(nn.LSTM(hidden, hidden, batch_first=True) for _ in range(layers))
        self.output = nn.Linear(hidden, num_features)

    # ---- randomness: one function, one order of draws, shared by every implementation ----
    def draw_randomness(
        self,
        batch_size: int,
        seq_len: int,
        noise: torch.Tensor | None = None,
        initial: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """Noise (B, T, noise_dim), initial "previous output" (B, F), dropout masks
        (L, T, B, H) already scaled by 1/(1-p), or None outside training.

        Drawn from the global torch RNG on the parameters' device in this order: noise,
        initial, masks. The same seed therefore gives the same draws to the fast loop, the
        reference loop and teacher forcing.
        """
        if batch_size < 1 or seq_len < 1:
            raise ValueError(f"batch_size and seq_len must be >= 1 (got {batch_size}, {seq_len})")
        weight = self.dense.weight
        if noise is None:
            noise = torch.rand(batch_size, seq_len, self.noise_dim, device=weight.device, dtype=weight.dtype)
        elif noise.shape != (batch_size, seq_len, self.noise_dim):
            raise ValueError(f"noise must be {(batch_size, seq_len, self.noise_dim)}, got {tuple(noise.shape)}")
        if initial is None:
            initial = torch.rand(batch_size, self.num_features, device=weight.device, dtype=weight.dtype)
        elif initial.shape != (batch_size, self.num_features):
            raise ValueError(f"initial must be {(batch_size, self.num_features)}, got {tuple(initial.shape)}")
        masks = None
        if self.training and self.dropout > 0:
            keep = 1.0 - self.dropout
            # rand + compare: 3x cheaper on CPU than bernoulli_, same distribution.
            masks = torch.rand(self.layers, seq_len, batch_size, self.hidden, device=weight.device, dtype=weight.dtype)
            masks = masks.lt_(keep).div_(keep)
        return noise, initial, masks

    def fused_lstm_parameters(self) -> list[torch.Tensor]:
        """Per layer: W = [W_ih | W_hh] (4H, 2H) and b = b_ih + b_hh (4H), gate rows reordered
        from torch's i, f, g, o to i, f, o, g. Built with autograd from the nn.LSTM
        parameters, so gradients reach those (one 4H x 2H copy per layer per call)."""
        h = self.hidden
        order = torch.cat([torch.arange(0, 2 * h), torch.arange(3 * h, 4 * h), torch.arange(2 * h, 3 * h)])
        order = order.to(self.dense.weight.device)
        flat: list[torch.Tensor] = []
        for lstm in self.lstms:
            weight = torch.cat([lstm.weight_ih_l0, lstm.weight_hh_l0], dim=1)
            flat.append(weight.index_select(0, order))
            flat.append((lstm.bias_ih_l0 + lstm.bias_hh_l0).index_select(0, order))
        return flat

    def forward(
        self,
        batch_size: int | None = None,
        seq_len: int | None = None,
        *,
        noise: torch.Tensor | None = None,
        initial: torch.Tensor | None = None,
        teacher: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Free-running generation: (B, T, F). `noise` (B, T, noise_dim) and `initial` (B, F)
        replace the random draws (tests, parity).

        `teacher=x` (B, T, F) runs `teacher_forced(x)` instead. Under DDP use this form
        (`ddp_generator(teacher=x)`) for MLE pretraining: DDP synchronises gradients only
        for passes made through the wrapper's forward."""
        if teacher is not None:
            if (batch_size, seq_len) not in ((None, None), tuple(teacher.shape[:2])):
                raise ValueError(f"batch_size/seq_len {batch_size}/{seq_len} contradict teacher {tuple(teacher.shape)}")
            return self.teacher_forced(teacher, noise=noise, initial=initial)
        if batch_size is None or seq_len is None:
            raise ValueError("free-running generation needs batch_size and seq_len")
        noise, initial, masks = self.draw_randomness(batch_size, seq_len, noise, initial)
        weight = self.dense.weight
        if torch.is_autocast_enabled(weight.device.type):
            # The hand-written loop keeps one dtype throughout; under autocast take the
            # plain autograd loop, which autocast handles op by op.
            return _eager_loop(self, noise, initial, masks)
        noise_weight = weight[:, : self.noise_dim]
        prev_weight = weight[:, self.noise_dim :]
        # Noise half of the dense layer for every step in one product: (T, B, H).
        pre_noise = F.linear(noise.transpose(0, 1), noise_weight, self.dense.bias).contiguous()
        outputs = FreeRunningLoop.apply(
            pre_noise,
            initial,
            masks,
            prev_weight,
            self.output.weight,
            self.output.bias,
            *self.fused_lstm_parameters(),
        )  # (T, B, F)
        return outputs.transpose(0, 1)

    def teacher_forced(
        self,
        x: torch.Tensor,
        *,
        noise: torch.Tensor | None = None,
        initial: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """MLE pretraining: step t sees the real x[:, t-1] (noise at t=0) and predicts x[:, t].

        x: (B, T, F) -> predictions (B, T, F). The inputs are known, so every LSTM layer runs
        over the whole sequence at once (cuDNN on GPU)."""
        batch_size, seq_len, _ = x.shape
        noise, initial, masks = self.draw_randomness(batch_size, seq_len, noise, initial)
        previous = torch.cat([initial.unsqueeze(1), x[:, :-1]], dim=1)  # (B, T, F)
        hidden = torch.relu(self.dense(torch.cat([noise, previous], dim=2)))  # (B, T, H)
        for layer, lstm in enumerate(self.lstms):
            hidden, _ = lstm(hidden)
            if masks is not None:
                hidden = hidden * masks[layer].transpose(0, 1)
        return self.output(hidden)


def reference_free_running(
    generator: CRNNGenerator,
    batch_size: int,
    seq_len: int,
    *,
    noise: torch.Tensor | None = None,
    initial: torch.Tensor | None = None,
) -> torch.Tensor:
    """The plain eager loop: nn.LSTMCell per layer per step, sharing the generator's own
    parameters and random draws. The equivalence tests and the benchmark compare against it."""
    noise, initial, masks = generator.draw_randomness(batch_size, seq_len, noise, initial)
    return _eager_loop(generator, noise, initial, masks)


def _lstm_cells(generator: CRNNGenerator) -> list[nn.LSTMCell]:
    """nn.LSTMCell modules whose parameters ARE the generator's nn.LSTM parameters (built on
    the meta device, then pointed at the real tensors: no copy, gradients reach the originals)."""
    cells = []
    for lstm in generator.lstms:
        cell = nn.LSTMCell(generator.hidden, generator.hidden, device="meta")
        cell.weight_ih = lstm.weight_ih_l0
        cell.weight_hh = lstm.weight_hh_l0
        cell.bias_ih = lstm.bias_ih_l0
        cell.bias_hh = lstm.bias_hh_l0
        cells.append(cell)
    return cells


def _eager_loop(
    generator: CRNNGenerator,
    noise: torch.Tensor,
    initial: torch.Tensor,
    masks: torch.Tensor | None,
) -> torch.Tensor:
    cells = _lstm_cells(generator)
    batch_size, seq_len, _ = noise.shape
    zeros = noise.new_zeros(batch_size, generator.hidden)
    states = [(zeros, zeros) for _ in cells]
    previous = initial
    outputs = []
    for t in range(seq_len):
        x = torch.relu(generator.dense(torch.cat([noise[:, t], previous], dim=1)))
        for layer, cell in enumerate(cells):
            h, c = cell(x, states[layer])
            states[layer] = (h, c)
            x = h if masks is None else h * masks[layer, t]
        previous = generator.output(x)
        outputs.append(previous)
    return torch.stack(outputs, dim=1)


class CRNNDiscriminator(nn.Module):
    """C-RNN-GAN discriminator: dropout on the inputs, a bidirectional L-layer LSTM (H per
    direction), one logit per step from a linear layer shared across steps.

    layout "separate": the reference's arrangement, one L-layer stack reads x forwards and
    another reads it backwards; their top outputs are concatenated per step.
    layout "interleaved": torch's nn.LSTM(bidirectional=True), where layer l+1 of each
    direction sees both directions of layer l (cuDNN's native layout).
    Between stacked layers both layouts apply nn.LSTM's own dropout (same rate).

    On CPU without autocast, layout "separate" runs both stacks through
    `lstm_stack.run_lstm_stacks` (a hand-written forward/backward on the same nn.LSTM
    parameters, both directions at once, same dropout draws):
    outputs and gradients equal nn.LSTM's within float rounding. `fast_lstm = False` (on
    the class or an instance) forces nn.LSTM, the reference the tests and benchmarks
    compare with. CUDA and autocast always take nn.LSTM (cuDNN).
    """

    fast_lstm = True

    def __init__(
        self,
        num_features: int,
        hidden: int = 350,
        layers: int = 2,
        dropout: float = 0.5,
        layout: str = "separate",
        minibatch_features: int = 0,
        minibatch_kernel_dim: int = 5,
    ) -> None:
        super().__init__()
        if layout not in DISCRIMINATOR_LAYOUTS:
            raise ConfigError(f"discriminator layout must be one of {DISCRIMINATOR_LAYOUTS} (got {layout!r})")
        _check_sizes("discriminator", num_features, hidden, layers, dropout)
        self.num_features = num_features
        self.hidden = hidden
        self.layers = layers
        self.dropout = dropout
        self.layout = layout
        between = dropout if layers > 1 else 0.0
        if layout == "separate":
            self.forward_stack = nn.LSTM(num_features, hidden, layers, batch_first=True, dropout=between)
            self.backward_stack = nn.LSTM(num_features, hidden, layers, batch_first=True, dropout=between)
        else:
            self.lstm = nn.LSTM(num_features, hidden, layers, batch_first=True, dropout=between, bidirectional=True)
        # Off (0): no parameter is created, so checkpoints of D without it load unchanged.
        self.minibatch = (
            MinibatchFeatures(2 * hidden, minibatch_features, minibatch_kernel_dim) if minibatch_features > 0 else None
        )
        self.classifier = nn.Linear(2 * hidden + minibatch_features, 1)

    def forward(
        self, x: torch.Tensor, lengths: torch.Tensor | None = None, groups: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """x (B, T, F), lengths (B,) valid steps per row or None (all valid), groups (B,)
        integer labels: the minibatch features compare a row only with rows of its own label
        (None: one group; C-RNN-GAN's shared forward passes real 0 / fake 1).
        Returns per-step logits (B, T) (no sigmoid) and the last hidden layer (B, T, 2H),
        without the minibatch features (feature matching compares the LSTM's features);
        both are zero at padded steps, which never influence valid steps."""
        batch_size, seq_len, _ = x.shape
        x = F.dropout(x, self.dropout, self.training)
        if self.layout == "separate" and self._fast_path(x):
            if lengths is None:
                reversed_x = x.flip(1)
            else:
                order = _reverse_within_length(lengths, seq_len)  # (B, T)
                reversed_x = x.gather(1, order.unsqueeze(-1).expand_as(x))
            forward_out, backward_out = run_lstm_stacks(
                [self.forward_stack, self.backward_stack], [x.transpose(0, 1), reversed_x.transpose(0, 1)]
            )  # (T, B, H) each
            forward_out, backward_out = forward_out.transpose(0, 1), backward_out.transpose(0, 1)
            if lengths is None:
                backward_out = backward_out.flip(1)
            else:
                backward_out = backward_out.gather(1, order.unsqueeze(-1).expand_as(backward_out))
            features = torch.cat([forward_out, backward_out], dim=2)
        elif self.layout == "separate":
            forward_out, _ = self.forward_stack(x)
            if lengths is None:
                backward_out, _ = self.backward_stack(x.flip(1))
                backward_out = backward_out.flip(1)
            else:
                order = _reverse_within_length(lengths, seq_len)  # (B, T)
                reversed_x = x.gather(1, order.unsqueeze(-1).expand_as(x))
                backward_out, _ = self.backward_stack(reversed_x)
                backward_out = backward_out.gather(1, order.unsqueeze(-1).expand_as(backward_out))
            features = torch.cat([forward_out, backward_out], dim=2)
        elif lengths is None:
            features, _ = self.lstm(x)
        else:
            packed = nn.utils.rnn.pack_padded_sequence(x, lengths.cpu(), batch_first=True, enforce_sorted=False)
            packed_out, _ = self.lstm(packed)
            features, _ = nn.utils.rnn.pad_packed_sequence(packed_out, batch_first=True, total_length=seq_len)
        logits = self.classifier(self._with_minibatch_features(features, lengths, groups)).squeeze(-1)
        if lengths is not None:
            valid = valid_steps(lengths, seq_len)
            logits = logits * valid
            features = features * valid.unsqueeze(-1)
        return logits, features

    def _with_minibatch_features(
        self, features: torch.Tensor, lengths: torch.Tensor | None, groups: torch.Tensor | None
    ) -> torch.Tensor:
        """(B, T, 2H) -> (B, T, 2H + K): each row's minibatch features, the same at every step."""
        if self.minibatch is None:
            return features
        if lengths is None:
            pooled = features.mean(dim=1)
        else:  # the mean over each row's valid steps (padded steps carry features here)
            valid = valid_steps(lengths, features.shape[1]).unsqueeze(-1)
            steps = lengths.to(features.device, features.dtype).clamp(min=1).unsqueeze(1)
            pooled = (features * valid).sum(dim=1) / steps
        closeness = self.minibatch(pooled, groups)  # (B, K)
        return torch.cat([features, closeness.unsqueeze(1).expand(-1, features.shape[1], -1)], dim=2)

    def _fast_path(self, x: torch.Tensor) -> bool:
        """The hand-written LSTM stack: CPU, float32/64, no autocast, not switched off."""
        return (
            self.fast_lstm
            and x.device.type == "cpu"
            and x.dtype in (torch.float32, torch.float64)
            and not torch.is_autocast_enabled("cpu")
        )


def _reverse_within_length(lengths: torch.Tensor, seq_len: int) -> torch.Tensor:
    """(B, T) gather index: t -> len-1-t on valid steps, t -> t on padding. Its own inverse."""
    steps = torch.arange(seq_len, device=lengths.device).unsqueeze(0)
    lengths = lengths.to(steps.device).unsqueeze(1)
    return torch.where(steps < lengths, lengths - 1 - steps, steps)


def build_crnngan(
    num_features: int,
    g_hidden: int = 350,
    g_layers: int = 2,
    g_dropout: float = 0.5,
    d_hidden: int = 350,
    d_layers: int = 2,
    d_dropout: float = 0.5,
    d_layout: str = "separate",
) -> tuple[CRNNGenerator, CRNNDiscriminator]:
    """Generator and discriminator of one C-RNN-GAN (paper sizes by default)."""
    generator = CRNNGenerator(num_features, g_hidden, g_layers, g_dropout)
    discriminator = CRNNDiscriminator(num_features, d_hidden, d_layers, d_dropout, d_layout)
    return generator, discriminator
