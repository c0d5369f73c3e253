"""Every family's real training step against a bare hand-written step of the same model.

The C-RNN-GAN section (trainer_step.py) measures the trainer's overhead on the paper's
step; this does the same for the other families, each at its small preset (CPU-sized
networks; `quick`: the debug presets): musicgan's step is the real loop
(`Trainer.run_epochs`: reseeding, the phase's step function through the backend, the one
all-reduce, the backend's update with its gradient-norm check, the after-update hooks,
bookkeeping and logging) on one replayed batch; the bare step is the same networks (deep
copies, same weights) and the same losses written out in plain torch: forward, backward,
optimizer step, nothing else. The two alternate in one process (one bare step after each
trainer iteration, `trainer_step.run_trainer_steps`), medians after warm-up;
`ratio` = real / bare throughput = bare step time / real step time (target >= 0.95, the
C-RNN-GAN target). `test_bench.py` holds each bare step equal to the real one (same weights
after a step) so both sides do identical work.

Cases (what one step does; the unit its throughput is counted in):
  musegan-critic     a critic-only step (WGAN-GP, G without gradients); samples
  musegan-generator  a generator step, which also trains the critic (n_critic = 1); samples
  seqgan             G's policy-gradient step with its B x K x (T - 1) rollouts and D's step
                     (n_critic = 1, no pretraining); rollouts (completed sequences)
  spectral           one next-frame regression step; blocks (predicted frames, B x (T - 1))
  gansynth           a stable progressive stage (GANSYNTH_STAGE), G and D; images
  midinet            D's step and G's two updates on the same batch and z; samples (bars)
  jazzgan            a generator step + its critic step (WGAN-GP, n_critic = 1); samples
Inputs: a few real songs prepared under the suite's work folder (Bach chorales from music21,
generated melodies, their FluidSynth audio, single soundfont notes); the audio cases are
skipped (with the reason) where FluidSynth or its soundfont is missing.
"""

from __future__ import annotations

import copy
import tempfile
import time
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Callable

import torch
import torch.nn.functional as F

from musicgan import losses
from musicgan.benchmarks import dataset, trainer_step
from musicgan.benchmarks.timing import machine_load, median, summary, time_call
from musicgan.training.phases import follow, frozen_parameters

GANSYNTH_STAGE = 2  # 16x16 at gansynth-small: ~0.4 CPU s a step (32x32: ~1.4 s, BENCHMARKS.md)
NOTES = "soundfont:notes?programs=0&pitches=48-51&seconds=1&hold=0.75"  # 4 rendered notes
AUDIO_RATE = 8000  # the small and debug audio presets' rate


@dataclass
class BareNets:
    """Deep copies of every network of the trainer (same weights) and a fresh plain torch
    optimizer per trained network, built by the family's own factories (same settings)."""

    networks: dict[str, torch.nn.Module]
    optimizers: dict[str, torch.optim.Optimizer]


def bare_copies(trainer) -> BareNets:
    networks = {name: copy.deepcopy(trainer.backend.module(name)) for name in trainer.family.network_names}
    optimizers = {
        name: factory([p for p in networks[name].parameters() if p.requires_grad])
        for name, factory in trainer.family.optimizers().items()
    }
    return BareNets(networks, optimizers)


def apply_update(nets: BareNets, name: str, loss: torch.Tensor, clip: float) -> None:
    """zero_grad, backward, the configured clip (none at 0), optimizer step."""
    optimizer = nets.optimizers[name]
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    if clip > 0:
        torch.nn.utils.clip_grad_norm_(nets.networks[name].parameters(), clip)
    optimizer.step()


