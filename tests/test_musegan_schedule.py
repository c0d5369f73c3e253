"""MuseGAN's critic schedule (n_critic, warm-up runs) and learning-rate decay, as pure
functions of the step counter."""

from __future__ import annotations

import pytest

from musicgan.errors import ConfigError
from musicgan.training.families.musegan import CriticSchedule, linear_decay


def _generator_steps(schedule, num_steps):
    return [step for step in range(num_steps) if "generator" in schedule(step)]


def test_five_critic_steps_per_generator_step():
    schedule = CriticSchedule(5)
    assert _generator_steps(schedule, 20) == [4, 9, 14, 19]
    assert all("critic" in schedule(step) for step in range(20))


def test_v3_warm_up_then_five():
    # The v3 code: 50 critic steps for each of the first 10 generator steps.
    schedule = CriticSchedule(5, warmup_critic=50, warmup_g_steps=10)
    steps = _generator_steps(schedule, 540)
    assert steps[:10] == [50 * (j + 1) - 1 for j in range(10)]
    assert steps[10:] == [504, 509, 514, 519, 524, 529, 534, 539]


def test_paper_warm_up_repeats_every_500th_generator_step():
    schedule = CriticSchedule(5, warmup_critic=100, warmup_g_steps=25, warmup_every=500)
    assert [schedule.run_length(j) for j in (0, 24, 25, 499, 500, 501, 1000)] == [100, 100, 5, 5, 100, 5, 100]
    # Generator step 500 ends 25 runs of 100 + 475 runs of 5 + its own 100 steps later.
    assert _generator_steps(schedule, 2500 + 2375 + 100)[500] == 2500 + 2375 + 100 - 1


def test_the_answer_depends_on_the_step_only_in_any_query_order():
    # Resume in the middle of a critic run: a fresh schedule asked about late steps first
    # answers exactly as one that walked from step 0.
    walked = CriticSchedule(5, warmup_critic=50, warmup_g_steps=10)
    expected = [walked(step) for step in range(700)]
    fresh = CriticSchedule(5, warmup_critic=50, warmup_g_steps=10)
    assert [fresh(step) for step in reversed(range(700))][::-1] == expected
    assert fresh.generator_steps_before(700) == sum("generator" in names for names in expected) == 10 + 40


def test_bad_schedules_are_config_errors():
    with pytest.raises(ConfigError, match="n_critic >= 1"):
        CriticSchedule(0)


def test_linear_decay_to_zero_between_the_given_generator_steps():
    assert [linear_decay(g, 45_000, 50_000) for g in (0, 45_000, 47_500, 50_000, 60_000)] == [1.0, 1.0, 0.5, 0.0, 0.0]
    assert linear_decay(10**6, 0, 0) == 1.0  # disabled
