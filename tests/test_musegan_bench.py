"""The MuseGAN speed benchmark runs end to end at the small size (one repeat, batch 2) and
its ATen variant holds the same weights; the bar-order probe's phrase edits."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from musicgan.benchmarks.musegan import SIZES, bench_musegan, plain_aten
from musicgan.benchmarks.musegan_bar_order import first_bar_repeated, shuffled_bars
from musicgan.models.musegan import PatchConv3d, build_musegan

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def test_small_size_reports_both_variants_and_samples_per_second():
    result = bench_musegan("small", "composer", threads=1, repeats=1, warmup=0, batch_size=2)
    for variant in ("patch", "aten"):
        assert result[variant]["critic_cpu_s"] > 0 and result[variant]["samples_per_cpu_s"] > 0
    assert result["speedup_cycle_cpu_time"] > 0
    assert result["settings"]["phrase"] == [4, 4, 48, 48] and result["settings"]["batch_size"] == 2


def test_plain_aten_copy_computes_the_same_critic():
    arch, geometry, _ = SIZES["small"]
    torch.manual_seed(0)
    _, critic = build_musegan(geometry, arch, "hybrid")
    aten = plain_aten(critic)
    assert not any(type(m) is PatchConv3d for m in aten.modules())
    x = torch.rand(2, *geometry.phrase_shape) * 2 - 1
    torch.testing.assert_close(aten(x), critic(x), rtol=1e-4, atol=1e-5)


def test_bar_order_probe_reorders_whole_bars_and_repeats_the_first():
    bar, bars = 3, 4
    windows = np.arange(5 * bar * bars * 2, dtype=np.float32).reshape(5, bar * bars, 2)
    shuffled = shuffled_bars(windows, bar, np.random.default_rng(0))
    as_bars = lambda w: w.reshape(5, bars, bar, 2)  # noqa: E731
    for phrase, original in zip(as_bars(shuffled), as_bars(windows)):
        assert sorted(map(bytes, phrase)) == sorted(map(bytes, original))  # the same bars
        assert not np.array_equal(phrase, original)  # never the identity order
    repeated = as_bars(first_bar_repeated(windows, bar))
    assert all(np.array_equal(repeated[:, i], as_bars(windows)[:, 0]) for i in range(bars))
