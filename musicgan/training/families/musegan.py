"""MuseGAN (Dong et al. 2018, "MuseGAN: Multi-track Sequential Generative Adversarial
Networks for Symbolic Music Generation and Accompaniment") as a model family.

Networks: `model.musegan_arch` (v3 | paper) in `model.musegan_mode` (jamming | composer |
hybrid), musicgan/models/musegan.py and docs/musegan.md. Data: the `multitrack`
representation (`data.track_grouping` parts | lpd5, `data.lowest_pitch`, `data.num_pitches`,
`data.frames_per_beat` steps per beat, `data.transpose_range`); a phrase is
`curriculum.max_len` steps of whole bars. Training: the `wgan-gp` family's step (WGAN-GP,
`train.gp_weight`, real + fake + interpolates through one critic forward) on the critic
schedule below, Adam from `optim.*`, optional linear learning-rate decay.

Schedule:
Both the paper and the authors' v3 code train the critic `n_critic` times per generator
step (5), with longer critic runs early on: the paper 100 critic steps for each of the first
25 generator steps and for every 500th; the v3 code 50 for each of the first 10. The v3 code
also decays both learning rates linearly to 0 over generator steps 45,000-50,000.

Everything here is a pure function of the trainer's step counter, so every rank and every
resume (also one in the middle of a critic run) agree on who trains when.
"""

from __future__ import annotations

import bisect
from pathlib import Path

import numpy as np
import torch

from musicgan.data.prepare import FORMAT
from musicgan.data.shards import MANIFEST, read_manifest
from musicgan.errors import ConfigError, DataError
from musicgan.models.musegan import PITCHES_PER_OCTAVE, MuseGANGeometry, WindowCritic, WindowGenerator, build_musegan
from musicgan.training.families import ModelFamily, register
from musicgan.training.families.wgan import NETWORKS, wgan_gp_step
from musicgan.training.phases import Phase, StepContext


class CriticSchedule:
    """`trains(step)`: the critic trains at every step; the generator on the last step of
    each critic run, whose length is `warmup_critic` for the first `warmup_g_steps` generator
    steps and for every `warmup_every`-th (0: never), else `n_critic`."""

    def __init__(
        self,
        n_critic: int = 5,
        warmup_critic: int = 0,
        warmup_g_steps: int = 0,
        warmup_every: int = 0,
        generator: str = "generator",
        critic: str = "critic",
    ) -> None:
        if n_critic < 1 or warmup_critic < 0 or warmup_g_steps < 0 or warmup_every < 0:
            raise ConfigError(
                f"critic schedule needs n_critic >= 1 and non-negative warm-up values "
                f"(got {n_critic}, {warmup_critic}, {warmup_g_steps}, {warmup_every})"
            )
        self.n_critic, self.warmup_critic = n_critic, warmup_critic
        self.warmup_g_steps, self.warmup_every = warmup_g_steps, warmup_every
        self.generator, self.critic = generator, critic
        self._generator_steps: list[int] = []  # trainer step of generator step j, grown on demand

    def run_length(self, g_step: int) -> int:
        """Critic steps in the run that ends with generator step `g_step` (0-based)."""
        warm = g_step < self.warmup_g_steps or (self.warmup_every > 0 and g_step % self.warmup_every == 0)
        return self.warmup_critic if warm and self.warmup_critic > 0 else self.n_critic

    def _extend(self, step: int) -> None:
        steps = self._generator_steps
        while not steps or steps[-1] < step:
            steps.append((steps[-1] if steps else -1) + self.run_length(len(steps)))

    def generator_steps_before(self, step: int) -> int:
        """Generator updates applied at trainer steps < `step` (0-based steps)."""
        self._extend(step)
        return bisect.bisect_left(self._generator_steps, step)

    def __call__(self, step: int) -> frozenset[str]:
        self._extend(step)
        updates_generator = self._generator_steps[bisect.bisect_left(self._generator_steps, step)] == step
        return frozenset({self.critic, self.generator} if updates_generator else {self.critic})


def linear_decay(g_step: int, start: int, end: int) -> float:
    """Learning-rate factor: 1 before generator step `start`, linearly to 0 at `end`
    (the v3 code: 45,000 -> 50,000); `end <= start` disables the decay."""
    if end <= start or g_step <= start:
        return 1.0
    return max(0.0, 1.0 - (g_step - start) / (end - start))


# -- the family -----------------------------------------------------------------------------------
# Latent per architecture: the paper draws N(0, 0.1^2), the v3 code a truncated N(0, 1).
LATENTS = {"paper": (0.1, False), "v3": (1.0, True)}
# The v3 trunk's two pitch (kernel, stride) pairs per octave count (then x12 per track):
# 7 octaves (84 rows) as the v3 code, 4 (48 rows) as the small config.
V3_PITCH_LAYERS = {
    7: ((3, 3), (3, 2)),
    4: ((2, 2), (2, 2)),
    6: ((2, 2), (3, 3)),
    5: ((1, 1), (5, 5)),
    3: ((1, 1), (3, 3)),
    2: ((1, 1), (2, 2)),
}
BEATS_PER_BAR = 4  # 4/4 only, as MuseGAN


def parse_transpose(text: str) -> tuple[int, int] | None:
    """ "-5,6" -> (-5, 6); "" -> None."""
    if not text.strip():
        return None
    try:
        low, high = (int(x) for x in text.split(","))
    except ValueError:
        raise ConfigError(f"data.transpose_range must look like -5,6 (got {text!r})") from None
    return low, high


