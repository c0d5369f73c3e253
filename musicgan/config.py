"""One typed config tree (dataclasses), its validation and `--set a.b=value` overrides.

The same object flows from the CLI (or Ray Tune, or a test) into the training loop; the
resolved tree is saved as `config.json` in every run directory and inside every checkpoint.
Presets (`presets.py`) are code that build on each other and return a `Config`.
"""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, get_type_hints

from musicgan.errors import ConfigError
from musicgan.model_names import FAMILY_MODULES


@dataclass(frozen=True)
class Range:
    """The valid values of one numeric field. NaN and infinity are never valid (they pass
    every comparison-free check and then poison a run), so every range is finite."""

    low: float | None = None
    high: float | None = None
    low_open: bool = False
    high_open: bool = False

    def admits(self, value: float) -> bool:
        if not math.isfinite(value):
            return False
        above = self.low is None or (value > self.low if self.low_open else value >= self.low)
        below = self.high is None or (value < self.high if self.high_open else value <= self.high)
        return above and below

    def describe(self) -> str:
        if self.low is not None and self.high is not None:
            return f"in {'(' if self.low_open else '['}{self.low:g}, {self.high:g}{')' if self.high_open else ']'}"
        if self.low is not None:
            return f"{'>' if self.low_open else '>='} {self.low:g}"
        return f"{'<' if self.high_open else '<='} {self.high:g}" if self.high is not None else "finite"


def _ranged(default, valid: Range):
    return field(default=default, metadata={"range": valid})


def positive(default):
    """A field whose value must be > 0."""
    return _ranged(default, Range(0, low_open=True))


def non_negative(default):
    """A field whose value must be >= 0."""
    return _ranged(default, Range(0))


def fraction(default):
    """A field in [0, 1): dropout rates, label smoothing, momentum and Adam's betas."""
    return _ranged(default, Range(0, 1, high_open=True))


def between(default, low: float, high: float, *, low_open: bool = False):
    """A field in [low, high] (or (low, high] with low_open)."""
    return _ranged(default, Range(low, high, low_open=low_open))


@dataclass
class DataConfig:
    path: str = ""  # shard directory (manifest.json + {train,valid,test}-*.tar); set by --data
    representation: str = "events"  # any registered representation (events, pianoroll, tokens, fft_blocks, ...)
    # melody_chord_events (model.name=jazzgan): timestep | duration | end_position | interval
    rhythm_encoding: str = "end_position"
    # jazzgan: > 0 sets the window to this many bars, whatever rows a bar has in the chosen
    # rhythm encoding (curriculum.start and max_len are derived; 0: curriculum.max_len rows)
    window_bars: int = non_negative(0)
    tones_per_step: int = positive(1)  # K of C-RNN-GAN-K (events only)
    pitch_unit: str = "midi"  # midi | hz (events only; hz as in the reference)
    time_unit: str = "seconds"  # seconds | ticks (384 per quarter, the reference's compat mode)
    frames_per_beat: int = positive(1)  # piano roll resolution (quarter-note frames for chorales)
    transpose: str = "none"  # none | c (C major / C minor, the RNN-RBM protocol)
    # multitrack (MuseGAN): track grouping, pitch rows and random transposition per window.
    track_grouping: str = "parts"  # parts (chorales: S, A, T, B) | lpd5 (drums, piano, guitar, bass, strings)
    lowest_pitch: int = between(24, 0, 127)  # MIDI number of pitch row 0
    num_pitches: int = between(84, 1, 128)
    transpose_range: str = ""  # "low,high" semitones drawn per window (MuseGAN: -5,6); "" none
    batch_size: int = positive(20)  # per rank (per micro step)
    num_workers: int = non_negative(0)  # loader worker processes per rank
    # Audio representations (fft_blocks, specgram_if) read these; prepare with --audio-rate HZ.
    audio_rate: int = positive(16000)  # Hz of the rendered audio the representation expects
    # specgram_if (model.name=gansynth): STFT size and hop, mel frequency axis or linear.
    n_fft: int = positive(2048)
    hop: int = positive(512)
    mel: bool = False
    block_size: int = positive(4000)  # fft_blocks: samples per block (0.25 s at 16 kHz)
    spectrum: str = "full"  # fft_blocks: full (2N values, the faithful layout) | rfft (N + 2)
    overlap: bool = False  # fft_blocks: Hann 50 % overlap-add instead of blocks (no block clicks)


