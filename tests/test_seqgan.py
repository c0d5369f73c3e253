"""SeqGAN networks: shapes, the batched rollout against per-prefix rollouts, the
discriminator's width rule and its two heads."""

from __future__ import annotations

import pytest
import torch

from musicgan.models.seqgan import SEQGAN_FILTERS, CNNDiscriminator, SeqGenerator, sample_inverse_cdf

V, T, B, K = 7, 6, 3, 4


def generator(first_id: int = 0) -> SeqGenerator:
    torch.manual_seed(0)
    return SeqGenerator(V, embedding_dim=5, hidden=8, first_id=first_id, init_std=1.0)


def test_generator_shapes_and_log_probs_match_the_logits():
    g = generator()
    ids = g.sample(B, T)
    assert ids.shape == (B, T) and ids.dtype == torch.long and ((ids >= 0) & (ids < V)).all()
    logits = g.causal_logits(g._inputs(ids))
    assert logits.shape == (B, T, V)
    expected = torch.log_softmax(logits, -1).gather(-1, ids[..., None])[..., 0]
    assert torch.allclose(g.log_probs(ids), expected, atol=1e-6)
    assert g.embedding.num_embeddings == V + 1  # the start token has its own row


def test_sample_respects_first_id_and_its_uniforms():
    g = generator(first_id=2)
    uniform = torch.rand(50, T)
    ids = g.sample(50, T, uniform)
    assert (ids >= 2).all()
    assert torch.equal(ids, g.sample(50, T, uniform))  # a pure function of the uniforms
    assert not torch.equal(ids, g.sample(50, T, torch.rand(50, T)))


def test_inverse_cdf_picks_the_bucket_of_the_uniform():
    logits = torch.log(torch.tensor([[0.2, 0.3, 0.5]] * 4))
    ids = sample_inverse_cdf(logits, torch.tensor([0.1, 0.25, 0.6, 0.999]))
    assert ids.tolist() == [0, 1, 2, 2]


def _one_rollout(g: SeqGenerator, ids: torch.Tensor, t: int, uniform: torch.Tensor) -> torch.Tensor:
    """Complete ONE sequence from its prefix of length t, token by token (the reference way)."""
    seq = ids.clone()
    tokens, state = torch.tensor([g.start_id]), None
    for position in range(T):
        hidden, state = g._step(tokens, state)
        if position >= t:
            seq[position] = sample_inverse_cdf(g._policy(hidden), uniform[position : position + 1])[0]
        tokens = seq[position : position + 1]
    return seq


def test_batched_rollout_equals_per_prefix_rollouts_with_the_same_uniforms():
    g = generator(first_id=1)
    torch.manual_seed(1)
    ids = g.sample(B, T)
    uniform = torch.rand(T - 1, K, B, T)
    batched = g.rollout(ids, K, uniform)
    assert batched.shape == (T - 1, K, B, T)
    for t in range(1, T):
        for k in range(K):
            for b in range(B):
                expected = _one_rollout(g, ids[b], t, uniform[t - 1, k, b])
                assert torch.equal(batched[t - 1, k, b], expected), (t, k, b)
    assert torch.equal(batched[:, :, :, :1], ids[None, None, :, :1].expand(T - 1, K, B, 1))  # prefixes kept
    # The completions are random: different uniforms give different rollouts somewhere.
    assert not torch.equal(batched, g.rollout(ids, K, torch.rand(T - 1, K, B, T)))


def test_discriminator_drops_widths_above_the_length_and_has_two_heads():
    d = CNNDiscriminator(V, seq_len=T, embedding_dim=4)
    assert [conv.kernel_size[0] for conv in d.convs] == [1, 2, 3, 4, 5, 6]
    assert [conv.out_channels for conv in d.convs] == [count for width, count in SEQGAN_FILTERS if width <= T]
    ids = torch.randint(0, V, (B, T))
    assert d(ids).shape == (B, 2)
    p = d.real_probability(ids)
    assert p.shape == (B,) and ((p > 0) & (p < 1)).all()
    lsgan = CNNDiscriminator(V, seq_len=T, embedding_dim=4, least_squares=True)
    assert lsgan(ids).shape == (B,) and lsgan.out.out_features == 1
    assert d.output_l2().item() == pytest.approx(0.5 * (d.out.weight.square().sum() + d.out.bias.square().sum()).item())
    full = CNNDiscriminator(V, seq_len=20, embedding_dim=4)
    assert [conv.kernel_size[0] for conv in full.convs] == [w for w, _ in SEQGAN_FILTERS]
    with pytest.raises(ValueError, match="exceeds"):
        CNNDiscriminator(V, seq_len=3, filters=((5, 2),))