# -- the bare steps: the families' losses in plain torch ---------------------------------------------
def wgan_gp_critic_loss(critic, real: torch.Tensor, fake: torch.Tensor, gp_weight: float, drift: float) -> torch.Tensor:
    """mean D(fake) - mean D(real) + GP (+ drift): real, fake, x̂ through one critic forward."""
    x_hat = losses.interpolate(real, fake)
    real_scores, fake_scores, hat_scores = critic(torch.cat([real, fake, x_hat])).split(len(real))
    loss = losses.wasserstein_d(real_scores, fake_scores) + losses.gradient_penalty(hat_scores, x_hat, gp_weight)
    if drift > 0:
        loss = loss + losses.drift_penalty(real_scores, drift)
    return loss


def bare_musegan(nets: BareNets, batch, cfg, device: torch.device, trains_generator: bool) -> None:
    """The MuseGAN / WGAN-GP step: G's loss through the frozen critic on generator steps,
    the critic's at every step; updates G then the critic (the engine's order)."""
    generator, critic = nets.networks["generator"], nets.networks["critic"]
    real = batch.x.to(device).float()
    if trains_generator:
        fake = generator(len(real))
        with frozen_parameters(critic):
            g_loss = losses.wasserstein_g(critic(fake))
    else:
        with torch.no_grad():
            fake = generator(len(real))
    critic_loss = wgan_gp_critic_loss(critic, real, fake.detach(), cfg.train.gp_weight, cfg.train.drift_penalty)
    if trains_generator:
        apply_update(nets, "generator", g_loss, cfg.optim.grad_clip)
    apply_update(nets, "critic", critic_loss, cfg.optim.grad_clip)


def bare_seqgan(nets: BareNets, batch, cfg, device: torch.device) -> None:
    """SeqGAN's adversarial step with G and D: rewards of K rollouts per prefix (rollout copy,
    D in eval mode), G's policy gradient, D's cross-entropy (or least squares) on real vs
    fresh samples with the output-layer L2; then the rollout copy follows G."""
    from musicgan.training.families.seqgan import policy_gradient_loss, rewards

    g, d, rollout, m = nets.networks["generator"], nets.networks["discriminator"], nets.networks["rollout"], cfg.model
    real = batch.x.to(device)[..., 0].long()
    fake = g.sample(real.shape[0], real.shape[1])
    q = rewards(rollout, d, fake, m.seqgan_rollouts)
    g_loss = policy_gradient_loss(g(fake), q)
    negatives = g.sample(real.shape[0], real.shape[1])
    labels = torch.cat([torch.ones(len(real)), torch.zeros(len(negatives))]).to(device)
    scores = d(torch.cat([real, negatives]))
    if m.seqgan_d_loss == "lsgan":
        d_loss = F.mse_loss(scores, labels)
    else:
        d_loss = F.cross_entropy(scores, labels.long())
    d_loss = d_loss + m.seqgan_d_l2 * d.output_l2()
    apply_update(nets, "generator", g_loss, cfg.optim.grad_clip)
    apply_update(nets, "discriminator", d_loss, cfg.optim.grad_clip)
    follow(rollout, g, m.seqgan_rollout_update_rate, exact="embedding.")


def bare_spectral(nets: BareNets, batch, cfg, device: torch.device) -> None:
    """Next-frame MSE over valid steps (+ L2 on the dense weights), one update."""
    from musicgan.training.families.spectral import next_frame_loss

    net = nets.networks["generator"]
    frames, lengths = batch.x.to(device), batch.lengths.to(device)
    loss = next_frame_loss(net(frames), frames, lengths)
    if cfg.optim.l2 > 0:
        loss = loss + losses.l2_penalty(net.dense_parameters(), cfg.optim.l2)
    apply_update(nets, "generator", loss, cfg.optim.grad_clip)