@dataclass
class ModelConfig:
    # a family of musicgan/model_names.py: crnngan | mle | rnnrbm | lstmrbm | note-lstm | note-mlpgan |
    # wgan-gp | seqgan | gansynth | jazzgan | spectral-lstm
    name: str = "crnngan"
    g_hidden: int = positive(350)
    g_layers: int = positive(2)
    g_dropout: float = fraction(0.5)
    d_hidden: int = positive(350)
    d_layers: int = positive(2)
    d_dropout: float = fraction(0.5)
    d_layout: str = "separate"  # separate (reference: one stack per direction) | interleaved (torch)
    # C-RNN-GAN / MLE sampling with the generator's dropout active (the reference does; the
    # generator learns to ignore its noise, so eval-mode samples collapse to a few pitches).
    sample_dropout: bool = True
    # C-RNN-GAN's adversarial step: G's loss from D's one forward on [real, fake] (true; D's
    # dropout on the fakes is then one draw for both losses) or from a second, frozen D
    # forward on the fakes (false: how the README's C-RNN-GAN results were measured).
    # docs/training-engine.md, "C-RNN-GAN's shared discriminator forward".
    crnngan_shared_d_forward: bool = True
    # C-RNN-GAN's and MidiNet's D: minibatch discrimination (Salimans et al. 2016) on its
    # time-pooled (C-RNN-GAN) or dense (MidiNet) features, this many kernels of
    # minibatch_kernel_dim rows each (0: off). Real and fake rows of D's one forward are
    # compared only within their own half. models/minibatch.py.
    minibatch_features: int = non_negative(0)
    minibatch_kernel_dim: int = positive(5)
    # Families beyond C-RNN-GAN (RBMs, discrete notes) read these.
    rbm_hidden: int = positive(150)
    gibbs_steps: int = positive(15)  # k of CD-k during training
    sample_gibbs_steps: int = positive(25)  # the RNN-RBM Theano reference code generates with k = 25
    rbm_generation: str = "sample"  # sample (Gibbs) | top1 (LSTM-RBM write-up: most probable key per frame)
    latent_dim: int = positive(1000)  # MLP-GAN latent size
    embedding_dim: int = positive(64)
    bidirectional: bool = False
    # spectral-lstm (audio frames): architecture, dense-layer and LSTM dropout, kblock's K,
    # conv's optional projection to g_hidden before the LSTM (0: none, the seed's layout).
    spectral_arch: str = "baseline"  # baseline | fc | conv | stacked | bilinear | kblock
    spectral_dropout: float = fraction(0.2)
    spectral_lstm_dropout: float = fraction(0.5)
    spectral_kblock: int = positive(3)
    spectral_conv_project: bool = False
    ema_decay: float = fraction(0.999)  # WGAN-GP: the sampled generator is an EMA of the trained one
    # GANSynth (model.name=gansynth): the first stage's image (frames x bins), doubled on both
    # axes per stage up to the representation's size; filters per block min(4096/2^block, cap);
    # pitch classes min_pitch .. min_pitch + num_pitches - 1 (one-hot into G, D's pitch head).
    start_frames: int = positive(4)
    start_bins: int = positive(4)
    stages: int = positive(6)
    filter_cap: int = positive(64)
    min_pitch: int = between(24, 0, 127)
    num_pitches: int = between(61, 1, 128)
    # input (the reference: the one-hot beside z at G's input) | blocks (also a learned pitch
    # bias at every conv of G: models/gansynth.py).
    pitch_conditioning: str = "input"
    # MidiNet: convolution widths (dense widths are g_hidden / d_hidden) and how it samples:
    # first bar (zeros | real: a held-out song's), per-step decode (threshold | argmax),
    # batch norm at sampling (running statistics | batch: the reference's training mode).
    midinet_g_channels: int = positive(128)
    midinet_d_channels: int = positive(77)
    midinet_prime: str = "zeros"
    midinet_decode: str = "argmax"  # a step's highest pitch (the PyTorch port's); threshold: only above 0.5
    midinet_sample_bn: str = "running"
    musegan_mode: str = "hybrid"  # MuseGAN latents: jamming | composer | hybrid
    musegan_arch: str = "v3"  # MuseGAN networks: v3 (compact 3-D convs) | paper (v1 bar generators)
    musegan_width_scale: float = positive(1.0)  # every MuseGAN layer width times this (small config: 0.25)
    # v3 G's share of cells on at init (its last batch norm's shift; 0.5 = torch's default shift 0)
    musegan_initial_on_share: float = between(0.02, 0.0, 0.5, low_open=True)
    # SeqGAN (model.name=seqgan; training/families/seqgan.py): D objective, K rollouts per
    # prefix, the rollout copy's delay (0 = an exact copy of G), D's embedding, filter table
    # and L2 weight on its output layer.
    seqgan_d_loss: str = "ce"  # ce (2-way softmax) | lsgan (least-squares score; reward sigmoid(score))
    seqgan_rollouts: int = positive(16)
    seqgan_rollout_update_rate: float = fraction(0.8)
    seqgan_d_embedding: int = positive(64)
    seqgan_d_filters: str = "seqgan"  # seqgan | polyphonic | tiny (models/seqgan.py FILTER_TABLES)
    seqgan_d_l2: float = non_negative(0.2)
    # G's learning rate in the adversarial phase as a factor on optim.g_lr (SeqGAN's reference
    # keeps its rate: 1; Polyphonic SeqGAN multiplies its 1e-3 by 10 there).
    seqgan_adversarial_lr_factor: float = positive(1.0)
    # What G's policy gradient subtracts from each reward Q(b, t): none (the paper's estimator:
    # every sampled token is pushed up, the more the higher its Q) | batch_mean (the mean Q at
    # position t over the rank's batch: only tokens better than the batch's are pushed up).
    seqgan_reward_baseline: str = "none"
    seqgan_oracle_vocab: int = between(500, 2, 1_000_000)  # `musicgan oracle`: the oracle LSTM's vocabulary
    seqgan_oracle_samples: int = positive(10_000)  # its training set, and the samples each score averages
    # JazzGAN: how the critic sees generated tokens. wgan-gp: softmax rows, WGAN-GP loss;
    # gumbel: Gumbel-softmax rows (temperature gumbel_tau), the standard GAN loss.
    jazzgan_objective: str = "wgan-gp"
    gumbel_tau: float = positive(1.0)
    # JazzGAN sampling: each token field drawn from softmax(logits / sample_temperature)
    # (sample, seeded by `musicgan sample --seed`) or its most probable token (argmax).
    jazzgan_decode: str = "sample"
    sample_temperature: float = positive(1.0)


