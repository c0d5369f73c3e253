"""RNN-RBM and LSTM-RBM: a recurrent network whose state sets the biases of a restricted
Boltzmann machine at every piano-roll frame. RNN-RBM: Boulanger-Lewandowski, Bengio & Vincent
2012, "Modeling Temporal Dependencies in High-Dimensional Sequences: Application to Polyphonic
Music Generation and Transcription", with its Theano reference code. LSTM-RBM and the "top1"
generation: a write-up that extends that code ("Music generation based on RNN-RBM", in
Chinese, author not named; "the LSTM-RBM write-up" below).

Shapes: B batch, T frames, V visible units (88 keys), H RBM hidden units (150 in the
LSTM-RBM write-up), U recurrent units (100 there), N frames flattened, M chains.

Per frame t (u_0 = 0; v_t is the binary 88-key frame):
    bv_t = bv + u_{t-1} Wuv               time-varying visible bias       (B, T, V)
    bh_t = bh + u_{t-1} Wuh               time-varying hidden bias        (B, T, H)
    u_t  = tanh(bu + v_t Wvu + u_{t-1} Wuu)   (RNN-RBM)  |  LSTM(v_t, u_{t-1}) (LSTM-RBM)
    P(v_t | v_<t) = sum_h exp(bv_t.v + bh_t.h + v W h) / Z_t

Free energy F_t(v) = -bv_t.v - sum_j softplus(bh_t + v W)_j, so log P(v_t | v_<t) =
-F_t(v_t) - log Z_t. Training is contrastive divergence: `cd_loss` is the surrogate
mean_t [F_t(v_t) - F_t(v~_t)] with v~_t the (detached) end of a k-step Gibbs chain started
at v_t; its gradient is the CD-k gradient, and it also trains the recurrent network
through bv_t and bh_t (as the Theano reference code, which holds v~ constant).

The partition function Z_t differs per frame; `ais_log_partition` estimates it by annealed
importance sampling, `exact_log_partition` enumerates the smaller layer (tiny RBMs, tests).
Architecture and RBM math only: no optimizers, no distributed code.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from musicgan.errors import ConfigError
from musicgan.losses import valid_steps

CELLS = ("rnn", "lstm")


# ---------------------------------------------------------------------------------------------
# RBM math on batches of RBMs that share W and differ in their biases.
def free_energy(v: torch.Tensor, weight: torch.Tensor, bv: torch.Tensor, bh: torch.Tensor) -> torch.Tensor:
    """F(v) = -bv.v - sum_j softplus(bh + v W)_j.  v, bv (..., V); bh (..., H) -> (...)."""
    return -(v * bv).sum(-1) - F.softplus(v @ weight + bh).sum(-1)


def gibbs_chain(
    v: torch.Tensor, weight: torch.Tensor, bv: torch.Tensor, bh: torch.Tensor, steps: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """`steps` block-Gibbs sweeps v -> h -> v from `v`; returns (v sample, its mean P(v=1|h)).

    Shapes as `free_energy`; draws from torch's global RNG (the loop reseeds it per step).
    """
    mean_v = v
    for _ in range(steps):
        h = bernoulli(torch.sigmoid(v @ weight + bh))
        mean_v = torch.sigmoid(h @ weight.t() + bv)
        v = bernoulli(mean_v)
    return v, mean_v


def bernoulli(probs: torch.Tensor) -> torch.Tensor:
    """Binary samples with P(1) = probs: `rand < p` is about 3x faster than torch.bernoulli
    on CPU, and sampling is most of the cost of CD-k and of AIS."""
    return (torch.rand_like(probs) < probs).to(probs.dtype)


def exact_log_partition(weight: torch.Tensor, bv: torch.Tensor, bh: torch.Tensor) -> torch.Tensor:
    """log Z by enumerating the smaller layer (at most 22 units): bv (..., V), bh (..., H) -> (...).

    Summing the larger layer out analytically: log Z = logsumexp_h [bh.h + sum_i softplus(bv + W h)_i].
    """
    weight, bv, bh = weight.double(), bv.double(), bh.double()
    if weight.shape[1] > weight.shape[0]:  # enumerate visible instead: the formula is symmetric
        weight, bv, bh = weight.t(), bh, bv
    small = weight.shape[1]
    if small > 22:
        raise ValueError(f"exact partition function needs a layer of <= 22 units, got {small}")
    codes = torch.arange(2**small, device=weight.device)
    states = ((codes[:, None] >> torch.arange(small, device=weight.device)) & 1).double()  # (2^S, S)
    # terms (..., 2^S): bh.h + sum_i softplus(bv_i + (W h)_i)
    terms = bh @ states.t() + F.softplus(bv[..., None, :] + states @ weight.t()).sum(-1)
    return torch.logsumexp(terms, dim=-1)


def ais_betas(num_betas: int) -> torch.Tensor:
    """Inverse temperatures 0 = b_0 < ... < b_K = 1, denser near 1 where the distributions
    change fastest once W dominates (a quadratic warp of a uniform grid)."""
    grid = torch.linspace(0.0, 1.0, num_betas + 1, dtype=torch.float64)
    return 1.0 - (1.0 - grid) ** 2


@torch.no_grad()
def ais_log_partition(
    weight: torch.Tensor,
    bv: torch.Tensor,
    bh: torch.Tensor,
    *,
    num_chains: int = 32,
    num_betas: int = 500,
    max_rows: int = 8192,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Annealed importance sampling estimate of log Z for N RBMs sharing W: bv (N, V), bh (N, H).

    Estimator (Neal 2001; Salakhutdinov & Murray 2008), per RBM: intermediate distributions
    p_b(v, h) ~ exp(bv.v + bh.h + b v W h) for b in `ais_betas`. p_0 has W scaled to zero, so
    it is exact to sample (v ~ Bernoulli(sigmoid(bv))) and log Z_0 = sum softplus(bv) +
    sum softplus(bh): the base shares the frame's own biases, which keeps the annealing
    path short. With h summed out, p*_b(v) = exp(bv.v) prod_j (1 + exp(bh_j + b (vW)_j)), each
    chain's log weight is sum_k [log p*_{b_k}(v_k) - log p*_{b_{k-1}}(v_k)], and v_k follows
    one Gibbs sweep at b_k. Then log Z ~= log Z_0 + log mean_chains exp(log w).

    mean(w) is unbiased for Z / Z_0, so log Z is (by Jensen) biased low in expectation and a
    log-likelihood built on it slightly optimistic; the returned per-RBM standard error of
    the log estimate (delta method: std(w) / (sqrt(M) mean(w))) says how much. Cost:
    2 * N * M * num_betas products of size V x H plus as many Bernoulli draws.
    Returns (log Z (N,), stderr (N,)) in float64.
    """
    if num_chains < 1 or num_betas < 1:
        raise ValueError("ais_log_partition needs num_chains >= 1 and num_betas >= 1")
    betas = ais_betas(num_betas).tolist()
    # Chains of one RBM are consecutive rows of 2-D (rows, V) / (rows, H) tensors; chunks of
    # `max_rows` rows keep the per-temperature tensors small enough to stay in cache.
    rbms_per_chunk = max(1, max_rows // num_chains)
    log_z, stderr = [], []
    for start in range(0, bv.shape[0], rbms_per_chunk):
        cbv = bv[start : start + rbms_per_chunk].float()  # (n, V)
        cbh = bh[start : start + rbms_per_chunk].float()  # (n, H)
        n = cbv.shape[0]
        rbv = cbv.repeat_interleave(num_chains, dim=0)  # (n*M, V)
        rbh = cbh.repeat_interleave(num_chains, dim=0)  # (n*M, H)
        v = bernoulli(torch.sigmoid(rbv))
        log_w = torch.zeros(n * num_chains, dtype=torch.float64, device=bv.device)
        for k in range(1, len(betas)):
            x = v @ weight  # (n*M, H)
            current = rbh + betas[k] * x
            log_w += (F.softplus(current) - F.softplus(rbh + betas[k - 1] * x)).sum(-1).double()
            if k < len(betas) - 1:  # a Gibbs sweep that leaves p_{b_k} invariant
                h = bernoulli(torch.sigmoid(current))
                v = bernoulli(torch.sigmoid(rbv + betas[k] * (h @ weight.t())))
        log_w = log_w.view(n, num_chains)
        log_z0 = (F.softplus(cbv).sum(-1) + F.softplus(cbh).sum(-1)).double()  # (n,)
        log_mean_w = torch.logsumexp(log_w, dim=1) - math.log(num_chains)
        log_z.append(log_z0 + log_mean_w)
        # Relative spread of the weights, std(w) / mean(w), computed in log space.
        if num_chains > 1:
            w = torch.exp(log_w - log_w.max(dim=1, keepdim=True).values)
            rel = w.std(dim=1) / w.mean(dim=1)
        else:
            rel = torch.zeros_like(log_mean_w)
        stderr.append(rel / math.sqrt(num_chains))
    return torch.cat(log_z), torch.cat(stderr)


# ---------------------------------------------------------------------------------------------
class RecurrentRBM(nn.Module):
    """RNN-RBM (`cell="rnn"`) or LSTM-RBM (`cell="lstm"`) over binary frames (B, T, V).

    Parameters: weight W (V, H) of the RBM; visible/hidden biases bv (V,), bh (H,);
    the recurrent network (nn.RNN tanh or nn.LSTM, V -> U); to_visible Wuv (U -> V) and
    to_hidden Wuh (U -> H), linear without bias. Initialisation follows the Theano reference
    code in spirit: W ~ N(0, 0.01), biases 0, the recurrent-to-RBM maps small (N(0, 1e-4))
    so training starts as a plain RBM; the recurrent net keeps torch's default init.
    """

    def __init__(self, num_visible: int = 88, rbm_hidden: int = 150, rnn_hidden: int = 100, cell: str = "rnn") -> None:
        super().__init__()
        if cell not in CELLS:
            raise ConfigError(f"RBM recurrent cell must be one of {', '.join(CELLS)}, got {cell!r}")
        self.num_visible, self.rbm_hidden, self.rnn_hidden, self.cell = num_visible, rbm_hidden, rnn_hidden, cell
        self.weight = nn.Parameter(torch.randn(num_visible, rbm_hidden) * 0.01)
        self.bv = nn.Parameter(torch.zeros(num_visible))
        self.bh = nn.Parameter(torch.zeros(rbm_hidden))
        recurrent = nn.RNN if cell == "rnn" else nn.LSTM
        self.recurrent = recurrent(num_visible, rnn_hidden, batch_first=True)
        self.to_visible = nn.Linear(rnn_hidden, num_visible, bias=False)
        self.to_hidden = nn.Linear(rnn_hidden, rbm_hidden, bias=False)
        nn.init.normal_(self.to_visible.weight, std=1e-4)
        nn.init.normal_(self.to_hidden.weight, std=1e-4)

    # -- the conditional RBM of every frame --------------------------------------------------
    def conditional_biases(self, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(bv_t (B, T, V), bh_t (B, T, H)) from the state after frames < t (teacher forced)."""
        states, _ = self.recurrent(v)  # (B, T, U): u_1 .. u_T
        previous = torch.cat([states.new_zeros(states.shape[0], 1, states.shape[2]), states[:, :-1]], dim=1)
        return self.bv + self.to_visible(previous), self.bh + self.to_hidden(previous)

    def cd_loss(self, v: torch.Tensor, lengths: torch.Tensor | None, k: int) -> tuple[torch.Tensor, dict]:
        """CD-k surrogate averaged over valid frames, and detached monitoring stats.

        v (B, T, V) binary; lengths (B,) valid frames per row (None: all).
        stats: free_energy (mean F_t(v_t) of the data) and recon_xent (cross-entropy of the
        frame against P(v | h) after one sweep from the negative sample, as the Theano reference
        code monitors).
        """
        bv_t, bh_t = self.conditional_biases(v)
        with torch.no_grad():
            negative, _ = gibbs_chain(v, self.weight, bv_t, bh_t, k)
            _, recon = gibbs_chain(negative, self.weight, bv_t, bh_t, 1)
        mask = frame_mask(lengths, v.shape[0], v.shape[1], v.device)
        count = mask.sum().clamp_min(1.0)
        fe_data = free_energy(v, self.weight, bv_t, bh_t)  # (B, T)
        fe_negative = free_energy(negative, self.weight, bv_t, bh_t)
        loss = ((fe_data - fe_negative) * mask).sum() / count
        with torch.no_grad():
            recon = recon.clamp(1e-6, 1 - 1e-6)
            xent = -(v * recon.log() + (1 - v) * (1 - recon).log()).sum(-1)
            stats = {"free_energy": (fe_data * mask).sum() / count, "recon_xent": (xent * mask).sum() / count}
        return loss, stats

    def forward(self, v: torch.Tensor, lengths: torch.Tensor | None = None, k: int = 15):
        """Training forward (what DDP hooks): the CD-k surrogate loss and its stats."""
        return self.cd_loss(v, lengths, k)

    # -- sampling ------------------------------------------------------------------------------
    @torch.no_grad()
    def generate(self, num: int, length: int, k: int = 25, mode: str = "sample") -> torch.Tensor:
        """(num, length, V) binary frames. Each frame: a k-step Gibbs chain from v = 0 under the
        frame's conditional RBM (as the reference code), then fed back into the recurrent net.

        mode "sample": the chain's last sample. mode "top1": the LSTM-RBM write-up's variant that
        keeps only the most probable key of each frame (argmax of the chain's last P(v=1|h)); the
        recurrent net is still fed the sampled frame, as in the write-up, which post-processes.
        """
        if mode not in ("sample", "top1"):
            raise ConfigError(f"RBM generation mode must be 'sample' or 'top1', got {mode!r}")
        device = self.weight.device
        state = None
        u = torch.zeros(num, self.rnn_hidden, device=device)
        frames = []
        for _ in range(length):
            bv_t, bh_t = self.bv + self.to_visible(u), self.bh + self.to_hidden(u)
            v, mean_v = gibbs_chain(torch.zeros(num, self.num_visible, device=device), self.weight, bv_t, bh_t, k)
            if mode == "top1":
                frames.append(F.one_hot(mean_v.argmax(-1), self.num_visible).to(v.dtype))
            else:
                frames.append(v)
            out, state = self.recurrent(v[:, None, :], state)
            u = out[:, 0]
        return torch.stack(frames, dim=1)

    # -- evaluation ----------------------------------------------------------------------------
    @torch.no_grad()
    def frame_log_likelihood(
        self, v: torch.Tensor, *, num_chains: int = 32, num_betas: int = 500, exact: bool = False
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """log P(v_t | v_<t) per frame of ONE song v (T, V), with the AIS standard error of
        each frame's log Z (zeros when exact). exact=True enumerates (tiny RBMs only)."""
        bv_t, bh_t = self.conditional_biases(v[None].float())
        bv_t, bh_t = bv_t[0], bh_t[0]  # (T, V), (T, H)
        if exact:
            log_z, err = exact_log_partition(self.weight, bv_t, bh_t), torch.zeros(v.shape[0], dtype=torch.float64)
        else:
            log_z, err = ais_log_partition(self.weight, bv_t, bh_t, num_chains=num_chains, num_betas=num_betas)
        return -free_energy(v.float(), self.weight, bv_t, bh_t).double() - log_z, err

    @torch.no_grad()
    def predict_frames(self, v: torch.Tensor, *, k: int = 25, num_chains: int = 10) -> torch.Tensor:
        """Next-frame predictions (T, V) bool for ONE song v (T, V): frame t is predicted from
        v_<t as the keys whose probability, averaged over `num_chains` k-step Gibbs chains from
        zeros under the frame's conditional RBM (the generation procedure), exceeds 0.5."""
        bv_t, bh_t = self.conditional_biases(v[None].float())
        bv_t = bv_t[0][:, None, :].expand(-1, num_chains, -1)  # (T, C, V)
        bh_t = bh_t[0][:, None, :].expand(-1, num_chains, -1)
        _, mean_v = gibbs_chain(torch.zeros_like(bv_t), self.weight, bv_t, bh_t, k)
        return mean_v.mean(1) > 0.5


def frame_mask(lengths: torch.Tensor | None, batch: int, steps: int, device) -> torch.Tensor:
    """(B, T) float: 1 on the frames a row really has, 0 on zero padding."""
    if lengths is None:
        return torch.ones(batch, steps, device=device)
    return valid_steps(lengths.to(device), steps).float()