def bare_gansynth(nets: BareNets, batch, cfg, device: torch.device, stage: int) -> None:
    """A stable stage of GANSynth: G's Wasserstein + auxiliary pitch CE through the frozen
    critic; the critic's Wasserstein + GP + drift + pitch CE on real; then the EMA."""
    from musicgan.models.gansynth import downscale
    from musicgan.training.families.gansynth import pitch_one_hot, to_image

    g, critic, t = nets.networks["generator"], nets.networks["discriminator"], cfg.train
    bins = batch.x.shape[2] // 2
    real = downscale(to_image(batch.x.to(device).float(), bins), stage, cfg.model.stages, 1.0)
    classes, one_hot = pitch_one_hot(batch.labels["pitch"].to(device), cfg)
    fake = g(torch.randn(len(real), cfg.model.latent_dim, device=device), one_hot, stage, 1.0)
    with frozen_parameters(critic):
        scores, logits = critic(fake, stage, 1.0)
        g_loss = losses.wasserstein_g(scores) + t.aux_weight * F.cross_entropy(logits, classes)
    x_hat = losses.interpolate(real, fake.detach())
    scores, logits = critic(torch.cat([real, fake.detach(), x_hat]), stage, 1.0)
    real_scores, fake_scores, hat_scores = scores.split(len(real))
    d_loss = (
        losses.wasserstein_d(real_scores, fake_scores)
        + losses.gradient_penalty(hat_scores, x_hat, t.gp_weight)
        + losses.drift_penalty(real_scores, t.drift_penalty)
        + t.aux_weight * F.cross_entropy(logits[: len(real)], classes)
    )
    apply_update(nets, "generator", g_loss, cfg.optim.grad_clip)
    apply_update(nets, "discriminator", d_loss, cfg.optim.grad_clip)
    follow(nets.networks["generator_ema"], g, cfg.model.ema_decay)


def bare_midinet(nets: BareNets, batch, cfg, device: torch.device) -> None:
    """MidiNet's step: G's BCE + feature matching (D's first convolution) + mean matching
    through the frozen D, D's smoothed BCE on [real ; fake] with split batch statistics;
    G updated twice on the same batch and z (the RNG state replayed, as the engine's
    reseed does), then D."""
    from musicgan.training.families.midinet import split_window, steps_per_bar

    g, d, t = nets.networks["generator"], nets.networks["discriminator"], cfg.train
    previous, real, chord = split_window(batch.x.to(device).float(), steps_per_bar(cfg))
    rng = torch.get_rng_state()

    def generator_loss() -> tuple[torch.Tensor, torch.Tensor]:
        fake = g(g.noise(real.shape[0]), chord, previous)
        with frozen_parameters(d):
            fake_logits, fake_features = d(fake, chord)
            real_features = d.features(real, chord).flatten(1).detach()
        adversarial = losses.generator_loss(fake_logits[:, None])
        feature_matching = losses.batch_mean_distance(real_features, fake_features)
        mean_matching = losses.batch_mean_distance(real.flatten(1), fake.flatten(1))
        return adversarial + t.feature_matching_weight * feature_matching + t.mean_matching_weight * mean_matching, fake

    g_loss, fake = generator_loss()
    logits, _ = d(torch.cat([real, fake.detach()]), torch.cat([chord, chord]), splits=2)
    real_logits, fake_logits = logits[:, None].chunk(2)
    d_loss, _ = losses.discriminator_loss(real_logits, fake_logits, label_smoothing=t.label_smoothing)
    apply_update(nets, "generator", g_loss, cfg.optim.grad_clip)
    torch.set_rng_state(rng)
    apply_update(nets, "generator", generator_loss()[0], cfg.optim.grad_clip)
    apply_update(nets, "discriminator", d_loss, cfg.optim.grad_clip)


def bare_jazzgan(nets: BareNets, batch, cfg, device: torch.device) -> None:
    """JazzGAN's WGAN-GP step with G: token fields one-hot (real) or softmax (fake), each
    with the same chords; G's -mean D(fake) through the frozen critic, the critic's
    Wasserstein + GP; updates G then the critic."""
    from musicgan.models.jazzgan import one_hot_tokens

    g, critic = nets.networks["generator"], nets.networks["critic"]
    x = batch.x.to(device).float()
    fields = len(g.vocab_sizes)
    chords = x[..., fields:]
    real = torch.cat([one_hot_tokens(x[..., :fields].round(), g.vocab_sizes), chords], dim=2)
    fake = torch.cat([g.distributions(g(chords), 0.0), chords], dim=2)
    with frozen_parameters(critic):
        g_loss = losses.wasserstein_g(critic(fake))
    critic_loss = wgan_gp_critic_loss(critic, real, fake.detach(), cfg.train.gp_weight, 0.0)
    apply_update(nets, "generator", g_loss, cfg.optim.grad_clip)
    apply_update(nets, "critic", critic_loss, cfg.optim.grad_clip)