@dataclass
class OptimConfig:
    optimizer: str = "sgd"  # sgd | adam | rmsprop
    g_lr: float = non_negative(0.1)
    d_lr: float = non_negative(0.05)  # the reference's D uses half of G's rate
    momentum: float = fraction(0.0)
    beta1: float = fraction(0.9)
    beta2: float = fraction(0.999)
    l2: float = non_negative(0.1)  # L2 penalty scale: l2 * sum(w^2) / 2 added to every loss (the paper)
    grad_clip: float = non_negative(5.0)  # global-norm clipping; 0 disables
    # Linear decay of both learning rates to 0 between these generator steps (MuseGAN v3:
    # 45,000 -> 50,000); equal values: no decay.
    lr_decay_start: int = non_negative(0)
    lr_decay_end: int = non_negative(0)


@dataclass
class CurriculumConfig:
    """seq_len(epoch) = min(start + growth * epoch, max_len); the paper: 4, 4, 100."""

    start: int = positive(4)
    growth: int = non_negative(4)
    max_len: int = positive(100)
    continue_adversarial: bool = True  # keep growing in the adversarial phase (else: max_len there)


@dataclass
class TrainConfig:
    seed: int = non_negative(0)
    epochs: int = non_negative(100)  # total, pretraining included
    pretrain_epochs: int = non_negative(6)
    pretrain_d_epochs: int = non_negative(0)  # SeqGAN: D-only epochs after the MLE pretraining
    max_steps: int = non_negative(0)  # stop after this many optimizer steps (0: run all epochs)
    max_minutes: float = non_negative(0.0)  # wall-clock budget of this invocation; the run then ends normally (0: none)
    freeze_d_threshold: float = non_negative(0.7)  # D skips its update while d_loss < θ_D * g_loss (0: never)
    freeze_g_threshold: float = non_negative(0.7)  # G skips its update while g_loss < θ_G * d_loss (0: never)
    feature_matching: bool = True
    feature_matching_mode: str = "batch_mean"  # batch_mean (Salimans) | paired (the reference)
    label_smoothing: float = fraction(0.0)  # one-sided: real target 1 - s
    # C-RNN-GAN and MidiNet: std of Gaussian noise on D's inputs (real and fake, in the
    # representation's normalised units), annealed linearly to 0 over the run: std x (1 - progress) (0: off).
    instance_noise: float = non_negative(0.0)
    nonfinite: str = "stop"  # stop | skip | rollback  (what a NaN/inf loss does)
    rollback_lr_factor: float = between(0.5, 0, 1, low_open=True)  # rollback: learning rates multiplied by this
    max_grad_norm: float = positive(1e6)  # a gradient norm above this counts as divergence
    # WGAN-GP (model.name=wgan-gp): critic steps per generator step, penalty weight λ, drift ε.
    n_critic: int = positive(5)  # also SeqGAN's D minibatches per G update in its adversarial phase
    gp_weight: float = non_negative(10.0)
    drift_penalty: float = non_negative(0.0)
    # GANSynth: epochs of each stable and each fade-in stage; auxiliary pitch cross-entropy weight.
    stage_epochs: int = positive(20)
    aux_weight: float = non_negative(10.0)
    # GANSynth: D's pitch head also learns the fakes' conditioning pitches (AC-GAN's D loss);
    # false: real notes only, as GANSynth's reference, which leaves the head arbitrary on fakes.
    aux_on_fakes: bool = False
    # MidiNet: weights of feature matching (D's first convolution) and mean matching in G's loss.
    feature_matching_weight: float = non_negative(0.1)
    mean_matching_weight: float = non_negative(0.01)
    # Longer critic runs (MuseGAN): `critic_warmup` critic steps per generator step for the
    # first `critic_warmup_g_steps` generator steps and every `critic_warmup_every`-th (0: never).
    critic_warmup: int = non_negative(0)
    critic_warmup_g_steps: int = non_negative(0)
    critic_warmup_every: int = non_negative(0)


