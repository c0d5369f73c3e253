"""The spectral-LSTM networks: shapes, causality, gradients, dropout semantics, nn.LSTM parity."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from musicgan.errors import ConfigError
from musicgan.models.spectral import SPECTRAL_ARCHS, DropoutLSTM, build_spectral_net, conv_features

BATCH, STEPS, HIDDEN = 3, 7, 8
FEATURES = {"full": 2 * 16, "rfft": 16 + 2}  # fft_blocks with N = 16


@pytest.fixture(autouse=True)
def _one_thread(one_torch_thread):
    torch.manual_seed(0)


@pytest.mark.parametrize("arch", SPECTRAL_ARCHS)
@pytest.mark.parametrize("layout", sorted(FEATURES))
def test_every_architecture_predicts_one_frame_per_step_and_trains_all_its_weights(arch, layout):
    features = FEATURES[layout]
    net = build_spectral_net(arch, features, HIDDEN, conv_project=HIDDEN if arch == "conv" else None)
    x = torch.randn(BATCH, STEPS, features)
    out = net(x)
    assert out.shape == (BATCH, STEPS, features)
    nn.functional.mse_loss(out[:, :-1], x[:, 1:]).backward()  # teacher-forced next-frame loss
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in net.parameters())
    assert net.dense_parameters() and all(p.dim() > 1 for p in net.dense_parameters())


@pytest.mark.parametrize("arch", SPECTRAL_ARCHS)
def test_prediction_at_step_t_sees_only_frames_up_to_t(arch):
    net = build_spectral_net(arch, FEATURES["full"], HIDDEN).eval()
    x = torch.randn(BATCH, STEPS, FEATURES["full"])
    later = x.clone()
    later[:, 4:] += torch.randn_like(later[:, 4:])
    with torch.no_grad():
        a, b = net(x), net(later)
    assert torch.equal(a[:, :4], b[:, :4]) and not torch.allclose(a[:, 4:], b[:, 4:])


def test_dropout_lstm_without_dropout_is_nn_lstm():
    cell = DropoutLSTM(5, 6, input_dropout=0.0, recurrent_dropout=0.0)
    reference = nn.LSTM(5, 6, batch_first=True)
    with torch.no_grad():
        reference.weight_ih_l0.copy_(cell.weight_ih)
        reference.weight_hh_l0.copy_(cell.weight_hh)
        reference.bias_ih_l0.copy_(cell.bias)
        reference.bias_hh_l0.zero_()
    x = torch.randn(BATCH, STEPS, 5)
    torch.testing.assert_close(cell(x), reference(x)[0], rtol=1e-5, atol=1e-6)


def test_lstm_dropout_masks_are_drawn_per_sequence_and_off_in_eval():
    cell = DropoutLSTM(4, 4, input_dropout=0.5, recurrent_dropout=0.0)
    x = torch.randn(2, 5, 4)
    torch.manual_seed(1)
    mask = cell._mask(2, 4, 0.5, x)
    assert set(mask.unique().tolist()) <= {0.0, 2.0}  # inverted dropout: kept units scaled by 1/(1-p)
    torch.manual_seed(1)
    train_out = cell.train()(x)
    # One mask for all steps: the training output is the eval output on x with that one mask
    # applied to every step (a fresh mask per step would give something else).
    torch.testing.assert_close(train_out, cell.eval()(x * mask[:, None, :]))
    assert not torch.equal(train_out, cell.eval()(x))
    assert torch.equal(cell.eval()(x), cell.eval()(x))


def test_conv_front_end_size_matches_the_paper_configuration():
    assert conv_features(8000) == 12 * 3999  # D = 2N = 8,000: 12 x 3,999 inputs to the LSTM


def test_bad_architecture_or_sizes_are_config_errors():
    with pytest.raises(ConfigError, match="unknown spectral architecture 'gru'"):
        build_spectral_net("gru", 32, 8)
    with pytest.raises(ConfigError, match="even size"):
        build_spectral_net("kblock", 33, 8)