# -- the cases --------------------------------------------------------------------------------------
@dataclass(frozen=True)
class FamilyCase:
    key: str
    what: str  # one line: what a step does
    preset: str  # the small preset (full mode)
    debug_preset: str  # quick mode
    overrides: tuple[str, ...]  # make every timed step the step named in `what`
    corpus: str  # a key of CORPORA
    unit: str
    units_per_step: Callable  # cfg -> units of work one step does
    bare_step: Callable  # (BareNets, batch, cfg, device) -> None
    epoch: Callable = lambda cfg: 0  # the epoch whose phase is timed (GANSynth: its stage)


def gansynth_stage(cfg) -> int:
    return min(GANSYNTH_STAGE, cfg.model.stages - 1)


def _gansynth_bare(nets, batch, cfg, device) -> None:
    bare_gansynth(nets, batch, cfg, device, gansynth_stage(cfg))


def _batch(cfg) -> int:
    return cfg.data.batch_size


def _rollouts(cfg) -> int:
    return cfg.data.batch_size * cfg.model.seqgan_rollouts * (cfg.curriculum.max_len - 1)


def _blocks(cfg) -> int:
    return cfg.data.batch_size * (cfg.curriculum.max_len - 1)


NO_CRITIC_WARMUP = ("train.critic_warmup=0", "train.critic_warmup_g_steps=0", "train.critic_warmup_every=0")
CASES = (
    FamilyCase(
        "musegan-critic",
        "critic step (WGAN-GP), G without gradients",
        "musegan-chorales",
        "musegan-debug",
        NO_CRITIC_WARMUP + ("train.n_critic=1000000000",),
        "chorales",
        "samples",
        _batch,
        partial(bare_musegan, trains_generator=False),
    ),
    FamilyCase(
        "musegan-generator",
        "generator step + its critic step (n_critic 1)",
        "musegan-chorales",
        "musegan-debug",
        NO_CRITIC_WARMUP + ("train.n_critic=1",),
        "chorales",
        "samples",
        _batch,
        partial(bare_musegan, trains_generator=True),
    ),
    FamilyCase(
        "seqgan",
        "adversarial step: G with B x K x (T - 1) rollouts, then D (n_critic 1)",
        "seqgan-folk",
        "seqgan-debug",
        # Batch 8, not the preset's 64: D scoring 64 x 16 x 31 rollouts through the paper's
        # CNN took over 15 CPU s a step here (BENCHMARKS.md); 8 keeps K, T and the networks.
        ("train.pretrain_epochs=0", "train.pretrain_d_epochs=0", "train.n_critic=1", "data.batch_size=8"),
        "melodies",
        "rollouts",
        _rollouts,
        bare_seqgan,
    ),
    FamilyCase(
        "spectral",
        "next-frame regression step (bilinear, RMSprop)",
        "spectral-chorales",
        "spectral-debug",
        (),
        "song_audio",
        "blocks",
        _blocks,
        bare_spectral,
    ),
    FamilyCase(
        "gansynth",
        "a stable progressive stage (the phase named in the table), G and D",
        "gansynth-small",
        "gansynth-debug",
        ("train.stage_epochs=1",),  # stable stage s is then epoch 2 s
        "notes",
        "images",
        _batch,
        _gansynth_bare,
        epoch=lambda cfg: 2 * gansynth_stage(cfg),
    ),
    FamilyCase(
        "midinet",
        "D step and G's two updates on the batch",
        "midinet-chorales",
        "midinet-debug",
        (),
        "chorales",
        "samples",
        _batch,
        bare_midinet,
    ),
    FamilyCase(
        "jazzgan",
        "generator step + its critic step (WGAN-GP, n_critic 1)",
        "jazzgan-chorales",
        "jazzgan-debug",
        ("train.n_critic=1", "model.jazzgan_objective=wgan-gp"),
        "chorales",
        "samples",
        _batch,
        bare_jazzgan,
    ),
)


