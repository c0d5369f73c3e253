"""SeqGAN (Yu, Zhang, Wang & Yu 2017, "SeqGAN: Sequence Generative Adversarial Nets with
Policy Gradient") and Polyphonic SeqGAN (Lee, Hwang, Min & Yoon 2017, "Polyphonic Music
Generation with Sequence Generative Adversarial Networks"): architectures only.

Shapes: B batch, T sequence length, V vocabulary, K rollouts per prefix, E embedding, H hidden.

SeqGenerator: LSTM policy over tokens 0..V-1 with its own start token (id V, an extra
embedding row never emitted), every weight drawn from N(0, 0.1) as in the reference.
`rollout` completes every prefix y_<t (t = 1..T-1) of B sequences K times in ONE call: the
prefix states come from one teacher-forced pass, then all B*K*(T-1) completions advance
together, the rows ordered by prefix length so that the rows still running at completion
step s are a prefix of the batch (a slice, no wasted steps): sum_t (T - t) steps per
(b, k), the O(K T^2) of the paper, with no Python loop over rollouts. Sampling is by
inverse CDF on given uniforms, so a batched rollout and per-prefix rollouts fed the same
uniforms draw the same tokens (tests/test_seqgan.py).

CNNDiscriminator: embedding -> parallel 1-D convolutions over time (one per width, widths
longer than T dropped) -> ReLU -> max over time -> highway layer (Srivastava et al. 2015) ->
dropout -> a 2-way logit (P(real) = softmax[:, 1]) or, least-squares, one linear score.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from musicgan.losses import l2_penalty

# (width, filters) of the SeqGAN reference's discriminator and of Polyphonic SeqGAN's.
SEQGAN_FILTERS = (
    (1, 100),
    (2, 200),
    (3, 200),
    (4, 200),
    (5, 200),
    (6, 100),
    (7, 100),
    (8, 100),
    (9, 100),
    (10, 100),
    (15, 160),
    (20, 160),
)
POLYPHONIC_FILTERS = ((5, 400), (10, 400), (15, 400), (20, 400))
TINY_FILTERS = ((1, 4), (2, 4), (3, 4), (4, 4))  # tests and smoke runs
FILTER_TABLES = {"seqgan": SEQGAN_FILTERS, "polyphonic": POLYPHONIC_FILTERS, "tiny": TINY_FILTERS}


def sample_inverse_cdf(logits: torch.Tensor, uniform: torch.Tensor) -> torch.Tensor:
    """(N, V) logits, (N,) uniforms in [0, 1) -> (N,) ids: the first id whose cumulative
    probability exceeds the uniform (a pure function of its inputs, unlike multinomial)."""
    cdf = F.softmax(logits.float(), dim=-1).cumsum(-1)
    ids = torch.searchsorted(cdf, uniform.float()[:, None].contiguous())[:, 0]
    return ids.clamp_max(logits.shape[-1] - 1)


class SeqGenerator(nn.Module):
    bidirectional = False  # the note-LSTM MLE step (families/notes.lm_step) reads these two

    def __init__(
        self, vocab_size: int, embedding_dim: int = 32, hidden: int = 32, first_id: int = 0, init_std: float = 0.1
    ) -> None:
        """`first_id`: ids below it (a vocabulary's padding / unknown) are never sampled."""
        super().__init__()
        self.vocab_size, self.first_id = vocab_size, first_id
        self.start_id = vocab_size
        self.embedding = nn.Embedding(vocab_size + 1, embedding_dim)
        self.lstm = nn.LSTM(embedding_dim, hidden, batch_first=True)
        self.head = nn.Linear(hidden, vocab_size)
        with torch.no_grad():
            for parameter in self.parameters():
                parameter.normal_(0.0, init_std)

    def _inputs(self, ids: torch.Tensor) -> torch.Tensor:
        """(B, T) ids -> (B, T) inputs [start, y_0 .. y_{T-2}]."""
        return torch.cat([torch.full_like(ids[:, :1], self.start_id), ids[:, :-1]], dim=1)

    def causal_logits(self, inputs: torch.Tensor) -> torch.Tensor:
        """(B, T) inputs (start first) -> (B, T, V) logits of the next token at every step."""
        out, _ = self.lstm(self.embedding(inputs))
        return self.head(out)

    def _policy(self, hidden: torch.Tensor) -> torch.Tensor:
        """Logits of the sampling policy: ids below `first_id` get probability 0."""
        logits = self.head(hidden)
        if self.first_id:
            logits = logits.clone()
            logits[..., : self.first_id] = float("-inf")
        return logits

    def log_probs(self, ids: torch.Tensor) -> torch.Tensor:
        """(B, T) sampled ids -> (B, T) log p(y_t | y_<t) under the sampling policy."""
        out, _ = self.lstm(self.embedding(self._inputs(ids)))
        return F.log_softmax(self._policy(out), dim=-1).gather(-1, ids[..., None])[..., 0]

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        return self.log_probs(ids)

    def _step(self, tokens: torch.Tensor, state):
        out, state = self.lstm(self.embedding(tokens[:, None]), state)
        return out[:, 0], state

    @torch.no_grad()
    def sample(self, num: int, length: int, uniform: torch.Tensor | None = None) -> torch.Tensor:
        """(num, length) ids from the start token; `uniform` (num, length) or fresh draws."""
        device = self.head.weight.device
        if uniform is None:
            uniform = torch.rand(num, length, device=device)
        tokens = torch.full((num,), self.start_id, dtype=torch.long, device=device)
        state, out = None, []
        for position in range(length):
            hidden, state = self._step(tokens, state)
            tokens = sample_inverse_cdf(self._policy(hidden), uniform[:, position])
            out.append(tokens)
        return torch.stack(out, dim=1) if out else torch.zeros(num, 0, dtype=torch.long, device=device)

    @torch.no_grad()
    def prefix_states(self, ids: torch.Tensor):
        """(B, T) ids -> (h, c), each (T-1, B, H): the state after reading start + y_0..y_{t-1}
        for t = 1..T-1 (ready to emit y_t)."""
        inputs = self._inputs(ids)
        hs, cs, state = [], [], None
        for position in range(ids.shape[1]):  # input 0 is the start token: prefix t is read at input t
            _, state = self._step(inputs[:, position], state)
            if position >= 1:
                hs.append(state[0][0])
                cs.append(state[1][0])
        return torch.stack(hs), torch.stack(cs)

    @torch.no_grad()
    def rollout(self, ids: torch.Tensor, num_rollouts: int, uniform: torch.Tensor | None = None) -> torch.Tensor:
        """(B, T) ids -> (T-1, K, B, T): for every prefix length t = 1..T-1, K completions
        that keep y_<t and sample positions t..T-1. `uniform` (T-1, K, B, T) or fresh draws."""
        batch, length = ids.shape
        shape = (length - 1, num_rollouts, batch)
        if length < 2:
            return ids.new_zeros(0, num_rollouts, batch, length)
        if uniform is None:
            uniform = torch.rand(*shape, length, device=ids.device)
        h, c = self.prefix_states(ids)  # (T-1, B, H)
        rows = (length - 1) * num_rollouts * batch  # ordered (t, k, b): prefix length ascending
        state = tuple(s[:, None].expand(-1, num_rollouts, -1, -1).reshape(1, rows, -1) for s in (h, c))
        prefix = torch.arange(1, length, device=ids.device)[:, None].expand(-1, num_rollouts * batch).reshape(-1)
        out = ids[None, None].expand(*shape, length).reshape(rows, length).clone()
        noise = uniform.reshape(rows, length)
        hidden = state[0][0]
        for step in range(length - 1):
            active = (length - 1 - step) * num_rollouts * batch  # rows with t < T - step
            position = prefix[:active] + step
            row = torch.arange(active, device=ids.device)
            tokens = sample_inverse_cdf(self._policy(hidden[:active]), noise[row, position])
            out[row, position] = tokens
            if step < length - 2:
                next_active = active - num_rollouts * batch
                state = (state[0][:, :next_active].contiguous(), state[1][:, :next_active].contiguous())
                hidden, state = self._step(tokens[:next_active], state)
        return out.view(*shape, length)


class Highway(nn.Module):
    """y = g * relu(W_h x) + (1 - g) * x with gate g = sigmoid(W_g x) (one layer, gate bias 0 as the reference)."""

    def __init__(self, width: int) -> None:
        super().__init__()
        self.transform, self.gate = nn.Linear(width, width), nn.Linear(width, width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        gate = torch.sigmoid(self.gate(x))
        return gate * F.relu(self.transform(x)) + (1.0 - gate) * x


class CNNDiscriminator(nn.Module):
    def __init__(
        self,
        vocab_size: int,
        seq_len: int,
        embedding_dim: int = 64,
        filters=SEQGAN_FILTERS,
        dropout: float = 0.25,
        least_squares: bool = False,
    ) -> None:
        super().__init__()
        kept = [(width, count) for width, count in filters if width <= seq_len]
        if not kept:
            raise ValueError(f"every convolution width of {[w for w, _ in filters]} exceeds the length {seq_len}")
        self.least_squares = least_squares
        self.embedding = nn.Embedding(vocab_size, embedding_dim)
        self.convs = nn.ModuleList(nn.Conv1d(embedding_dim, count, width) for width, count in kept)
        width = sum(count for _, count in kept)
        self.highway = Highway(width)
        self.dropout = nn.Dropout(dropout)
        self.out = nn.Linear(width, 1 if least_squares else 2)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        """(B, T) ids -> (B, 2) logits (fake, real), or (B,) scores when least-squares."""
        x = self.embedding(ids).transpose(1, 2)  # (B, E, T)
        features = torch.cat([F.relu(conv(x)).amax(dim=2) for conv in self.convs], dim=1)
        logits = self.out(self.dropout(self.highway(features)))
        return logits[:, 0] if self.least_squares else logits

    def real_probability(self, ids: torch.Tensor) -> torch.Tensor:
        """(B, T) -> (B,) P(real): softmax's real class, or sigmoid(score) when least-squares."""
        scores = self(ids)
        return torch.sigmoid(scores) if self.least_squares else F.softmax(scores, dim=-1)[:, 1]

    def output_l2(self) -> torch.Tensor:
        """sum(w^2) / 2 over the output layer (weights and bias), TensorFlow's l2_loss."""
        return l2_penalty(self.out.parameters(), 1.0)