@dataclass
class DistConfig:
    backend: str = "ddp"  # ddp | deepspeed
    zero_stage: int = between(0, 0, 2)  # deepspeed only: 0 | 1 | 2
    grad_accum: int = positive(1)  # gradient accumulation (both backends): optimizers step every N trainer steps
    precision: str = "fp32"  # fp32 | bf16 (bf16 where supported)
    timeout_s: float = positive(600.0)  # collective timeout: a dead or stalled rank becomes an error


@dataclass
class LogConfig:
    interval: int = positive(10)  # steps between scalar logs
    checkpoint_every: int = non_negative(0)  # steps between checkpoints (0: at every epoch end)
    keep: int = positive(3)  # checkpoints kept
    sample_every: int = non_negative(1)  # epochs between sample/metric rounds (0: only at the end)
    num_samples: int = non_negative(8)  # MIDI samples written per round
    metric_samples: int = non_negative(32)  # generated songs scored per round
    metric_songs: int = non_negative(64)  # real valid songs scored once
    tensorboard: bool = True
    progress: bool = True


@dataclass
class Config:
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    curriculum: CurriculumConfig = field(default_factory=CurriculumConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    dist: DistConfig = field(default_factory=DistConfig)
    log: LogConfig = field(default_factory=LogConfig)
    preset: str = ""

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)