def case_config(case: FamilyCase, data_dir: str, quick: bool):
    from musicgan.config import apply_overrides, validate
    from musicgan.presets import get_preset

    cfg = get_preset(case.debug_preset if quick else case.preset)
    cfg.data.path = str(data_dir)
    return validate(apply_overrides(cfg, list(case.overrides)))


# -- inputs -----------------------------------------------------------------------------------------
def _prepare(spec: str, out: Path, **options) -> Path:
    from musicgan.data.prepare import prepare_dataset

    prepare_dataset(spec, out, workers=1, ratios=(1.0, 0.0, 0.0), progress=False, **options)
    return out


def prepare_corpus(name: str, root: Path) -> Path:
    """Shards of one case's input under `root` (made once per name and suite run)."""
    out = root / name
    if (out / "manifest.json").is_file():
        return out
    if name == "chorales":
        return _prepare("music21:bach", out, limit=8)
    if name == "melodies":
        return _prepare(str(dataset.write_midi_folder(root / "melody-midi", 8)), out)
    if name == "song_audio":
        midi = dataset.write_midi_folder(root / "audio-midi", 2, num_onsets=80)  # ~20 s of music each
        return _prepare(str(midi), out, audio_rate=AUDIO_RATE)
    if name == "notes":
        return _prepare(NOTES, out, audio_rate=AUDIO_RATE)
    raise KeyError(name)


def missing_input(case: FamilyCase) -> str | None:
    """Why a case cannot run here (None: it can)."""
    if case.corpus in ("song_audio", "notes"):
        from musicgan.audio import find_soundfont

        if find_soundfont() is None:
            return "needs FluidSynth and a GM soundfont to render its audio"
    return None


# -- timing -----------------------------------------------------------------------------------------
def start_trainer(case: FamilyCase, data_dir: Path, run_dir: Path, quick: bool):
    """A real Trainer of the case at its timed phase, the batch it replays, and bare copies."""
    from musicgan.distributed.env import init_distributed

    cfg = case_config(case, str(data_dir), quick)
    trainer = trainer_step.build_trainer(cfg, run_dir, init_distributed(cfg.dist.timeout_s))
    trainer.state.epoch = case.epoch(cfg)
    batch = trainer_step.first_batch(trainer, cfg.curriculum.max_len)
    return trainer, batch, bare_copies(trainer)


def bench_case(case: FamilyCase, data_dir: Path, run_dir: Path, *, quick: bool, warmup: int, repeats: int) -> dict:
    """Trainer and bare step alternated, `warmup` + `repeats` of each; medians of the repeats."""
    from musicgan.training.phases import phase_for_epoch

    trainer, batch, nets = start_trainer(case, data_dir, run_dir, quick)
    cfg, device = trainer.cfg, trainer.env.device
    phase = phase_for_epoch(trainer.phases, trainer.state.epoch)[0].name
    try:
        bare_wall: list[float] = []
        bare_cpu: list[float] = []

        def between() -> None:
            cpu_start = time.process_time()
            bare_wall.append(time_call(lambda: case.bare_step(nets, batch, cfg, device), device))
            bare_cpu.append(time.process_time() - cpu_start)

        wall, cpu = trainer_step.run_trainer_steps(trainer, batch, warmup + repeats + 1, between=between)
        real_s, bare_s = median(wall[warmup:]), median(bare_wall[warmup:])
        units = case.units_per_step(cfg)
        return {
            "what": case.what,
            "preset": case.debug_preset if quick else case.preset,
            "overrides": list(case.overrides),
            "phase": phase,
            "unit": case.unit,
            "units_per_step": units,
            "batch_size": cfg.data.batch_size,
            "seq_len": cfg.curriculum.max_len,
            "parameters": {
                name: sum(p.numel() for p in trainer.backend.module(name).parameters())
                for name in trainer.family.learning_rates()
            },
            "real_step_s": real_s,
            "bare_step_s": bare_s,
            "real_per_s": units / real_s,
            "bare_per_s": units / bare_s,
            "ratio": bare_s / real_s,
            "real_step": summary(wall[warmup:]),
            "bare_step": summary(bare_wall[warmup:]),
            # The same ratio from process CPU time: with one thread, steadier than wall time
            # when other jobs share the cores.
            "real_step_cpu_s": median(cpu[warmup:]),
            "bare_step_cpu_s": median(bare_cpu[warmup:]),
            "ratio_cpu_time": median(bare_cpu[warmup:]) / median(cpu[warmup:]),
        }
    finally:
        trainer.logger.close()
        trainer.backend.close()


