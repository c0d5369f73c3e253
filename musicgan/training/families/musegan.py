"""MuseGAN (Dong et al. 2018) training schedule: WGAN-GP critic runs and learning-rate decay.

Both the paper and the authors' v3 code train the critic `n_critic` times per generator
step (5), with longer critic runs early on: the paper 100 critic steps for each of the first
25 generator steps and for every 500th; the v3 code 50 for each of the first 10. The v3 code
also decays both learning rates linearly to 0 over generator steps 45,000-50,000.

Everything here is a pure function of the trainer's step counter, so every rank and every
resume (also one in the middle of a critic run) agree on who trains when.
"""

from __future__ import annotations

import bisect

from musicgan.errors import ConfigError


class CriticSchedule:
    """`trains(step)`: the critic trains at every step; the generator on the last step of
    each critic run, whose length is `warmup_critic` for the first `warmup_g_steps` generator
    steps and for every `warmup_every`-th (0: never), else `n_critic`."""

    def __init__(self, n_critic: int = 5, warmup_critic: int = 0, warmup_g_steps: int = 0, warmup_every: int = 0,
                 generator: str = "generator", critic: str = "critic") -> None:
        if n_critic < 1 or warmup_critic < 0 or warmup_g_steps < 0 or warmup_every < 0:
            raise ConfigError(f"critic schedule needs n_critic >= 1 and non-negative warm-up values "
                              f"(got {n_critic}, {warmup_critic}, {warmup_g_steps}, {warmup_every})")
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
