"""Discrete-note models of Nguyen, Hoff, Malcolm, Lee & Khan 2018, "Generating
Pokemon-Inspired Music from Neural Networks" (Keras code: github.com/corynguyen19/midi-lstm-gan):
a softmax LSTM over a note/chord vocabulary and an MLP-GAN on note values scaled to [-1, 1].
Architecture only.

Shapes: B batch, T steps (tokens), V vocabulary size (ids 0 = padding, 1 = unknown, then
notes/chords; see data/representations.py TokenRepresentation), E embedding size, H LSTM
units, Z latent size.

NoteLSTM (Nguyen et al.: LSTM(512) -> Dropout(0.3) -> BiLSTM(512) -> Dropout(0.3) -> BiLSTM(512)
-> Dense(256) -> Dropout(0.3) -> Dense(V) -> softmax, reading a 100-note window and
predicting the next note). Here every LSTM layer is bidirectional or none is
(`bidirectional`), and tokens enter through an embedding rather than as one scalar
id / V per step (a scalar makes neighbouring ids look alike, which they are not). Id 0
doubles as the start symbol: inputs are [0, x_0, ..., x_{T-2}].
  * unidirectional: causal next-token logits at every step (`causal_logits`);
  * bidirectional: Nguyen et al.'s window -> next token (`next_logits`): a bidirectional layer
    sees the whole window, so only the token after the window may be predicted.

MLP-GAN (Nguyen et al.'s Keras GAN): generator Dense(256) -> LeakyReLU(0.2) -> BatchNorm(0.8)
-> Dense(512) -> ... -> Dense(1024) -> ... -> Dense(T) tanh from z ~ N(0, I_1000); the
discriminator LSTM(512) -> LSTM(512) -> Dense(512) -> LeakyReLU -> Dense(256) -> LeakyReLU
-> Dense(1) reading the (B, T, 1) sequence of scaled values. Logits here; the sigmoid lives
in the loss (BCE with logits).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence

START = 0  # the padding id, used as the start-of-window symbol
SPECIAL = 2  # ids below this (padding, unknown) are never generated


class NoteLSTM(nn.Module):
    start_id = START  # the input before the first token (read by the MLE step)

    def __init__(
        self,
        vocab_size: int,
        embedding_dim: int = 64,
        hidden: int = 512,
        layers: int = 3,
        dropout: float = 0.3,
        bidirectional: bool = False,
        head_hidden: int = 256,
    ) -> None:
        super().__init__()
        self.vocab_size, self.bidirectional = vocab_size, bidirectional
        self.embedding = nn.Embedding(vocab_size, embedding_dim)
        self.lstm = nn.LSTM(
            embedding_dim,
            hidden,
            num_layers=layers,
            batch_first=True,
            dropout=dropout if layers > 1 else 0.0,
            bidirectional=bidirectional,
        )
        width = hidden * (2 if bidirectional else 1)
        self.dropout = nn.Dropout(dropout)
        # Dense(256) then Dense(V) with no activation between them, as in Nguyen et al.'s code.
        self.head = nn.Sequential(
            nn.Linear(width, head_hidden), nn.Dropout(dropout), nn.Linear(head_hidden, vocab_size)
        )

    def causal_logits(self, inputs: torch.Tensor) -> torch.Tensor:
        """inputs (B, T) ids -> (B, T, V) logits of the next token at every step (unidirectional)."""
        if self.bidirectional:
            raise RuntimeError("causal_logits would see the future with a bidirectional LSTM: use next_logits")
        out, _ = self.lstm(self.embedding(inputs))
        return self.head(self.dropout(out))

    def next_logits(self, inputs: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """inputs (B, T) ids, lengths (B,) >= 1 -> (B, V) logits of the token after each window."""
        packed = pack_padded_sequence(
            self.embedding(inputs), lengths.cpu().clamp_min(1), batch_first=True, enforce_sorted=False
        )
        _, (h_n, _) = self.lstm(packed)  # (layers * dirs, B, H): final states, padding skipped
        top = torch.cat([h_n[-2], h_n[-1]], dim=-1) if self.bidirectional else h_n[-1]
        return self.head(self.dropout(top))

    def forward(self, inputs: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        return self.causal_logits(inputs) if lengths is None else self.next_logits(inputs, lengths)

    @torch.no_grad()
    def generate(
        self, num: int, length: int, *, window: int = 100, temperature: float = 1.0, greedy: bool = False
    ) -> torch.Tensor:
        """(num, length) ids >= 2, sampled one at a time from the start symbol.

        Unidirectional: the LSTM state carries the whole history. Bidirectional: the window
        [start, last window-1 tokens] is re-read for every token (as Nguyen et al. slide their
        100-note window). greedy=True takes the argmax (as they do), else samples at `temperature`.
        """
        device = self.embedding.weight.device
        history = torch.full((num, 1), START, dtype=torch.long, device=device)
        out = []
        state = None
        for _ in range(length):
            if self.bidirectional:
                context = (
                    torch.cat([history[:, :1], history[:, 1:][:, -(window - 1) :]], dim=1)
                    if window > 1
                    else history[:, :1]
                )
                lengths = torch.full((num,), context.shape[1], dtype=torch.long)
                logits = self.next_logits(context, lengths)
            else:
                step, state = self.lstm(self.embedding(history[:, -1:]), state)
                logits = self.head(step[:, 0])
            logits = logits.float()
            logits[:, :SPECIAL] = float("-inf")
            if greedy:
                token = logits.argmax(-1)
            else:
                token = torch.multinomial(F.softmax(logits / max(temperature, 1e-6), dim=-1), 1)[:, 0]
            out.append(token)
            history = torch.cat([history, token[:, None]], dim=1)
        return torch.stack(out, dim=1) if out else torch.zeros(num, 0, dtype=torch.long, device=device)


# ---------------------------------------------------------------------------------------------
def ids_to_unit(ids: torch.Tensor, vocab_size: int) -> torch.Tensor:
    """Token ids -> [-1, 1] as Nguyen et al. scale them: (id - V/2) / (V/2)."""
    half = vocab_size / 2.0
    return (ids.float() - half) / half


def unit_to_ids(values: torch.Tensor, vocab_size: int) -> torch.Tensor:
    """The inverse, rounded and clamped to real note/chord ids [2, V-1] (their code truncates)."""
    half = vocab_size / 2.0
    ids = torch.round(values.float().clamp(-1.0, 1.0) * half + half).long()
    return ids.clamp(min(SPECIAL, vocab_size - 1), vocab_size - 1)


class MLPNoteGenerator(nn.Module):
    """z ~ N(0, I) (B, Z) -> (B, T) values in [-1, 1]; widths (256, 512, 1024) in Nguyen et al."""

    def __init__(self, seq_len: int = 100, latent_dim: int = 1000, widths: tuple[int, ...] = (256, 512, 1024)) -> None:
        super().__init__()
        self.seq_len, self.latent_dim = seq_len, latent_dim
        layers: list[nn.Module] = []
        previous = latent_dim
        for width in widths:
            # Keras BatchNormalization(momentum=0.8) keeps 0.8 of the old running mean:
            # torch's momentum is the weight of the new batch, 0.2; Keras' epsilon is 1e-3.
            layers += [nn.Linear(previous, width), nn.LeakyReLU(0.2), nn.BatchNorm1d(width, momentum=0.2, eps=1e-3)]
            previous = width
        layers += [nn.Linear(previous, seq_len), nn.Tanh()]
        self.net = nn.Sequential(*layers)

    def forward(self, batch_size: int, noise: torch.Tensor | None = None) -> torch.Tensor:
        if noise is None:
            noise = torch.randn(batch_size, self.latent_dim, device=self.net[0].weight.device)
        return self.net(noise)


class LSTMNoteDiscriminator(nn.Module):
    """(B, T, 1) scaled values (+ lengths) -> (B,) logits, from the top LSTM's last valid state."""

    def __init__(self, hidden: int = 512, layers: int = 2, dense: tuple[int, ...] = (512, 256)) -> None:
        super().__init__()
        self.lstm = nn.LSTM(1, hidden, num_layers=layers, batch_first=True)
        blocks: list[nn.Module] = []
        previous = hidden
        for width in dense:
            blocks += [nn.Linear(previous, width), nn.LeakyReLU(0.2)]
            previous = width
        blocks.append(nn.Linear(previous, 1))
        self.head = nn.Sequential(*blocks)

    def forward(self, values: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        out, _ = self.lstm(values)  # (B, T, H); causal, so padding after a row's end is never read
        if lengths is None:
            last = out[:, -1]
        else:
            index = (lengths.to(out.device).clamp(1, out.shape[1]) - 1).long()
            last = out[torch.arange(out.shape[0], device=out.device), index]
        return self.head(last)[:, 0]