def bench_families(
    root: Path | None = None,
    *,
    quick: bool = False,
    warmup: int = 3,
    repeats: int = 9,
    only: tuple[str, ...] = (),
    after_case: Callable[[dict], None] | None = None,
) -> dict:
    """Every case (or those named in `only`), each in its own trainer; inputs under `root`;
    `after_case(results so far)` after each (a long run keeps what it measured)."""
    root = Path(root) if root else Path(tempfile.mkdtemp(prefix="musicgan-bench-families-"))
    results: dict = {"mode": "quick" if quick else "full", "threads": torch.get_num_threads(), "cases": {}}
    results["load_average_start"] = machine_load()
    for case in CASES:
        if only and case.key not in only:
            continue
        reason = missing_input(case)
        if reason:
            results["cases"][case.key] = {"skipped": reason}
            continue
        data_dir = prepare_corpus(case.corpus, root / "inputs")
        results["cases"][case.key] = bench_case(
            case, data_dir, root / "runs" / case.key, quick=quick, warmup=warmup, repeats=repeats
        )
        if after_case is not None:
            after_case(results)
    results["load_average_end"] = machine_load()
    return results


def markdown_table(results: dict) -> str:
    lines = [
        "| Family step | real (musicgan) | bare (plain torch) | ratio real / bare | unit | size |",
        "|---|---|---|---|---|---|",
    ]
    for key, r in results["cases"].items():
        if "skipped" in r:
            lines.append(f"| {key} | skipped: {r['skipped']} | | | | |")
            continue
        params = ", ".join(f"{name} {_count(n)}" for name, n in r["parameters"].items())
        lines.append(
            f"| {key}: {r['what']} | {r['real_per_s']:.4g} /s ({1e3 * r['real_step_s']:.1f} ms) | "
            f"{r['bare_per_s']:.4g} /s ({1e3 * r['bare_step_s']:.1f} ms) | {r['ratio']:.3f} "
            f"(CPU time {r.get('ratio_cpu_time', float('nan')):.3f}) | {r['unit']} | "
            f"{r['preset']} (phase {r['phase']}), batch {r['batch_size']}, length {r['seq_len']}; {params} |"
        )
    return "\n".join(lines)


def _count(parameters: int) -> str:
    return f"{parameters / 1e6:.2f}M" if parameters >= 100_000 else f"{parameters / 1e3:.1f}k"


if __name__ == "__main__":  # python -m musicgan.benchmarks.families [quick] [--out=FILE] [case ...]
    import json
    import sys

    args = sys.argv[1:]
    out = next((a.split("=", 1)[1] for a in args if a.startswith("--out=")), None)
    names = tuple(a for a in args if a != "quick" and not a.startswith("--out="))

    def save(results: dict) -> None:
        if out:
            Path(out).write_text(json.dumps(results, indent=2) + "\n")

    found = bench_families(quick="quick" in args, only=names, after_case=save)
    save(found)
    print(markdown_table(found))
