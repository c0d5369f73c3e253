"""Spectral LSTMs on rendered audio (`fft_blocks` frames): next-block regression.

spectral-lstm: one of the six networks of musicgan/models/spectral.py
               (`model.spectral_arch`), trained teacher-forced: output t predicts frame
               t + 1 from frames 0..t; MSE over all valid steps and all dimensions. L2
               (`optim.l2` * sum(w^2) / 2) covers the dense and convolutional weights only,
               as in the seed's Keras models (LSTM weights carry no penalty). The LSTMs are
               `DropoutLSTM` (input and recurrent dropout, plain torch ops): the fast CPU
               stack has no recurrent dropout.
Generation:    seeded with T = curriculum.max_len - 1 real frames of a held-out song
               (the valid split, else the test split; the train split with a warning when
               neither has songs):
               predict the next frame, append it, slide the window to the last T frames,
               repeat. The seed frames are real audio and are not returned (the public
               baseline code returns predictions over the seed itself: near copies of
               training audio).

Config read: model.spectral_arch, g_hidden (H), spectral_dropout (dense layers),
spectral_lstm_dropout (input and recurrent), spectral_kblock (K), spectral_conv_project;
data.audio_rate, block_size, spectrum, overlap (the fft_blocks options); curriculum.max_len
(training window = T + 1 frames); optim.g_lr, optim.l2, optim.optimizer (rmsprop in the
presets, as the seed).
"""

from __future__ import annotations

import logging

import numpy as np
import torch

from musicgan import losses
from musicgan.errors import ConfigError, DataError
from musicgan.models.spectral import SPECTRAL_ARCHS, build_spectral_net
from musicgan.training.families import ModelFamily, register
from musicgan.training.phases import Phase, StepContext, StepOutput, in_mode

log = logging.getLogger("musicgan")
AUDIO_FRAME_REPRESENTATIONS = ("fft_blocks",)
HELD_OUT_SPLITS = ("valid", "test")  # generation seeds: held-out songs, valid first