CHOICES = {
    "data.track_grouping": ("parts", "lpd5"),
    "model.musegan_mode": ("jamming", "composer", "hybrid"),
    "model.musegan_arch": ("v3", "paper"),
    "data.rhythm_encoding": ("timestep", "duration", "end_position", "interval"),
    "model.jazzgan_objective": ("wgan-gp", "gumbel"),
    "model.jazzgan_decode": ("sample", "argmax"),
    "data.spectrum": ("full", "rfft"),
    "data.pitch_unit": ("midi", "hz"),
    "data.time_unit": ("seconds", "ticks"),
    "data.transpose": ("none", "c"),
    "model.d_layout": ("separate", "interleaved"),
    "model.rbm_generation": ("sample", "top1"),
    "model.seqgan_d_loss": ("ce", "lsgan"),
    "model.seqgan_d_filters": ("seqgan", "polyphonic", "tiny"),
    "model.seqgan_reward_baseline": ("none", "batch_mean"),
    "model.pitch_conditioning": ("input", "blocks"),
    "model.midinet_prime": ("zeros", "real"),
    "model.midinet_decode": ("threshold", "argmax"),
    "model.midinet_sample_bn": ("running", "batch"),
    "optim.optimizer": ("sgd", "adam", "rmsprop"),
    "train.feature_matching_mode": ("batch_mean", "paired"),
    "train.nonfinite": ("stop", "skip", "rollback"),
    "dist.backend": ("ddp", "deepspeed"),
    "dist.zero_stage": (0, 1, 2),
    "dist.precision": ("fp32", "bf16"),
}


def _sections(cfg: Config) -> dict[str, Any]:
    return {
        f.name: getattr(cfg, f.name) for f in dataclasses.fields(cfg) if dataclasses.is_dataclass(getattr(cfg, f.name))
    }


def numeric_fields(cfg: Config):
    """(key, Range, value) of every field that declares a valid range (all numeric ones)."""
    for section_name, section in _sections(cfg).items():
        for item in dataclasses.fields(section):
            if "range" in item.metadata:
                yield f"{section_name}.{item.name}", item.metadata["range"], getattr(section, item.name)


def get_value(cfg: Config, key: str) -> Any:
    section, _, name = key.partition(".")
    return getattr(getattr(cfg, section), name)


def _coerce(key: str, raw: Any, typ: type) -> Any:
    """Convert a `--set` string (or a JSON value) to the field's declared type."""
    if typ is bool:
        if isinstance(raw, bool):
            return raw
        text = str(raw).strip().lower()
        if text in ("1", "true", "yes", "on"):
            return True
        if text in ("0", "false", "no", "off"):
            return False
        raise ConfigError(f"{key}: expected true/false, got {raw!r}")
    if isinstance(raw, bool) and typ in (int, float):
        raise ConfigError(f"{key}: expected {typ.__name__}, got {raw!r}")
    try:
        if typ is int:
            if isinstance(raw, float) and not raw.is_integer():
                raise ValueError
            return int(str(raw)) if not isinstance(raw, (int, float)) else int(raw)
        if typ is float:
            return float(raw)
        return str(raw)
    except (TypeError, ValueError):
        raise ConfigError(f"{key}: expected {typ.__name__}, got {raw!r}") from None


def set_value(cfg: Config, key: str, raw: Any) -> None:
    """Set `section.name` from a string or JSON value, with a clear error for unknown keys."""
    section_name, dot, name = key.partition(".")
    sections = _sections(cfg)
    if key == "preset":
        cfg.preset = str(raw)
        return
    if not dot or section_name not in sections:
        raise ConfigError(f"unknown config key {key!r}: sections are {', '.join(sorted(sections))}")
    section = sections[section_name]
    hints = get_type_hints(type(section))
    if name not in hints:
        raise ConfigError(
            f"unknown config key {key!r}: {section_name} has {', '.join(f.name for f in dataclasses.fields(section))}"
        )
    setattr(section, name, _coerce(key, raw, hints[name]))


