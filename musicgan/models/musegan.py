"""MuseGAN (Dong, Hsiao, Yang & Yang 2018, "MuseGAN: Multi-track Sequential Generative
Adversarial Networks for Symbolic Music Generation and Accompaniment"). Architecture only.

Shapes: B batch, K tracks, N bars, S steps per bar, P pitches. Every network reads and
writes piano-roll phrases `(B, K, N, S, P)` with values in [-1, +1] (G ends in tanh; real
data is -1 off, +1 on). Critics return one score per phrase, `(B,)`.

Two architectures (`ARCHS`):
- `v3`, the compact 3-D convolutional network of the authors' later code (default for
  training). G: latent -> shared trunk of transposed 3-D convs (bars, then time and pitch
  coarsely) -> per track two private streams, pitch-then-time and time-then-pitch, merged
  by a 1x1x1 conv, tanh. D: per track the mirrored streams, then shared convs; plus a
  chroma stream (per-beat pitch-class counts) and an onset stream (time difference summed
  over pitch); the three meet in one conv and a dense score.
- `paper` (v1): per-track bar generators (dense, then 2-D transposed convs along time and
  then pitch) fed one latent per bar by temporal generators; a bar critic (2-D convs per
  bar) and a phrase head over the bars' feature vectors. The authors' code reshaped the
  bar critic's (5, 512) time map of each bar into rows that do not follow bars; the phrase
  head here reads one feature vector per bar, in bar order, so it sees bar-to-bar structure.

Modes (`MODES`) differ in how many generators there are and what latent each sees
(the paper's Fig. 3): `jamming` one generator per track, private latents only;
`composer` one generator writing all tracks from one shared latent; `hybrid` one
generator per track fed a shared and a private latent. `LatentLayout` states the sizes.

Every per-track network is one grouped convolution (groups = generators or tracks)
rather than a Python loop over K modules: one kernel launch per layer whatever K is.
Batch norm only in G: the critics are trained with a gradient penalty, which batch norm
would make depend on the other samples of the batch (Gulrajani et al. 2017).
"""

from __future__ import annotations

from dataclasses import dataclass
from math import prod

import torch
import torch.nn.functional as F
from torch import nn

from musicgan.errors import ConfigError

MODES = ("jamming", "composer", "hybrid")
ARCHS = ("v3", "paper")
LEAK = 0.2  # LeakyReLU slope of both critics
PITCHES_PER_OCTAVE = 12
# v1 bar generator: widths of the time-axis transposed convs, aligned to the last of
# `paper_time_factors` (the paper's five: 512, 256, 256, 128, 128; more layers repeat 512).
PAPER_TIME_WIDTHS = (512, 256, 256, 128, 128)
PAPER_FIRST_STEPS = 2  # the dense layer's output is reshaped to 2 steps x 1 pitch
# v3 G's share of cells on at init. Its last layer is batch norm + tanh, so with the default
# shift 0 half the cells start on, where piano rolls hold a few per cent: the critic's first
# and only lesson is then "fewer notes", one gradient for every sample (issue 18,
# docs/musegan.md). Starting near the data's density removes that lesson; it costs nothing.
V3_INITIAL_ON_SHARE = 0.02


@dataclass(frozen=True)
class MuseGANGeometry:
    """Sizes of a phrase and of the networks. Defaults: the v3 code's 4 x 48 x 84 x 5.

    v3_time_factors: (a, b, c) upsampling of the time axis: trunk a, trunk b, track stream c;
        a * b * c = steps_per_bar (the code's 4, 4, 3).
    v3_pitch_layers: the trunk's two pitch (kernel, stride) pairs; the track streams then
        multiply by 12 (the code's (3, 3), (3, 2): 1 -> 3 -> 7 -> 84; the small config's
        (2, 2), (2, 2): 1 -> 2 -> 4 -> 48).
    paper_time_factors: the v1 bar generator's time upsampling after its first 2 steps.
    paper_pitch_factors: its pitch upsampling (the paper's 7, 12 -> 84).
    width_scale: every layer width times this (the small config: 0.25).
    lowest_pitch: MIDI number of pitch row 0; the chroma stream folds octaves from it.
    """

    num_tracks: int = 5
    num_bars: int = 4
    steps_per_bar: int = 48
    num_pitches: int = 84
    beats_per_bar: int = 4
    lowest_pitch: int = 24
    width_scale: float = 1.0
    v3_time_factors: tuple[int, int, int] = (4, 4, 3)
    v3_pitch_layers: tuple[tuple[int, int], tuple[int, int]] = ((3, 3), (3, 2))
    paper_time_factors: tuple[int, ...] = (2, 2, 2, 2, 3)
    paper_pitch_factors: tuple[int, int] = (7, 12)

    def width(self, channels: int) -> int:
        return max(1, int(round(channels * self.width_scale)))

    @property
    def phrase_shape(self) -> tuple[int, int, int, int]:
        """(K, N, S, P) of one phrase."""
        return (self.num_tracks, self.num_bars, self.steps_per_bar, self.num_pitches)