def next_frame_loss(predictions: torch.Tensor, frames: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """Mean squared error of prediction t against frame t + 1 over the valid steps of each row
    (a row of length L has L - 1 targets) and all dimensions."""
    targets = frames[:, 1:]
    valid = losses.valid_steps(lengths - 1, targets.shape[1])
    squared = (predictions[:, :-1] - targets).square().mean(dim=2)  # (B, T - 1)
    return squared[valid].mean() if bool(valid.any()) else squared.sum() * 0.0


def next_frame_step(ctx: StepContext, batch) -> StepOutput:
    frames, lengths = batch.x.to(ctx.device), batch.lengths.to(ctx.device)
    predictions = ctx.run("generator", "forward", frames)
    mse = next_frame_loss(predictions, frames, lengths)
    dense = ctx.module("generator").dense_parameters()
    loss = mse + losses.l2_penalty(dense, ctx.cfg.optim.l2) if ctx.cfg.optim.l2 > 0 else mse
    return StepOutput({"generator": loss}, {"mse": mse.detach()})


@torch.no_grad()
def continue_frames(network: torch.nn.Module, seed: torch.Tensor, steps: int) -> torch.Tensor:
    """(B, steps, D) frames predicted after the seed window (B, T, D), sliding the window
    forward by one predicted frame each time (the LSTM state restarts on every window)."""
    window, predicted = seed, []
    for _ in range(steps):
        frame = network(window)[:, -1:]
        predicted.append(frame)
        window = torch.cat([window[:, 1:], frame], dim=1)
    return torch.cat(predicted, dim=1) if predicted else seed[:, :0]


@register("spectral-lstm")
class SpectralLSTMFamily(ModelFamily):
    network_names = ("generator",)

    def __init__(self, cfg) -> None:
        super().__init__(cfg)
        if cfg.model.spectral_arch not in SPECTRAL_ARCHS:
            raise ConfigError(
                f"model.spectral_arch={cfg.model.spectral_arch!r} is not one of {', '.join(SPECTRAL_ARCHS)}"
            )
        if cfg.data.representation not in AUDIO_FRAME_REPRESENTATIONS:
            raise ConfigError(
                f"model.name=spectral-lstm needs data.representation=fft_blocks, got {cfg.data.representation!r}"
            )
        if cfg.curriculum.max_len < 2:
            raise ConfigError(
                f"spectral-lstm needs curriculum.max_len >= 2 (a seed frame and a target), got {cfg.curriculum.max_len}"
            )
        self.representation = None
        self._held_out: list[np.ndarray] | None = None  # encoded once: every sample round reuses them

    def build_representation(self):
        from musicgan.data.representations import build_representation

        d = self.cfg.data
        return build_representation(
            "fft_blocks", block_size=d.block_size, sample_rate=d.audio_rate, spectrum=d.spectrum, overlap=d.overlap
        )

    def build_networks(self, representation):
        self.representation = representation  # generation encodes its seed songs with it
        m = self.cfg.model
        net = build_spectral_net(
            m.spectral_arch,
            representation.num_features,
            m.g_hidden,
            dropout=m.spectral_dropout,
            lstm_dropout=m.spectral_lstm_dropout,
            kblock=m.spectral_kblock,
            conv_project=m.g_hidden if m.spectral_conv_project else None,
        )
        return {"generator": net}

    def phases(self) -> list[Phase]:
        return [Phase("next-frame", None, ("generator",), next_frame_step, curriculum=False)]

    @property
    def seed_frames(self) -> int:
        """T: frames a window feeds the network (training windows hold T + 1)."""
        return self.cfg.curriculum.max_len - 1

    @torch.no_grad()
    def generate(self, networks, num: int, length: int) -> np.ndarray:
        network = networks["generator"]
        if num < 1:  # a sample round that writes and scores nothing
            return np.zeros((0, length, network.out.out_features), dtype=np.float32)
        with in_mode(network):
            seed = torch.from_numpy(self.seed_windows(num)).to(next(network.parameters()).device)
            frames = continue_frames(network, seed, length)
        return frames.cpu().numpy()

    def seed_windows(self, num: int) -> np.ndarray:
        """(num, T, D) real windows from held-out songs, round robin over the songs, each at a
        start drawn with train.seed (so every call and every rank picks the same seeds)."""
        songs = self._held_out_encodings()
        rng = np.random.default_rng(self.cfg.train.seed)
        windows = []
        for index in range(num):
            frames = songs[index % len(songs)]
            start = int(rng.integers(0, len(frames) - self.seed_frames + 1))
            windows.append(frames[start : start + self.seed_frames])
        return np.stack(windows).astype(np.float32)

    def _held_out_encodings(self) -> list[np.ndarray]:
        if self._held_out is None:
            self._held_out = self._encode_held_out()
        return self._held_out

    def _encode_held_out(self) -> list[np.ndarray]:
        from musicgan.data.loader import iter_encoded
        from musicgan.data.shards import split_urls

        if self.representation is None:
            raise RuntimeError("spectral-lstm generates after build_networks(representation)")
        urls = None
        for split in HELD_OUT_SPLITS:
            try:
                urls = split_urls(self.cfg.data.path, split)
                break
            except DataError:
                continue
        if urls is None:
            log.warning("%s has no valid or test songs: generation seeds come from TRAINING audio", self.cfg.data.path)
            urls = split_urls(self.cfg.data.path, "train")
        songs = [frames for _, frames in iter_encoded(urls, self.representation) if len(frames) >= self.seed_frames]
        if not songs:
            raise DataError(
                f"no held-out song of {self.cfg.data.path} has {self.seed_frames} frames to seed "
                "generation: lower curriculum.max_len or prepare longer songs"
            )
        return songs
