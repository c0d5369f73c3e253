"""JazzGAN networks: the torch-ops LSTM equals nn.LSTM (outputs and a gradient penalty's
double backward), shapes of generator and critic, one-hot and relaxed token rows."""

from __future__ import annotations

import torch
from torch import nn

from musicgan import losses
from musicgan.models.jazzgan import JazzCritic, JazzGenerator, TorchOpsLSTM, one_hot_tokens

VOCAB = (51, 49)  # duration encoding: pitch field, rhythm field
CHORD = 24


def twin_lstms(seed: int = 0):
    torch.manual_seed(seed)
    ours = TorchOpsLSTM(7, 5, layers=2, bidirectional=True).double()
    reference = nn.LSTM(7, 5, 2, batch_first=True, bidirectional=True).double()
    reference.load_state_dict(ours.state_dict())  # same parameter names and shapes
    return ours, reference


def test_torch_ops_lstm_equals_nn_lstm():
    ours, reference = twin_lstms()
    x = torch.randn(3, 6, 7, dtype=torch.float64)
    torch.testing.assert_close(ours(x), reference(x)[0], rtol=1e-12, atol=1e-12)


def test_gradient_penalty_double_backward_equals_nn_lstm_on_cpu():
    """nn.LSTM double-backwards on CPU (not under cuDNN): it is the reference."""
    ours, reference = twin_lstms(1)
    x_hat = torch.randn(4, 5, 7, dtype=torch.float64, requires_grad=True)
    grads = []
    for lstm in (ours, reference):
        scores = (lambda out: out[0] if isinstance(out, tuple) else out)(lstm(x_hat)).sum(dim=(1, 2))
        penalty = losses.gradient_penalty(scores, x_hat, 10.0)
        grads.append(torch.autograd.grad(penalty, list(lstm.parameters())))
    assert any(g.abs().sum() > 0 for g in grads[0])
    for a, b in zip(*grads):
        torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-12)


def test_generator_and_critic_shapes_and_penalty_through_the_critic():
    torch.manual_seed(0)
    generator = JazzGenerator(VOCAB, CHORD, latent_dim=8, hidden=16)
    critic = JazzCritic(sum(VOCAB) + CHORD, hidden=12)
    chords = torch.rand(3, 10, CHORD)
    logits = generator(chords)
    assert logits.shape == (3, 10, sum(VOCAB))
    soft = generator.distributions(logits)
    torch.testing.assert_close(soft.split(VOCAB, dim=2)[0].sum(dim=2), torch.ones(3, 10))
    gumbel = generator.distributions(logits, gumbel_tau=0.5)
    assert gumbel.shape == soft.shape and not torch.allclose(gumbel, soft)
    tokens = generator.tokens(logits)
    assert tokens.shape == (3, 10, 2) and int(tokens[..., 0].max()) < VOCAB[0]
    real = torch.cat([one_hot_tokens(tokens, VOCAB), chords], dim=2)
    assert torch.equal(real[..., :sum(VOCAB)].sum(dim=2), torch.full((3, 10), 2.0))
    fake = torch.cat([soft.detach(), chords], dim=2)
    x_hat = losses.interpolate(real, fake)
    scores = critic(torch.cat([real, fake, x_hat]))
    assert scores.shape == (9,)
    penalty = losses.gradient_penalty(scores[6:], x_hat, 10.0)
    penalty.backward()
    # the penalty reaches every LSTM weight and the head (a bias cannot change dD/dx̂)
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in critic.lstm.parameters())
    assert critic.head_weight.grad.abs().sum() > 0
    assert critic.lstm.weight_hh_l0.grad.abs().sum() > 0