def _require(condition: bool, message: str) -> None:
    if not condition:
        raise ConfigError(message)


def check_geometry(geometry: MuseGANGeometry, arch: str) -> None:
    """ConfigError naming the mismatch when `arch` cannot build this phrase shape."""
    g = geometry
    _require(arch in ARCHS, f"model.musegan_arch must be one of {', '.join(ARCHS)} (got {arch!r})")
    _require(
        min(g.num_tracks, g.num_pitches, g.beats_per_bar) >= 1 and g.width_scale > 0,
        f"MuseGAN sizes must be positive (got {g})",
    )
    _require(g.num_bars >= 2, f"MuseGAN needs >= 2 bars per phrase (got {g.num_bars})")
    _require(
        g.steps_per_bar % g.beats_per_bar == 0,
        f"steps per bar {g.steps_per_bar} is not a multiple of {g.beats_per_bar} beats",
    )
    if arch == "v3":
        _check_v3(g)
    else:
        _check_paper(g)


def _check_v3(g: MuseGANGeometry) -> None:
    _require(
        prod(g.v3_time_factors) == g.steps_per_bar,
        f"v3 time factors {g.v3_time_factors} multiply to {prod(g.v3_time_factors)}, "
        f"not {g.steps_per_bar} steps per bar",
    )
    pitches = _tconv_size(_tconv_size(1, *g.v3_pitch_layers[0]), *g.v3_pitch_layers[1]) * PITCHES_PER_OCTAVE
    _require(
        pitches == g.num_pitches,
        f"v3 pitch layers {g.v3_pitch_layers} x {PITCHES_PER_OCTAVE} give {pitches} pitches, not {g.num_pitches}",
    )


def _check_paper(g: MuseGANGeometry) -> None:
    steps = PAPER_FIRST_STEPS * prod(g.paper_time_factors)
    _require(
        steps == g.steps_per_bar,
        f"paper time factors {g.paper_time_factors} give {steps} steps per bar, not {g.steps_per_bar}",
    )
    _require(
        prod(g.paper_pitch_factors) == g.num_pitches,
        f"paper pitch factors {g.paper_pitch_factors} give {prod(g.paper_pitch_factors)} pitches, not {g.num_pitches}",
    )
    _require(
        _paper_critic_steps(g.steps_per_bar) >= 1,
        f"the paper bar critic needs more than {g.steps_per_bar} steps per bar",
    )


def _tconv_size(size: int, kernel: int, stride: int) -> int:
    return (size - 1) * stride + kernel


def _conv_size(size: int, kernel: int, stride: int) -> int:
    return (size - kernel) // stride + 1


# -- latent layout ---------------------------------------------------------------------------
@dataclass(frozen=True)
class LatentLayout:
    """How a flat latent `(B, latent_dim)` splits, in this order: shared static, shared
    temporal seed, then per generator private static, private temporal seed. Static parts
    are the same for every bar; a temporal seed goes through a temporal generator that
    gives one vector per bar (the paper arch only: v3's trunk makes the bars itself)."""

    num_generators: int
    shared_static: int
    shared_temporal: int
    private_static: int
    private_temporal: int

    @property
    def private_dim(self) -> int:
        return self.num_generators * (self.private_static + self.private_temporal)

    @property
    def latent_dim(self) -> int:
        return self.shared_static + self.shared_temporal + self.private_dim

    @property
    def bar_input_dim(self) -> int:
        """Per generator, per bar: every part side by side (128 in both papers)."""
        return self.shared_static + self.shared_temporal + self.private_static + self.private_temporal


