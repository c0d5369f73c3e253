"""Discrete-note models (Nguyen et al. 2018): the LSTM language model and the MLP-GAN, their
scaling of token ids, generation, and 2-rank gloo runs of each preset through the real trainer."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from dist_helpers import sample_cli, torchrun_train

from musicgan.data.midi import read_midi
from musicgan.models.notes import (
    LSTMNoteDiscriminator,
    MLPNoteGenerator,
    NoteLSTM,
    ids_to_unit,
    unit_to_ids,
)

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def test_id_scaling_round_trips_real_tokens_and_never_emits_specials():
    vocab = 37
    ids = torch.arange(2, vocab)
    values = ids_to_unit(ids, vocab)
    assert values.min() >= -1 and values.max() <= 1
    assert torch.equal(unit_to_ids(values, vocab), ids)
    assert unit_to_ids(torch.tensor([-1.0, -5.0, 2.0, float("nan")]).nan_to_num(0.0), vocab).min() >= 2
    assert unit_to_ids(torch.tensor([1.0]), vocab).item() == vocab - 1


@pytest.mark.parametrize("bidirectional", [False, True])
def test_note_lstm_learns_a_repeating_sequence(bidirectional):
    """A cyclic 6-token pattern is learnt to high next-token accuracy in a few steps."""
    torch.manual_seed(0)
    vocab, seq = 10, 18
    pattern = torch.tensor([2, 5, 3, 7, 4, 9])
    model = NoteLSTM(
        vocab, embedding_dim=8, hidden=32, layers=1, dropout=0.0, bidirectional=bidirectional, head_hidden=16
    )
    optimizer = torch.optim.Adam(model.parameters(), lr=0.02)
    for _ in range(80):
        offsets = torch.randint(0, 6, (16,))
        ids = pattern[(offsets[:, None] + torch.arange(seq)[None, :]) % 6]  # (B, T)
        inputs = torch.cat([torch.zeros_like(ids[:, :1]), ids[:, :-1]], 1)
        if bidirectional:
            cut = torch.randint(1, seq, (16,))
            logits = model.next_logits(inputs, cut + 1)
            loss = F.cross_entropy(logits, ids.gather(1, cut[:, None])[:, 0])
        else:
            loss = F.cross_entropy(model.causal_logits(inputs).reshape(-1, vocab), ids.reshape(-1))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    model.eval()
    generated = model.generate(4, 18, window=12, greedy=True)
    assert generated.shape == (4, 18) and generated.min() >= 2 and generated.max() < vocab
    # After the first token, greedy generation continues the cycle.
    follows = {int(a): int(b) for a, b in zip(pattern, pattern.roll(-1))}
    correct = [follows[int(a)] == int(b) for row in generated for a, b in zip(row[:-1], row[1:]) if int(a) in follows]
    assert np.mean(correct) > 0.9


def test_causal_logits_refuse_bidirectional_and_sampling_shapes():
    model = NoteLSTM(12, embedding_dim=4, hidden=8, layers=2, dropout=0.1, bidirectional=True, head_hidden=4)
    with pytest.raises(RuntimeError):
        model.causal_logits(torch.zeros(2, 3, dtype=torch.long))
    model.eval()
    out = model.generate(3, 7, window=4)
    assert out.shape == (3, 7) and out.min() >= 2


def test_mlp_generator_and_lstm_discriminator_shapes():
    torch.manual_seed(1)
    generator = MLPNoteGenerator(seq_len=20, latent_dim=16, widths=(8, 16, 32))
    fake = generator(5)
    assert fake.shape == (5, 20) and fake.abs().max() <= 1
    discriminator = LSTMNoteDiscriminator(hidden=8, layers=2, dense=(8, 4))
    logits = discriminator(fake[..., None], torch.tensor([20, 3, 1, 20, 7]))
    assert logits.shape == (5,)
    # Only the first `length` steps matter: the LSTM is read at the last valid step.
    changed = fake.clone()
    changed[1, 3:] = 0.5
    assert torch.allclose(discriminator(changed[..., None], torch.tensor([20, 3, 1, 20, 7]))[1], logits[1])


@pytest.mark.slow
@pytest.mark.parametrize("preset", ["note-lstm-debug", "note-mlpgan-debug"])
def test_two_rank_gloo_training_and_sampling(preset, bach_shards, tmp_path):
    run_dir = tmp_path / "run"
    torchrun_train(preset, bach_shards, run_dir)
    state = torch.load(
        run_dir / "checkpoints" / (run_dir / "checkpoints" / "latest").read_text().strip(), weights_only=True
    )
    assert state["representation"]["name"] == "tokens" and len(state["representation"]["vocab"]) > 10
    assert (state["discriminator"] != {}) == (preset == "note-mlpgan-debug")
    songs = [read_midi(path) for path in sample_cli(run_dir, tmp_path / "samples")]
    assert all(len(song.notes) > 0 for song in songs)
    vocab_pitches = {int(p) for token in state["representation"]["vocab"][2:] for p in token.split(".")}
    assert {int(p) for song in songs for p in song.notes[:, 2]} <= vocab_pitches