def check_part_identity(data_path: str) -> None:
    """DataError at once (not after the loader found no usable window) when the shards
    predate part identity, which the `parts` grouping needs. No manifest: nothing to check
    (sampling from a run whose shards moved)."""
    manifest = Path(data_path) / MANIFEST if data_path else None
    if manifest is None or not manifest.is_file():
        return
    written = read_manifest(manifest).get("format")
    if written != FORMAT:
        raise DataError(
            f"{data_path} holds {written} shards without part identity, which "
            f"data.track_grouping=parts needs: prepare them again (`musicgan prepare ... --out DIR`)"
        )


def geometry_for(cfg, representation) -> MuseGANGeometry:
    """The phrase a run trains on: its tracks, `curriculum.max_len` steps of whole bars."""
    steps_per_bar, pitches = representation.window_align, cfg.data.num_pitches
    if cfg.curriculum.max_len % steps_per_bar or cfg.curriculum.max_len < 2 * steps_per_bar:
        raise ConfigError(
            f"curriculum.max_len={cfg.curriculum.max_len} must be >= 2 whole bars of {steps_per_bar} steps"
        )
    if pitches % PITCHES_PER_OCTAVE or pitches // PITCHES_PER_OCTAVE not in V3_PITCH_LAYERS:
        raise ConfigError(f"data.num_pitches={pitches}: MuseGAN needs 2-7 whole octaves (a multiple of 12)")
    octaves = pitches // PITCHES_PER_OCTAVE
    return MuseGANGeometry(
        num_tracks=len(representation.track_names),
        num_bars=cfg.curriculum.max_len // steps_per_bar,
        steps_per_bar=steps_per_bar,
        num_pitches=pitches,
        beats_per_bar=BEATS_PER_BAR,
        lowest_pitch=cfg.data.lowest_pitch,
        width_scale=cfg.model.musegan_width_scale,
        v3_time_factors=(4, 4, steps_per_bar // 16),
        v3_pitch_layers=V3_PITCH_LAYERS[octaves],
        paper_time_factors=_paper_time_factors(steps_per_bar),
        paper_pitch_factors=(octaves, PITCHES_PER_OCTAVE),
    )


def _paper_time_factors(steps_per_bar: int) -> tuple[int, ...]:
    """The v1 bar generator's time upsampling after its first 2 steps: 2s, then the rest
    (96 -> 2, 2, 2, 2, 3 as the paper; 48 -> 2, 2, 2, 3)."""
    factors, rest = [], steps_per_bar // 2
    while rest % 2 == 0 and rest > 3:
        factors.append(2)
        rest //= 2
    return tuple(factors + ([rest] if rest > 1 else []))


def decayed_rates(schedule: CriticSchedule):
    """The phase's `lr_factors`: both rates fall linearly (`linear_decay`) with the generator
    steps done, a pure function of the step (resume-exact), on top of the run's rates."""

    def factors(ctx: StepContext) -> dict[str, float]:
        o = ctx.cfg.optim
        if o.lr_decay_end <= o.lr_decay_start:
            return {}
        factor = linear_decay(schedule.generator_steps_before(ctx.global_step), o.lr_decay_start, o.lr_decay_end)
        return dict.fromkeys(NETWORKS, factor)

    return factors


@register("musegan")
class MuseGAN(ModelFamily):
    """MuseGAN: `model.musegan_arch` networks in `model.musegan_mode` on `multitrack` phrases,
    trained by WGAN-GP (the `wgan-gp` family's step) on `CriticSchedule`."""

    network_names = NETWORKS
    learning_rate_keys = {"generator": "optim.g_lr", "critic": "optim.d_lr"}

    def build_representation(self):
        from musicgan.data.representations import build_representation

        d = self.cfg.data
        if d.representation != "multitrack":
            raise ConfigError(f"model.name=musegan needs data.representation=multitrack, got {d.representation!r}")
        if d.track_grouping == "parts":
            check_part_identity(d.path)
        return build_representation(
            "multitrack",
            grouping=d.track_grouping,
            steps_per_beat=d.frames_per_beat,
            lowest=d.lowest_pitch,
            num_pitches=d.num_pitches,
            transpose=parse_transpose(d.transpose_range),
        )

    def build_networks(self, representation):
        m = self.cfg.model
        generator, critic = build_musegan(
            geometry_for(self.cfg, representation),
            m.musegan_arch,
            m.musegan_mode,
            representation.track_names,
            m.musegan_initial_on_share,
        )
        return {"generator": WindowGenerator(generator, *LATENTS[m.musegan_arch]), "critic": WindowCritic(critic)}

    def schedule(self) -> CriticSchedule:
        t = self.cfg.train
        return CriticSchedule(t.n_critic, t.critic_warmup, t.critic_warmup_g_steps, t.critic_warmup_every)

    def phases(self) -> list[Phase]:
        schedule = self.schedule()
        return [
            Phase(
                "wgan-gp",
                None,
                NETWORKS,
                wgan_gp_step,
                trains=schedule,
                curriculum=False,
                lr_factors=decayed_rates(schedule),
            )
        ]

    @torch.no_grad()
    def generate(self, networks, num: int, length: int) -> np.ndarray:
        """(num, N * S, K * P) phrases; `length` is fixed by the networks and ignored."""
        return networks["generator"](num).float().cpu().numpy()