def latent_layout(arch: str, mode: str, num_tracks: int) -> LatentLayout:
    """The paper's layouts (32-dim parts in hybrid, 64 in jamming / composer); v3: 128 per
    generator, hybrid half shared, half private."""
    _require(mode in MODES, f"model.musegan_mode must be one of {', '.join(MODES)} (got {mode!r})")
    k = 1 if mode == "composer" else num_tracks
    if arch == "paper":  # each part is a static vector and a temporal seed of that size
        shared, private = {"composer": (64, 0), "jamming": (0, 64), "hybrid": (32, 32)}[mode]
        return LatentLayout(k, shared, shared, private, private)
    shared, private = {"composer": (128, 0), "jamming": (0, 128), "hybrid": (64, 64)}[mode]
    return LatentLayout(k, shared, 0, private, 0)


def split_latent(z: torch.Tensor, layout: LatentLayout) -> tuple[torch.Tensor, ...]:
    """(shared_static (B, s), shared_temporal (B, t), private_static (B, G, ps),
    private_temporal (B, G, pt)) views of a flat (B, latent_dim) latent."""
    if z.dim() != 2 or z.shape[1] != layout.latent_dim:
        raise ValueError(f"latent must be (B, {layout.latent_dim}), got {tuple(z.shape)}")
    s, t, g = layout.shared_static, layout.shared_temporal, layout.num_generators
    private = z[:, s + t :].reshape(z.shape[0], g, layout.private_static + layout.private_temporal)
    private_static, private_temporal = private.split([layout.private_static, layout.private_temporal], dim=2)
    return z[:, :s], z[:, s : s + t], private_static, private_temporal


def draw_latent(
    num: int,
    latent_dim: int,
    std: float = 1.0,
    truncated: bool = False,
    generator: torch.Generator | None = None,
    device=None,
) -> torch.Tensor:
    """(num, latent_dim) z ~ N(0, std^2); truncated: resampled beyond 2 std (the v3 code's
    truncated normal; the paper draws N(0, 0.1^2))."""
    z = torch.empty(num, latent_dim, device=device)
    if truncated:
        return nn.init.trunc_normal_(z, 0.0, std, -2.0 * std, 2.0 * std, generator=generator)
    return z.normal_(0.0, std, generator=generator)


def phrases_from_steps(steps: torch.Tensor, geometry: MuseGANGeometry) -> torch.Tensor:
    """(B, N * S, K * P) windows, track-major features (the `multitrack` layout) ->
    (B, K, N, S, P) phrases."""
    g = geometry
    b = steps.shape[0]
    return steps.reshape(b, g.num_bars, g.steps_per_bar, g.num_tracks, g.num_pitches).permute(0, 3, 1, 2, 4)


def steps_from_phrases(phrases: torch.Tensor) -> torch.Tensor:
    """Inverse of `phrases_from_steps`: (B, K, N, S, P) -> (B, N * S, K * P)."""
    b, k, n, s, p = phrases.shape
    return phrases.permute(0, 2, 3, 1, 4).reshape(b, n * s, k * p)


# -- building blocks ---------------------------------------------------------------------------
def _is_patchwise(conv: nn.modules.conv._ConvNd, spatial) -> bool:
    """Kernel == stride, no padding or dilation, sizes divisible: non-overlapping patches."""
    plain = all(p == 0 for p in conv.padding) and all(d == 1 for d in conv.dilation)
    plain = plain and all(p == 0 for p in getattr(conv, "output_padding", (0,)))
    divisible = all(size % k == 0 for size, k in zip(spatial, conv.kernel_size))
    return plain and tuple(conv.kernel_size) == tuple(conv.stride) and divisible