def apply_overrides(cfg: Config, overrides: list[str]) -> Config:
    """Apply `a.b=value` strings in order."""
    for item in overrides:
        key, eq, value = item.partition("=")
        if not eq:
            raise ConfigError(f"--set expects key=value, got {item!r}")
        set_value(cfg, key.strip(), value.strip())
    return cfg


def apply_dict(cfg: Config, data: dict, prefix: str = "") -> Config:
    """Apply a nested dict (a `--config` JSON file, a Tune trial's values) onto `cfg`."""
    for key, value in data.items():
        full = f"{prefix}{key}"
        if isinstance(value, dict):
            apply_dict(cfg, value, prefix=f"{full}.")
        else:
            set_value(cfg, full, value)
    return cfg


def load_config_file(cfg: Config, path: str | Path) -> Config:
    path = Path(path)
    if path.is_dir():
        raise ConfigError(f"config file {path} is a directory: --config takes a JSON file")
    if not path.is_file():
        raise ConfigError(f"config file not found: {path}")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) else f"not UTF-8 text ({exc.reason})"
        raise ConfigError(f"cannot read config file {path}: {reason}") from None
    except json.JSONDecodeError as exc:
        raise ConfigError(f"config file {path} is not valid JSON: {exc.msg} at line {exc.lineno}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"config file {path} must hold a JSON object")
    return apply_dict(cfg, data)


def _seqgan_rate_as_factor(model: dict, optim: dict) -> None:
    """`model.seqgan_adversarial_lr` (an absolute rate, 0 = optim.g_lr) became
    `seqgan_adversarial_lr_factor` on optim.g_lr."""
    rate = model.pop("seqgan_adversarial_lr")
    model["seqgan_adversarial_lr_factor"] = rate / optim["g_lr"] if rate and optim.get("g_lr") else 1.0


# Keys renamed since runs were saved: (section, old name) -> fn(section dict, optim dict)
# rewriting it in place, so a run directory or checkpoint written before still loads.
RENAMED_KEYS = {("model", "seqgan_adversarial_lr"): _seqgan_rate_as_factor}


def _migrated(data: dict) -> dict:
    data = {k: dict(v) if isinstance(v, dict) else v for k, v in data.items()}
    for (section, old), rewrite in RENAMED_KEYS.items():
        if isinstance(data.get(section), dict) and old in data[section]:
            rewrite(data[section], data.get("optim", {}))
    return data


def from_dict(data: dict) -> Config:
    """Rebuild a Config from `to_dict()` output (checkpoints, run directories), renamed keys
    (`RENAMED_KEYS`) read under their new names."""
    return apply_dict(Config(), _migrated(data))


def validate(cfg: Config) -> Config:
    """Check ranges and choices; the message names the offending key."""
    for key, allowed in CHOICES.items():
        if get_value(cfg, key) not in allowed:
            raise ConfigError(f"{key}={get_value(cfg, key)!r} is not one of {', '.join(map(str, allowed))}")
    from musicgan.data.representations import all_representations  # late: the registry imports numpy code

    if cfg.data.representation not in all_representations():
        raise ConfigError(
            f"data.representation={cfg.data.representation!r} is not one of {', '.join(all_representations())}"
        )
    for key, valid, value in numeric_fields(cfg):
        if not valid.admits(value):
            raise ConfigError(f"{key} must be a finite number {valid.describe()}, got {value!r}")
    if cfg.curriculum.start > cfg.curriculum.max_len:
        raise ConfigError(
            f"curriculum.start={cfg.curriculum.start} exceeds curriculum.max_len={cfg.curriculum.max_len}"
        )
    if cfg.train.pretrain_epochs > cfg.train.epochs:
        raise ConfigError(f"train.pretrain_epochs={cfg.train.pretrain_epochs} exceeds train.epochs={cfg.train.epochs}")
    if cfg.model.name not in FAMILY_MODULES:
        raise ConfigError(f"model.name={cfg.model.name!r} is not one of {', '.join(sorted(FAMILY_MODULES))}")
    return cfg