class PatchConv3d(nn.Conv3d):
    """nn.Conv3d that computes a kernel == stride convolution as one einsum (a batched
    matrix product per group over non-overlapping patches); any other shape goes to
    nn.Conv3d. MuseGAN's factorised layers are all of this kind: on CPU, ATen's grouped
    3-D convolution runs them several times slower than the matrix product (BENCHMARKS.md).
    Same parameters, initialisation and results (tests compare with F.conv3d)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not _is_patchwise(self, x.shape[2:]):
            return super().forward(x)
        (b, c, n, s, p), (kn, ks, kp), g = x.shape, self.kernel_size, self.groups
        patches = x.reshape(b, g, c // g, n // kn, kn, s // ks, ks, p // kp, kp)
        weight = self.weight.view(g, self.out_channels // g, c // g, kn, ks, kp)
        y = torch.einsum("bginxsypz,goixyz->bgonsp", patches, weight)
        return y.reshape(b, self.out_channels, n // kn, s // ks, p // kp) + self.bias.view(1, -1, 1, 1, 1)


class PatchConvTranspose3d(nn.ConvTranspose3d):
    """nn.ConvTranspose3d computed as one einsum when kernel == stride (each input cell
    writes its own output patch); see PatchConv3d."""

    def forward(self, x: torch.Tensor, output_size=None) -> torch.Tensor:
        if output_size is not None or not _is_patchwise(self, ()):
            return super().forward(x, output_size)
        (b, c, n, s, p), (kn, ks, kp), g = x.shape, self.kernel_size, self.groups
        weight = self.weight.view(g, c // g, self.out_channels // g, kn, ks, kp)
        y = torch.einsum("bginsp,gioxyz->bgonxsypz", x.reshape(b, g, c // g, n, s, p), weight)
        return y.reshape(b, self.out_channels, n * kn, s * ks, p * kp) + self.bias.view(1, -1, 1, 1, 1)


def _up3d(c_in: int, c_out: int, kernel, stride, groups: int = 1) -> list[nn.Module]:
    """Transposed 3-D conv + batch norm + ReLU (every hidden G layer of v3)."""
    return [PatchConvTranspose3d(c_in, c_out, kernel, stride, groups=groups), nn.BatchNorm3d(c_out), nn.ReLU()]


def _up2d(c_in: int, c_out: int, kernel, stride, groups: int = 1) -> list[nn.Module]:
    return [nn.ConvTranspose2d(c_in, c_out, kernel, stride, groups=groups), nn.BatchNorm2d(c_out), nn.ReLU()]


def _down3d(c_in: int, c_out: int, kernel, stride=1, groups: int = 1) -> list[nn.Module]:
    """3-D conv + LeakyReLU, no normalisation (every hidden critic layer of v3)."""
    return [PatchConv3d(c_in, c_out, kernel, stride, groups=groups), nn.LeakyReLU(LEAK)]


def _down2d(c_in: int, c_out: int, kernel, stride) -> list[nn.Module]:
    return [nn.Conv2d(c_in, c_out, kernel, stride), nn.LeakyReLU(LEAK)]


def interleave_groups(a: torch.Tensor, b: torch.Tensor, groups: int) -> torch.Tensor:
    """Channels [a_0, b_0, a_1, b_1, ...] of two (B, groups*C, ...) maps, so a grouped conv
    after the concat sees each group's two streams together."""
    shape = a.shape
    stacked = torch.stack([a.reshape(shape[0], groups, -1, *shape[2:]), b.reshape(shape[0], groups, -1, *shape[2:])], 2)
    return stacked.reshape(shape[0], 2 * shape[1], *shape[2:])


def pitch_class_matrix(num_pitches: int, lowest_pitch: int) -> torch.Tensor:
    """(P, 12) one-hot: row i marks pitch class (lowest_pitch + i) % 12 (true octave fold)."""
    classes = (torch.arange(num_pitches) + lowest_pitch) % PITCHES_PER_OCTAVE
    return F.one_hot(classes, PITCHES_PER_OCTAVE).float()


class _TrackOrder(nn.Module):
    """Keeps the track names in the state dict: loading weights trained with another track
    order (the paper's and the v3 code's LPD-5 orders differ) is an error, not silence."""

    def __init__(self, track_names) -> None:
        super().__init__()
        self.track_names = list(track_names)

    def get_extra_state(self) -> dict:
        return {"track_names": list(self.track_names)}

    def set_extra_state(self, state: dict) -> None:
        if list(state["track_names"]) != self.track_names:
            raise ConfigError(f"checkpoint tracks {state['track_names']} differ from this model's {self.track_names}")


def _default_tracks(geometry: MuseGANGeometry, track_names) -> list[str]:
    names = list(track_names) if track_names is not None else [f"track{i}" for i in range(geometry.num_tracks)]
    _require(len(names) == geometry.num_tracks, f"{len(names)} track names for {geometry.num_tracks} tracks")
    return names


# -- v3 -----------------------------------------------------------------------------------------
class V3Generator(nn.Module):
    """v3 generator: latent (B, latent_dim) -> phrase (B, K, N, S, P) in (-1, 1)."""

    def __init__(self, geometry: MuseGANGeometry, mode: str = "hybrid", track_names=None) -> None:
        super().__init__()
        check_geometry(geometry, "v3")
        g, k = geometry, geometry.num_tracks
        self.geometry, self.mode = g, mode
        self.layout = latent_layout("v3", mode, k)
        self.order = _TrackOrder(_default_tracks(g, track_names))
        n = self.layout.num_generators
        (pk1, ps1), (pk2, ps2) = g.v3_pitch_layers
        t1, t2, t3 = g.v3_time_factors
        w512, w256, w128, w32, w16 = (g.width(c) for c in (512, 256, 128, 32, 16))
        self.trunk = nn.Sequential(
            *_up3d(n * self.layout.bar_input_dim, n * w512, (g.num_bars, 1, 1), (g.num_bars, 1, 1), n),
            *_up3d(n * w512, n * w256, (1, t1, pk1), (1, t1, ps1), n),
            *_up3d(n * w256, n * w128, (1, t2, pk2), (1, t2, ps2), n),
        )
        octave = (1, 1, PITCHES_PER_OCTAVE)
        self.pitch_time = nn.Sequential(
            *_up3d(k * w128, k * w32, octave, octave, k), *_up3d(k * w32, k * w16, (1, t3, 1), (1, t3, 1), k)
        )
        self.time_pitch = nn.Sequential(
            *_up3d(k * w128, k * w32, (1, t3, 1), (1, t3, 1), k), *_up3d(k * w32, k * w16, octave, octave, k)
        )
        self.merge = nn.Sequential(PatchConvTranspose3d(2 * k * w16, k, 1, groups=k), nn.BatchNorm3d(k))

    def start_with_on_share(self, share: float) -> None:
        """Shift the last batch norm so that a unit-normal pre-activation is > 0 (a cell on)
        with probability `share` (0.5: torch's default shift 0); `build_musegan` applies it."""
        with torch.no_grad():
            self.merge[1].bias.fill_(-torch.special.ndtri(torch.tensor(1.0 - share)).item())

    @property
    def latent_dim(self) -> int:
        return self.layout.latent_dim

    def trunk_input(self, z: torch.Tensor) -> torch.Tensor:
        """(B, G * 128, 1, 1, 1): each generator's [shared, private] latent."""
        shared, _, private, _ = split_latent(z, self.layout)
        shared = shared[:, None].expand(-1, self.layout.num_generators, -1)
        return torch.cat([shared, private], 2).reshape(z.shape[0], -1, 1, 1, 1)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        k = self.geometry.num_tracks
        h = self.trunk(self.trunk_input(z))  # (B, G * C, N, S / t3, P / 12)
        if self.layout.num_generators == 1:  # composer: every track's streams read the one trunk
            h = h.repeat(1, k, 1, 1, 1)
        h = interleave_groups(self.pitch_time(h), self.time_pitch(h), k)
        return torch.tanh(self.merge(h))  # (B, K, N, S, P)


class V3Critic(nn.Module):
    """v3 critic: phrase (B, K, N, S, P) -> score (B,). No normalisation layers."""

    def __init__(self, geometry: MuseGANGeometry, track_names=None) -> None:
        super().__init__()
        check_geometry(geometry, "v3")
        g, k = geometry, geometry.num_tracks
        self.geometry = g
        self.order = _TrackOrder(_default_tracks(g, track_names))
        (pk1, ps1), (pk2, ps2) = g.v3_pitch_layers
        t1, t2, t3 = g.v3_time_factors
        w512, w256, w128, w64, w32, w16 = (g.width(c) for c in (512, 256, 128, 64, 32, 16))
        octave = (1, 1, PITCHES_PER_OCTAVE)
        self.pitch_time = nn.Sequential(
            *_down3d(k, k * w16, octave, octave, k), *_down3d(k * w16, k * w32, (1, t3, 1), (1, t3, 1), k)
        )
        self.time_pitch = nn.Sequential(
            *_down3d(k, k * w16, (1, t3, 1), (1, t3, 1), k), *_down3d(k * w16, k * w32, octave, octave, k)
        )
        self.merge_streams = nn.Sequential(*_down3d(2 * k * w32, k * w64, 1, 1, k))
        self.shared = nn.Sequential(
            *_down3d(k * w64, w128, (1, t2, pk2), (1, t2, ps2)), *_down3d(w128, w256, (1, t1, pk1), (1, t1, ps1))
        )
        self.register_buffer("pitch_classes", pitch_class_matrix(g.num_pitches, g.lowest_pitch), persistent=False)
        self.chroma = nn.Sequential(*_down3d(k, w32, octave), *_down3d(w32, w64, (1, g.beats_per_bar, 1)))
        self.onset = nn.Sequential(
            *_down3d(k, w16, (1, t3, 1), (1, t3, 1)),
            *_down3d(w16, w32, (1, t2, 1), (1, t2, 1)),
            *_down3d(w32, w64, (1, t1, 1), (1, t1, 1)),
        )
        self.merge = nn.Sequential(*_down3d(w256 + 2 * w64, w512, (2, 1, 1)))
        self.score = nn.Linear(w512 * (g.num_bars - 1), 1)

    def chroma_input(self, x: torch.Tensor) -> torch.Tensor:
        """(B, K, N, beats, 12): per beat, how many steps each pitch class sounds."""
        b, k, n, _, p = x.shape
        on = (x + 1) / 2  # [-1, 1] -> [0, 1]: counts of sounding steps, not of -1s
        per_beat = on.reshape(b, k, n, self.geometry.beats_per_bar, -1, p).sum(4)
        return per_beat @ self.pitch_classes.to(x.dtype)

    @staticmethod
    def onset_input(x: torch.Tensor) -> torch.Tensor:
        """(B, K, N, S, 1): change in the number of sounding pitches from the previous step
        (the phrase starts from silence), a soft onset count."""
        b, k, n, s, p = x.shape
        on = ((x + 1) / 2).reshape(b, k, n * s, p)
        change = on - F.pad(on, (0, 0, 1, 0))[:, :, :-1]
        return change.sum(3).reshape(b, k, n, s, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        k = self.geometry.num_tracks
        tracks = self.merge_streams(interleave_groups(self.pitch_time(x), self.time_pitch(x), k))
        h = torch.cat([self.shared(tracks), self.chroma(self.chroma_input(x)), self.onset(self.onset_input(x))], 1)
        return self.score(self.merge(h).flatten(1)).squeeze(1)  # (B,)


# -- paper (v1) ------------------------------------------------------------------------------
class TemporalGenerator(nn.Module):
    """`groups` independent temporal generators: seed (B, groups, d) -> (B, groups, d, N),
    one d-vector per bar (transposed convs along bars: 1 -> 2 -> N, BN + ReLU)."""

    def __init__(self, seed_dim: int, num_bars: int, groups: int, hidden: int) -> None:
        super().__init__()
        self.groups, self.seed_dim = groups, seed_dim
        self.net = nn.Sequential(
            nn.ConvTranspose1d(groups * seed_dim, groups * hidden, 2, 2, groups=groups),
            nn.BatchNorm1d(groups * hidden),
            nn.ReLU(),
            nn.ConvTranspose1d(groups * hidden, groups * seed_dim, num_bars - 1, groups=groups),
            nn.BatchNorm1d(groups * seed_dim),
            nn.ReLU(),
        )

    def forward(self, seed: torch.Tensor) -> torch.Tensor:
        b = seed.shape[0]
        return self.net(seed.reshape(b, -1, 1)).reshape(b, self.groups, self.seed_dim, -1)


class PaperBarGenerator(nn.Module):
    """`groups` bar generators: (B', groups * in_dim) -> (B', groups * out_per_group, S, P).
    Dense (BN, ReLU) -> 2 steps x 1 pitch -> transposed convs along time, then pitch; tanh."""

    def __init__(self, geometry: MuseGANGeometry, in_dim: int, groups: int, out_per_group: int) -> None:
        super().__init__()
        g = geometry
        self.groups = groups
        widths = paper_time_widths(len(g.paper_time_factors))
        self.first_channels = g.width(widths[0] if widths else 512)
        self.dense = nn.Sequential(
            nn.Conv1d(groups * in_dim, groups * PAPER_FIRST_STEPS * self.first_channels, 1, groups=groups),
            nn.BatchNorm1d(groups * PAPER_FIRST_STEPS * self.first_channels),
            nn.ReLU(),
        )
        layers, channels = [], self.first_channels
        for width, factor in zip(widths, g.paper_time_factors):
            layers += _up2d(groups * channels, groups * g.width(width), (factor, 1), (factor, 1), groups)
            channels = g.width(width)
        first_pitch, last_pitch = g.paper_pitch_factors
        layers += _up2d(groups * channels, groups * g.width(64), (1, first_pitch), (1, first_pitch), groups)
        layers += [
            nn.ConvTranspose2d(
                groups * g.width(64), groups * out_per_group, (1, last_pitch), (1, last_pitch), groups=groups
            ),
            nn.Tanh(),
        ]
        self.convs = nn.Sequential(*layers)

    def forward(self, bar_input: torch.Tensor) -> torch.Tensor:
        h = self.dense(bar_input[:, :, None])  # (B', groups * 2 * C, 1)
        return self.convs(h.reshape(h.shape[0], self.groups * self.first_channels, PAPER_FIRST_STEPS, 1))


def paper_time_widths(num_layers: int) -> tuple[int, ...]:
    """The paper's widths for the last time layers; extra leading layers get 512."""
    widths = (512,) * max(0, num_layers - len(PAPER_TIME_WIDTHS)) + PAPER_TIME_WIDTHS
    return widths[len(widths) - num_layers :]


def _temporal_or_none(seed_dim: int, num_bars: int, groups: int, hidden: int) -> TemporalGenerator | None:
    return TemporalGenerator(seed_dim, num_bars, groups, hidden) if seed_dim else None


class PaperGenerator(nn.Module):
    """v1 generator: latent (B, latent_dim) -> phrase (B, K, N, S, P).

    Temporal generators turn the temporal seeds into one vector per bar (shared: one
    generator; private: one per bar generator); each bar generator then reads, per bar,
    [shared static, shared temporal(bar), private static, private temporal(bar)]."""

    def __init__(self, geometry: MuseGANGeometry, mode: str = "hybrid", track_names=None) -> None:
        super().__init__()
        check_geometry(geometry, "paper")
        g, k = geometry, geometry.num_tracks
        self.geometry, self.mode = g, mode
        self.layout = layout = latent_layout("paper", mode, k)
        self.order = _TrackOrder(_default_tracks(g, track_names))
        hidden, n = g.width(1024), layout.num_generators
        self.shared_temporal = _temporal_or_none(layout.shared_temporal, g.num_bars, 1, hidden)
        self.private_temporal = _temporal_or_none(layout.private_temporal, g.num_bars, n, hidden)
        self.bars = PaperBarGenerator(g, layout.bar_input_dim, n, k // n)

    @property
    def latent_dim(self) -> int:
        return self.layout.latent_dim

    def bar_inputs(self, z: torch.Tensor) -> torch.Tensor:
        """(B, N, G, 128): every bar generator's input for every bar."""
        shared_static, shared_seed, private_static, private_seed = split_latent(z, self.layout)
        b, n, bars = z.shape[0], self.layout.num_generators, self.geometry.num_bars
        parts = [shared_static[:, None, None].expand(b, bars, n, -1)]
        if self.shared_temporal is not None:
            parts.append(self.shared_temporal(shared_seed[:, None]).permute(0, 3, 1, 2).expand(b, bars, n, -1))
        parts.append(private_static[:, None].expand(b, bars, n, -1))
        if self.private_temporal is not None:
            parts.append(self.private_temporal(private_seed).permute(0, 3, 1, 2))
        return torch.cat(parts, 3)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        g = self.geometry
        inputs = self.bar_inputs(z)  # (B, N, G, 128)
        bars = self.bars(inputs.reshape(-1, inputs.shape[2] * inputs.shape[3]))  # (B * N, K, S, P)
        return bars.reshape(z.shape[0], g.num_bars, g.num_tracks, g.steps_per_bar, g.num_pitches).transpose(1, 2)


def _paper_critic_steps(steps_per_bar: int) -> int:
    """Time length left by the bar critic's time convs (2/2, 2/2, 4/2, 3/2)."""
    steps = steps_per_bar
    for kernel, stride in ((2, 2), (2, 2), (4, 2), (3, 2)):
        steps = _conv_size(steps, kernel, stride)
    return steps


class PaperCritic(nn.Module):
    """v1 critic: phrase (B, K, N, S, P) -> score (B,) = mean over bars of the bar critic's
    score + the phrase head's score over the sequence of the bars' feature vectors."""

    def __init__(self, geometry: MuseGANGeometry, track_names=None) -> None:
        super().__init__()
        check_geometry(geometry, "paper")
        g = geometry
        self.geometry = g
        self.order = _TrackOrder(_default_tracks(g, track_names))
        first_pitch, last_pitch = g.paper_pitch_factors
        w128, w256, w512, w1024 = (g.width(c) for c in (128, 256, 512, 1024))
        self.convs = nn.Sequential(
            *_down2d(g.num_tracks, w128, (1, last_pitch), (1, last_pitch)),
            *_down2d(w128, w128, (1, first_pitch), (1, first_pitch)),
            *_down2d(w128, w128, (2, 1), (2, 1)),
            *_down2d(w128, w128, (2, 1), (2, 1)),
            *_down2d(w128, w256, (4, 1), (2, 1)),
            *_down2d(w256, w512, (3, 1), (2, 1)),
        )
        self.features = nn.Sequential(nn.Linear(w512 * _paper_critic_steps(g.steps_per_bar), w1024), nn.LeakyReLU(LEAK))
        self.bar_score = nn.Linear(w1024, 1)
        self.phrase = nn.Sequential(
            nn.Conv1d(w1024, w512, 2), nn.LeakyReLU(LEAK), nn.Flatten(), nn.Linear(w512 * (g.num_bars - 1), 1)
        )

    def bar_features(self, x: torch.Tensor) -> torch.Tensor:
        """(B, N, F): one feature vector per bar, in bar order."""
        b, k, n, s, p = x.shape
        bars = x.transpose(1, 2).reshape(b * n, k, s, p)
        return self.features(self.convs(bars).flatten(1)).reshape(b, n, -1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        features = self.bar_features(x)  # (B, N, F)
        bar_scores = self.bar_score(features).squeeze(2).mean(1)
        return bar_scores + self.phrase(features.transpose(1, 2)).squeeze(1)  # (B,)


# -- the multitrack window layout ---------------------------------------------------------------
class WindowGenerator(nn.Module):
    """A MuseGAN generator that draws its own latent and writes `multitrack` windows:
    forward(batch_size) -> (B, N * S, K * P), the layout the loader serves (as CRNNGenerator
    takes a batch size), so a WGAN-GP step needs no MuseGAN-specific code. The latent is
    N(0, std^2), truncated at 2 std when `truncated` (`draw_latent`), from the torch RNG."""

    def __init__(self, net: nn.Module, latent_std: float = 1.0, truncated: bool = False) -> None:
        super().__init__()
        self.net, self.latent_std, self.truncated = net, latent_std, truncated

    @property
    def geometry(self) -> MuseGANGeometry:
        return self.net.geometry

    def forward(self, batch_size: int) -> torch.Tensor:
        device = next(self.net.parameters()).device
        z = draw_latent(batch_size, self.net.latent_dim, self.latent_std, self.truncated, device=device)
        return steps_from_phrases(self.net(z))


class WindowCritic(nn.Module):
    """A MuseGAN critic reading `multitrack` windows (B, N * S, K * P) -> (B,)."""

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward(self, steps: torch.Tensor) -> torch.Tensor:
        return self.net(phrases_from_steps(steps, self.net.geometry))


GENERATORS = {"v3": V3Generator, "paper": PaperGenerator}
CRITICS = {"v3": V3Critic, "paper": PaperCritic}


def build_musegan(
    geometry: MuseGANGeometry,
    arch: str = "v3",
    mode: str = "hybrid",
    track_names=None,
    initial_on_share: float = V3_INITIAL_ON_SHARE,
) -> tuple[nn.Module, nn.Module]:
    """(generator, critic) of `arch` in `mode`; ConfigError on an impossible geometry.
    `initial_on_share`: v3 G's share of cells on at init (the paper G has no final batch norm)."""
    check_geometry(geometry, arch)
    latent_layout(arch, mode, geometry.num_tracks)  # validates the mode
    generator = GENERATORS[arch](geometry, mode, track_names)
    if arch == "v3":
        generator.start_with_on_share(initial_on_share)
    return generator, CRITICS[arch](geometry, track_names)
