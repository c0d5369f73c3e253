"""Named configs as code. Each preset is a function returning a fresh `Config`; presets
derive from each other so a change to the paper preset propagates to its variants."""

from __future__ import annotations

import copy
from typing import Callable

from musicgan.config import Config
from musicgan.errors import ConfigError

PRESETS: dict[str, Callable[[], Config]] = {}


def preset(name: str):
    def register(fn: Callable[[], Config]) -> Callable[[], Config]:
        PRESETS[name] = fn
        return fn

    return register


def get_preset(name: str) -> Config:
    if name not in PRESETS:
        raise ConfigError(f"unknown preset {name!r}: choose one of {', '.join(sorted(PRESETS))}")
    cfg = PRESETS[name]()
    cfg.preset = name
    return cfg


def _toy_logging(cfg: Config) -> None:
    """Seconds-long test runs: few samples and metric songs, and a short collective timeout
    so a hang between ranks fails fast instead of waiting the default."""
    cfg.log.num_samples = 2
    cfg.log.metric_samples = 4
    cfg.log.metric_songs = 8
    cfg.dist.timeout_s = 60.0


@preset("crnngan-paper")
def crnngan_paper() -> Config:
    """Mogren 2016 as published: SGD 0.1 (D at half), clip 5, L2 0.1, batch 20, 6 MLE
    pretraining epochs, seq_len = min(4 (epoch + 1), 100), freezing at 0.7, feature matching."""
    return Config()


@preset("crnngan-3")
def crnngan_3() -> Config:
    """C-RNN-GAN-3: up to three tones per LSTM step (features 3K+1 = 10)."""
    cfg = crnngan_paper()
    cfg.data.tones_per_step = 3
    return cfg


def _mle_baseline(cfg: Config) -> Config:
    """A C-RNN-GAN preset's MLE baseline: the same generator, sizes, optimiser, curriculum and
    epochs, every epoch next-event squared error (the "pretraining" phase), no D, no freezing."""
    cfg.model.name = "mle"
    cfg.train.pretrain_epochs = cfg.train.epochs
    cfg.train.freeze_d_threshold = 0.0
    cfg.train.freeze_g_threshold = 0.0
    return cfg


@preset("lstm-baseline")
def lstm_baseline() -> Config:
    """The paper's baseline: the same generator trained only on next-event squared error."""
    return _mle_baseline(crnngan_paper())


def _debug_sizes(cfg: Config) -> Config:
    """Tiny networks, short sequences, few epochs: seconds on a CPU."""
    cfg.model.g_hidden = 16
    cfg.model.d_hidden = 16
    cfg.data.batch_size = 4
    cfg.curriculum.start = 4
    cfg.curriculum.growth = 4
    cfg.curriculum.max_len = 16
    cfg.train.epochs = 4
    cfg.train.pretrain_epochs = 1
    cfg.log.interval = 5
    _toy_logging(cfg)
    # The paper's SGD with L2 0.1 barely moves toy networks in a few steps (the penalty
    # dominates D's loss and G stays frozen behind it): Adam and no L2, so a 20-step test
    # run exercises both networks and both freezing branches.
    cfg.optim.optimizer = "adam"
    cfg.optim.g_lr = 0.01
    cfg.optim.d_lr = 0.01
    cfg.optim.l2 = 0.0
    cfg.train.freeze_d_threshold = 0.5
    cfg.train.freeze_g_threshold = 0.5
    return cfg


@preset("debug")
def debug() -> Config:
    """C-RNN-GAN at toy sizes for tests and smoke runs."""
    return _debug_sizes(crnngan_paper())


@preset("crnngan-demo")
def crnngan_demo() -> Config:
    """What `./launch/demo` trains on 2 CPU processes: the paper's recipe at reduced width
    (hidden 128) and length (up to 48 events), for a 5-minute wall-clock budget."""
    cfg = crnngan_paper()
    cfg.model.g_hidden = 128
    cfg.model.d_hidden = 128
    cfg.curriculum.max_len = 48
    cfg.train.epochs = 200
    cfg.train.pretrain_epochs = 5
    cfg.train.max_minutes = 5.0
    # Minutes, not days: Adam instead of the paper's SGD + L2 (whose penalty dominates D's
    # loss at this budget), and θ_G = 0.35 because D's loss sums two log-loss terms (~1.39
    # at chance) and G's has one (~0.69): the paper's 0.7 keeps G frozen until D is well
    # ahead, which a 5-minute run never reaches.
    cfg.optim.optimizer = "adam"
    cfg.optim.g_lr = 0.002
    cfg.optim.d_lr = 0.002
    cfg.optim.l2 = 0.0
    cfg.train.freeze_g_threshold = 0.35
    cfg.log.interval = 5
    cfg.log.sample_every = 5
    cfg.log.metric_samples = 32
    return cfg


@preset("lstm-baseline-demo")
def lstm_baseline_demo() -> Config:
    """The paper's MLE baseline at the demo's sizes and optimiser (`crnngan-demo` with the
    adversarial phase replaced by next-event squared error): what `launch/compare-baseline`
    trains for the same wall-clock budget as `crnngan-demo`, so the comparison differs in
    the objective only."""
    return _mle_baseline(crnngan_demo())


@preset("crnngan-bach")
def crnngan_bach() -> Config:
    """C-RNN-GAN on music21's Bach chorales as the ASHA sweep of 2026-12-02 found it (README,
    "Hyperparameter sweeps"): `--space crnngan --preset crnngan-demo`, 16 trials of at most 60
    epochs, evaluated every 6 epochs on the realism score against the valid split, 2 at a
    time, ~20 minutes of wall time on 2 shared cores; this is its best finished trial
    (d2a7c_00000). The demo's sizes (hidden 128, up to 48 events) and Adam, with a fixed
    budget of 60 epochs and no time limit, so a seed reproduces it exactly. Freezing is
    all but off (θ_D 0.04, θ_G 0.017) and feature matching off: the sweep preferred them so."""
    cfg = crnngan_demo()
    cfg.train.epochs = 60
    cfg.train.max_minutes = 0.0
    cfg.train.pretrain_epochs = 10
    cfg.optim.g_lr = 0.001745
    cfg.optim.d_lr = 0.0005007
    cfg.train.freeze_d_threshold = 0.04097
    cfg.train.freeze_g_threshold = 0.01653
    cfg.train.feature_matching = False
    cfg.train.label_smoothing = 0.1
    cfg.data.batch_size = 40
    cfg.curriculum.start = 2
    cfg.curriculum.growth = 8
    cfg.curriculum.max_len = 48
    cfg.log.sample_every = 10  # six sample/metric rounds: the curves, for a few CPU seconds each
    # The README's results were measured with G's loss from a second, frozen D forward: the
    # shared forward (the default since) draws D's dropout on the fakes once, not twice.
    cfg.model.crnngan_shared_d_forward = False
    return cfg


@preset("lstm-baseline-bach")
def lstm_baseline_bach() -> Config:
    """`crnngan-bach`'s MLE baseline: the same generator, sizes, optimiser, curriculum and 60
    epochs, trained by next-event squared error only."""
    return _mle_baseline(crnngan_bach())


# ---------------------------------------------------------------------------------------------
# Models beyond C-RNN-GAN: RNN-RBM / LSTM-RBM (Boulanger-Lewandowski et al. 2012, and the
# LSTM-RBM write-up described in models/rbm.py) and the discrete-note LSTM and MLP-GAN of
# Nguyen et al. 2018, "Generating Pokemon-Inspired Music from Neural Networks".
# Each has a `-debug` twin at toy sizes for tests.
def _non_adversarial(cfg: Config) -> Config:
    """No pretraining phase, no freezing, no L2 (the families' own losses only)."""
    cfg.train.pretrain_epochs = 0
    cfg.train.freeze_d_threshold = 0.0
    cfg.train.freeze_g_threshold = 0.0
    cfg.train.feature_matching = False
    cfg.optim.l2 = 0.0
    return cfg


@preset("rnnrbm")
def rnnrbm() -> Config:
    """RNN-RBM (Boulanger-Lewandowski 2012) at the LSTM-RBM write-up's sizes: 88-key roll, one frame per
    quarter note, transposed to C major / C minor (the likelihood protocol); RNN 100, RBM
    hidden 150, CD-15 training, 25 Gibbs steps per generated frame; windows of 100 frames
    (the reference code's sequence length). Adam 1e-2 instead of the reference's SGD 1e-3
    over 200 epochs, so that a CPU run of a few minutes on music21's Bach gets far (on the
    first 8 valid songs after 400 steps: Adam 1e-3 -12.1 nats/frame, 1e-2 -9.8,
    3e-2 -11.1)."""
    cfg = _non_adversarial(crnngan_paper())
    cfg.model.name = "rnnrbm"
    cfg.data.representation = "pianoroll"
    cfg.data.frames_per_beat = 1
    cfg.data.transpose = "c"
    cfg.data.batch_size = 16
    cfg.model.g_hidden = 100
    cfg.model.rbm_hidden = 150
    cfg.model.gibbs_steps = 15
    cfg.model.sample_gibbs_steps = 25
    cfg.optim.optimizer = "adam"
    cfg.optim.g_lr = 1e-2
    cfg.optim.grad_clip = 5.0
    cfg.curriculum.start = 100
    cfg.curriculum.max_len = 100
    cfg.train.epochs = 40
    cfg.log.interval = 20
    cfg.log.sample_every = 20
    return cfg


@preset("lstmrbm")
def lstmrbm() -> Config:
    """LSTM-RBM: the write-up's variant with an LSTM (100 units) in place of the RNN."""
    cfg = rnnrbm()
    cfg.model.name = "lstmrbm"
    return cfg


@preset("note-lstm")
def note_lstm() -> Config:
    """Nguyen et al. 2018's LSTM: note/chord tokens, 3 bidirectional LSTM layers of 512 with dropout
    0.3, dense 256, softmax over the vocabulary; Adam 1e-3 (Keras' default), batch 64,
    windows of 100 tokens (an embedding of 64 replaces their scalar id input)."""
    cfg = _non_adversarial(crnngan_paper())
    cfg.model.name = "note-lstm"
    cfg.data.representation = "tokens"
    cfg.data.batch_size = 64
    cfg.model.embedding_dim = 64
    cfg.model.g_hidden = 512
    cfg.model.g_layers = 3
    cfg.model.g_dropout = 0.3
    cfg.model.bidirectional = True
    cfg.optim.optimizer = "adam"
    cfg.optim.g_lr = 1e-3
    cfg.curriculum.start = 100
    cfg.curriculum.max_len = 100
    cfg.train.epochs = 50
    cfg.log.sample_every = 10
    return cfg


@preset("note-mlpgan")
def note_mlpgan() -> Config:
    """Nguyen et al. 2018's GAN: MLP generator (1000-dim normal latent -> 256 -> 512 -> 1024 ->
    100 notes in [-1, 1], LeakyReLU 0.2 + BatchNorm) against a 2 x LSTM(512) discriminator
    with a 512-256 dense head; Adam 2e-4, beta1 0.5, batch 64 (their Keras code)."""
    cfg = _non_adversarial(crnngan_paper())
    cfg.model.name = "note-mlpgan"
    cfg.data.representation = "tokens"
    cfg.data.batch_size = 64
    cfg.model.latent_dim = 1000
    cfg.model.g_hidden = 1024
    cfg.model.d_hidden = 512
    cfg.model.d_layers = 2
    cfg.optim.optimizer = "adam"
    cfg.optim.g_lr = 2e-4
    cfg.optim.d_lr = 2e-4
    cfg.optim.beta1 = 0.5
    cfg.curriculum.start = 100
    cfg.curriculum.max_len = 100
    cfg.train.epochs = 100
    cfg.log.sample_every = 20
    return cfg


def _seed_debug(cfg: Config) -> Config:
    """Toy sizes for the RBM and discrete-note models: windows of 16 steps, tiny layers, 2 epochs."""
    cfg = _debug_sizes(cfg)
    cfg.train.pretrain_epochs = 0
    cfg.train.epochs = 2
    cfg.curriculum.start = 16
    cfg.curriculum.max_len = 16
    cfg.model.g_layers = 1 if cfg.model.name in ("note-lstm",) else cfg.model.g_layers
    cfg.model.d_layers = 1
    cfg.model.rbm_hidden = 12
    cfg.model.gibbs_steps = 2
    cfg.model.sample_gibbs_steps = 3
    cfg.model.latent_dim = 8
    cfg.model.embedding_dim = 8
    cfg.log.sample_every = 0
    return cfg


@preset("rnnrbm-debug")
def rnnrbm_debug() -> Config:
    return _seed_debug(rnnrbm())


@preset("lstmrbm-debug")
def lstmrbm_debug() -> Config:
    return _seed_debug(lstmrbm())


@preset("note-lstm-debug")
def note_lstm_debug() -> Config:
    return _seed_debug(note_lstm())


@preset("note-mlpgan-debug")
def note_mlpgan_debug() -> Config:
    return _seed_debug(note_mlpgan())


# WGAN-GP (Gulrajani et al. 2017) on piano-roll windows: the critic schedule of the survey
# systems (MuseGAN, GANSynth) on a small MLP generator / conv critic.
@preset("wgan-gp-demo")
def wgan_gp_demo() -> Config:
    """WGAN-GP on Bach: 32-frame windows of an 88-key roll at 2 frames per beat (eighths),
    transposed to C; λ = 10, 5 critic steps per generator step, Adam (0.5, 0.9) at 1e-3
    (MuseGAN v3's rate: the reference's 1e-4 is for 100k+ steps), no gradient clipping
    (the penalty bounds the critic), latent 64, an EMA of G (0.999) is sampled."""
    cfg = _non_adversarial(crnngan_paper())
    cfg.model.name = "wgan-gp"
    cfg.data.representation = "pianoroll"
    cfg.data.frames_per_beat = 2
    cfg.data.transpose = "c"
    cfg.data.batch_size = 32
    cfg.model.latent_dim = 64
    cfg.model.g_hidden = 256
    cfg.model.d_hidden = 128
    cfg.model.ema_decay = 0.999
    cfg.optim.optimizer = "adam"
    cfg.optim.g_lr = 1e-3
    cfg.optim.d_lr = 1e-3
    cfg.optim.beta1 = 0.5
    cfg.optim.beta2 = 0.9
    cfg.optim.grad_clip = 0.0
    cfg.train.n_critic = 5
    cfg.train.gp_weight = 10.0
    cfg.curriculum.start = 32
    cfg.curriculum.max_len = 32
    cfg.train.epochs = 200
    cfg.log.interval = 20
    cfg.log.sample_every = 50
    return cfg


@preset("wgan-gp-debug")
def wgan_gp_debug() -> Config:
    """WGAN-GP at toy sizes (seconds): 16-frame windows, batch 4, widths 16."""
    cfg = wgan_gp_demo()
    cfg.data.batch_size = 4
    cfg.model.latent_dim = 8
    cfg.model.g_hidden = 16
    cfg.model.d_hidden = 16
    cfg.model.ema_decay = 0.9
    cfg.curriculum.start = 16
    cfg.curriculum.max_len = 16
    cfg.train.epochs = 10
    cfg.log.interval = 5
    cfg.log.sample_every = 0
    _toy_logging(cfg)
    return cfg


# GANSynth (Engel et al. 2019): pitch-conditioned progressive WGAN-GP on single notes as
# log-magnitude + instantaneous-frequency images. Prepare the notes with
# `musicgan prepare --corpus 'soundfont:notes?...' --audio-rate HZ` (README, GANSynth).
@preset("gansynth-paper")
def gansynth_paper() -> Config:
    """The paper's recipe (a GPU, days): 16 kHz, 4 s notes, STFT 2048 / hop 512 -> 128 frames
    x 1024 bins on a mel axis (IF-Mel, the paper's best), 7 stages from 2x16, filters
    min(4096 / 2^block, 256), latent 256, pitches 24..84, WGAN-GP (10) + drift (0.001) +
    auxiliary pitch CE (10), Adam 8e-4 (0, 0.99), batch 8, 1:1 updates, EMA 0.999. A stage
    is 200 epochs (~800k images at ~4.4k training notes, the paper's 800k per stage)."""
    cfg = _non_adversarial(crnngan_paper())
    cfg.model.name = "gansynth"
    cfg.data.representation = "specgram_if"
    cfg.data.audio_rate, cfg.data.n_fft, cfg.data.hop, cfg.data.mel = 16000, 2048, 512, True
    cfg.data.batch_size = 8
    cfg.model.start_frames, cfg.model.start_bins, cfg.model.stages = 2, 16, 7
    cfg.model.filter_cap, cfg.model.latent_dim = 256, 256
    cfg.model.min_pitch, cfg.model.num_pitches = 24, 61
    cfg.model.ema_decay = 0.999
    cfg.optim.optimizer, cfg.optim.g_lr, cfg.optim.d_lr = "adam", 8e-4, 8e-4
    cfg.optim.beta1, cfg.optim.beta2, cfg.optim.grad_clip = 0.0, 0.99, 0.0
    cfg.train.gp_weight, cfg.train.drift_penalty, cfg.train.aux_weight = 10.0, 0.001, 10.0
    cfg.train.stage_epochs = 200
    cfg.train.epochs = cfg.train.stage_epochs * (2 * cfg.model.stages - 1)
    cfg.curriculum.start = cfg.curriculum.max_len = 128
    cfg.log.interval = 50
    cfg.log.sample_every = cfg.train.stage_epochs
    return cfg


@preset("gansynth-small")
def gansynth_small() -> Config:
    """The smallest recipe at a real note size (GPU-sized at its 64 filters: the README gives its
    CPU cost and the reduced run measured on 2 cores): 8 kHz, 1 s notes, STFT 256 / hop 64
    -> 128 frames x 128 linear bins, 6 stages from 4x4, filters <= 64, latent 64, pitches
    36..84 (49), batch 16; a stage is 22 epochs (~20k images at the ~900 training notes of
    ~20 programs x 49 pitches)."""
    cfg = gansynth_paper()
    cfg.data.audio_rate, cfg.data.n_fft, cfg.data.hop, cfg.data.mel = 8000, 256, 64, False
    cfg.data.batch_size = 16
    cfg.model.start_frames, cfg.model.start_bins, cfg.model.stages = 4, 4, 6
    cfg.model.filter_cap, cfg.model.latent_dim = 64, 64
    cfg.model.min_pitch, cfg.model.num_pitches = 36, 49
    cfg.train.stage_epochs = 22
    cfg.train.epochs = cfg.train.stage_epochs * (2 * cfg.model.stages - 1)
    cfg.log.sample_every = cfg.train.stage_epochs
    cfg.log.interval = 20
    return cfg


@preset("gansynth-debug")
def gansynth_debug() -> Config:
    """Toy sizes (seconds): 8 kHz 1 s notes, STFT 256 / hop 128 -> 64 frames x 128 bins, 2
    stages from 32x64, 4 filters, latent 8, batch 4, one epoch per stage, EMA 0.9."""
    cfg = gansynth_small()
    cfg.data.hop = 128
    cfg.data.batch_size = 4
    cfg.model.start_frames, cfg.model.start_bins, cfg.model.stages = 32, 64, 2
    cfg.model.filter_cap, cfg.model.latent_dim = 4, 8
    cfg.model.min_pitch, cfg.model.num_pitches = 24, 61
    cfg.model.ema_decay = 0.9
    cfg.train.stage_epochs = 1
    cfg.train.epochs = 10
    cfg.curriculum.start = cfg.curriculum.max_len = 64
    cfg.log.interval = 5
    cfg.log.sample_every = 0
    _toy_logging(cfg)
    return cfg


# MuseGAN (Dong et al. 2018): multi-track bar-based WGAN-GP (docs/musegan.md).
@preset("musegan-chorales")
def musegan_chorales() -> Config:
    """The small config for 2 CPU cores: Bach chorales as 4 tracks (S, A, T, B), phrases of
    4 bars x 48 steps (12 per beat) x 48 pitches (MIDI 36-83); the v3 network with widths / 4
    and pitch factorised 2 -> 4 -> x12; hybrid latents; batch 16; WGAN-GP (λ 10), 5 critic
    steps per generator step (50 for the first 10, as the v3 code), 2,000 generator steps;
    Adam 1e-3 (0.5, 0.9); random transposition -5..+6 per window."""
    cfg = _non_adversarial(crnngan_paper())
    cfg.model.name = "musegan"
    cfg.model.musegan_arch = "v3"
    cfg.model.musegan_mode = "hybrid"
    cfg.model.musegan_width_scale = 0.25
    cfg.data.representation = "multitrack"
    cfg.data.track_grouping = "parts"
    cfg.data.frames_per_beat = 12
    cfg.data.lowest_pitch = 36
    cfg.data.num_pitches = 48
    cfg.data.transpose_range = "-5,6"
    cfg.data.batch_size = 16
    cfg.curriculum.start = cfg.curriculum.max_len = 4 * 48
    cfg.optim.optimizer = "adam"
    cfg.optim.g_lr = cfg.optim.d_lr = 1e-3
    cfg.optim.beta1, cfg.optim.beta2 = 0.5, 0.9
    cfg.optim.l2 = 0.0
    cfg.optim.grad_clip = 0.0  # the penalty bounds the critic
    cfg.train.n_critic = 5
    cfg.train.gp_weight = 10.0
    cfg.train.critic_warmup, cfg.train.critic_warmup_g_steps = 50, 10
    cfg.train.max_steps = 10 * 50 + 1990 * 5  # 2,000 generator steps
    cfg.train.epochs = 100_000  # max_steps ends the run
    cfg.log.interval = 50
    cfg.log.checkpoint_every = 1000
    cfg.log.sample_every = 0
    return cfg


@preset("musegan-paper")
def musegan_paper() -> Config:
    """The paper's setting, for GPUs: an LPD-5-style MIDI folder (drums, piano, guitar, bass,
    strings), 4 bars x 96 steps (24 per beat) x 84 pitches (MIDI 24-107); the v1 bar and
    temporal generators, bar critic and phrase head; hybrid; batch 64; Adam 2e-4 (0.5, 0.9);
    z ~ N(0, 0.1^2); 5 critic steps per generator step, 100 for the first 25 and every 500th;
    20 epochs (an epoch here is one window per song, not the paper's 50,266 phrases)."""
    cfg = musegan_chorales()
    cfg.model.musegan_arch = "paper"
    cfg.model.musegan_width_scale = 1.0
    cfg.data.track_grouping = "lpd5"
    cfg.data.frames_per_beat = 24
    cfg.data.lowest_pitch = 24
    cfg.data.num_pitches = 84
    cfg.data.batch_size = 64
    cfg.curriculum.start = cfg.curriculum.max_len = 4 * 96
    cfg.optim.g_lr = cfg.optim.d_lr = 2e-4
    cfg.train.critic_warmup, cfg.train.critic_warmup_g_steps, cfg.train.critic_warmup_every = 100, 25, 500
    cfg.train.max_steps = 0
    cfg.train.epochs = 20
    return cfg


@preset("musegan-debug")
def musegan_debug() -> Config:
    """musegan-chorales at toy sizes (seconds): 2 bars, widths / 16, batch 4, 2 warm-up
    critic steps for the first generator step, then 5."""
    cfg = musegan_chorales()
    cfg.model.musegan_width_scale = 1 / 16
    cfg.data.batch_size = 4
    cfg.curriculum.start = cfg.curriculum.max_len = 2 * 48
    cfg.train.critic_warmup, cfg.train.critic_warmup_g_steps = 2, 1
    cfg.train.max_steps = 40
    cfg.train.epochs = 100
    cfg.log.interval = 5
    cfg.log.checkpoint_every = 0
    _toy_logging(cfg)
    return cfg


# SeqGAN (Yu et al. 2017, "SeqGAN: Sequence Generative Adversarial Nets with Policy Gradient")
# and Polyphonic SeqGAN (Lee et al. 2017, "Polyphonic Music Generation with Sequence Generative
# Adversarial Networks"): training/families/seqgan.py.
@preset("seqgan-paper")
def seqgan_paper() -> Config:
    """SeqGAN's music setup on `melody_grid` tokens (rest + 88 pitches, 16ths), length 32:
    G LSTM embedding 32 / hidden 32, Adam 0.01 with global-norm clip 5; D the CNN + highway
    with the reference's 12 widths, embedding 64, dropout 0.25 (keep 0.75), L2 0.2, Adam 1e-4;
    K = 16 rollouts, rollout delay 0.8; 120 MLE epochs, 150 D epochs (50 rounds x 3), then
    the adversarial phase with the reference's ~4,700 D minibatches per G update. The folk
    corpora stand in for Nottingham (not bundled). Batch 64."""
    cfg = _non_adversarial(crnngan_paper())
    cfg.model.name = "seqgan"
    cfg.data.representation = "melody_grid"
    cfg.data.batch_size = 64
    cfg.model.embedding_dim = 32
    cfg.model.g_hidden = 32
    cfg.model.d_dropout = 0.25
    cfg.model.seqgan_d_loss = "ce"
    cfg.model.seqgan_rollouts = 16
    cfg.model.seqgan_rollout_update_rate = 0.8
    cfg.model.seqgan_d_embedding = 64
    cfg.model.seqgan_d_filters = "seqgan"
    cfg.model.seqgan_d_l2 = 0.2
    cfg.optim.optimizer = "adam"
    cfg.optim.g_lr = 0.01
    cfg.optim.d_lr = 1e-4
    cfg.optim.grad_clip = 5.0
    cfg.curriculum.start = 32
    cfg.curriculum.max_len = 32
    cfg.train.pretrain_epochs = 120
    cfg.train.pretrain_d_epochs = 150
    cfg.train.n_critic = 4700
    cfg.train.epochs = 1000
    cfg.log.interval = 20
    cfg.log.sample_every = 50
    return cfg


@preset("seqgan-folk")
def seqgan_folk() -> Config:
    """The paper's networks on folk melodies (`musicgan prepare --corpus music21:essen`) at a
    CPU-sized schedule: 10 MLE epochs, 3 D epochs, then 5 D minibatches per G update."""
    cfg = seqgan_paper()
    cfg.train.pretrain_epochs = 10
    cfg.train.pretrain_d_epochs = 3
    cfg.train.n_critic = 5
    cfg.train.epochs = 40
    cfg.log.sample_every = 10
    return cfg


def same_budget_mle(cfg: Config) -> Config:
    """`cfg` with all its epochs spent on maximum likelihood (no D, no policy gradient): the
    MLE side of a SeqGAN-vs-MLE comparison at an equal number of passes over the data."""
    mle = copy.deepcopy(cfg)
    mle.train.pretrain_epochs, mle.train.pretrain_d_epochs = cfg.train.epochs, 0
    return mle


@preset("seqgan-folk-small")
def seqgan_folk_small() -> Config:
    """`seqgan-folk` at a cost 2 shared CPU cores can pay, for the folk-melody table: K 8
    rollouts and D embedding 32 (as `seqgan-oracle-small`: D scoring the rollouts is nearly
    all the cost); 40 MLE epochs and 10 D epochs (cheap: an MLE step is milliseconds, a D step
    a fraction of a second), then 10 adversarial epochs, 5 D minibatches per G update (~30 G
    updates on 911 training songs at batch 64, about 13 CPU s each: figures in README)."""
    cfg = seqgan_folk()
    cfg.model.seqgan_rollouts = 8
    cfg.model.seqgan_d_embedding = 32
    cfg.train.pretrain_epochs = 40
    cfg.train.pretrain_d_epochs = 10
    cfg.train.epochs = 60
    cfg.log.sample_every = 0
    return cfg


@preset("seqgan-folk-small-mle")
def seqgan_folk_small_mle() -> Config:
    """The MLE side of the folk table: `seqgan-folk-small`'s 60 epochs all maximum likelihood."""
    return same_budget_mle(seqgan_folk_small())


@preset("seqgan-debug")
def seqgan_debug() -> Config:
    """SeqGAN at toy sizes (seconds): length 8, batch 16, K 2, tiny D; one epoch of each
    pretraining phase, then D twice per G update, so a 20-step run on a 200-song folk set
    (2 ranks: 6 steps an epoch) passes through all three phases."""
    cfg = seqgan_folk()
    cfg.data.batch_size = 16
    cfg.model.embedding_dim = 8
    cfg.model.g_hidden = 16
    cfg.model.seqgan_d_embedding = 8
    cfg.model.seqgan_d_filters = "tiny"
    cfg.model.seqgan_rollouts = 2
    cfg.curriculum.start = 8
    cfg.curriculum.max_len = 8
    cfg.train.pretrain_epochs = 1
    cfg.train.pretrain_d_epochs = 1
    cfg.train.n_critic = 2
    cfg.train.epochs = 6
    cfg.optim.d_lr = 1e-3
    cfg.log.interval = 5
    cfg.log.sample_every = 0
    _toy_logging(cfg)
    return cfg


@preset("polyseqgan-paper")
def polyseqgan_paper() -> Config:
    """Polyphonic SeqGAN as published, on `tokens` (note/chord words of the chorales' parts):
    G embedding 32, hidden 512, length 100, batch 32, lr 1e-3; rollout delay 0.9, K 32; D
    embedding 32, widths 5/10/15/20 x 400 filters, least squares, L2 0.2, lr 1e-4; 100 MLE
    and 100 D epochs; G's rate x10 (1e-2) in the adversarial phase."""
    cfg = seqgan_paper()
    cfg.data.representation = "tokens"
    cfg.data.batch_size = 32
    cfg.model.g_hidden = 512
    cfg.model.seqgan_d_embedding = 32
    cfg.model.seqgan_d_filters = "polyphonic"
    cfg.model.seqgan_d_loss = "lsgan"
    cfg.model.seqgan_rollouts = 32
    cfg.model.seqgan_rollout_update_rate = 0.9
    cfg.optim.g_lr = 1e-3
    cfg.model.seqgan_adversarial_lr_factor = 10.0
    cfg.curriculum.start = 100
    cfg.curriculum.max_len = 100
    cfg.train.pretrain_epochs = 100
    cfg.train.pretrain_d_epochs = 100
    cfg.train.n_critic = 5
    cfg.train.epochs = 700
    return cfg


@preset("polyseqgan-chorales")
def polyseqgan_chorales() -> Config:
    """Polyphonic SeqGAN's small config on the Bach chorales: hidden 128, length 32, K 8,
    20 MLE epochs, 5 D epochs, 5 D minibatches per G update."""
    cfg = polyseqgan_paper()
    cfg.model.g_hidden = 128
    cfg.model.seqgan_rollouts = 8
    cfg.curriculum.start = 32
    cfg.curriculum.max_len = 32
    cfg.train.pretrain_epochs = 20
    cfg.train.pretrain_d_epochs = 5
    cfg.train.epochs = 60
    cfg.log.sample_every = 10
    return cfg


@preset("seqgan-oracle")
def seqgan_oracle() -> Config:
    """SeqGAN's synthetic experiment, small (`musicgan oracle`): a random oracle LSTM (N(0, 1)
    weights, hidden 32) over 500 tokens samples 10,000 sequences of 20; G and D as the paper,
    10 MLE epochs, 1 D epoch, then 3 adversarial epochs of 5 D minibatches per G update
    (~94 G updates at batch 64). The MLE model gets the same 14 epochs."""
    cfg = seqgan_paper()
    cfg.model.seqgan_oracle_vocab = 500
    cfg.model.seqgan_oracle_samples = 10_000
    cfg.curriculum.start = 20
    cfg.curriculum.max_len = 20
    cfg.train.pretrain_epochs = 10
    cfg.train.pretrain_d_epochs = 1
    cfg.train.n_critic = 5
    cfg.train.epochs = 14
    return cfg


@preset("seqgan-oracle-small")
def seqgan_oracle_small() -> Config:
    """`seqgan-oracle` at a cost 2 CPU cores can share: the same oracle, data and schedule
    (10 MLE + 1 D + 3 adversarial epochs, ~94 G updates; MLE alone 14 epochs), with half the
    rollouts (K 8) and half D's embedding (32). D scoring the rollouts is nearly all of a
    SeqGAN run's cost and scales with K x D's width, while vocabulary and G size barely
    change it, so these two keep the experiment and cut its cost (figures: BENCHMARKS.md)."""
    cfg = seqgan_oracle()
    cfg.model.seqgan_rollouts = 8
    cfg.model.seqgan_d_embedding = 32
    return cfg


@preset("seqgan-oracle-paper")
def seqgan_oracle_paper() -> Config:
    """The paper's oracle: vocabulary 5,000, length 20, 10,000 samples, 120 MLE epochs, 150 D
    epochs, then the adversarial phase (its D-to-G ratio as `seqgan-paper`)."""
    cfg = seqgan_oracle()
    cfg.model.seqgan_oracle_vocab = 5000
    cfg.train.pretrain_epochs = 120
    cfg.train.pretrain_d_epochs = 150
    cfg.train.n_critic = 4700
    cfg.train.epochs = 1000
    return cfg


@preset("seqgan-oracle-debug")
def seqgan_oracle_debug() -> Config:
    """The oracle experiment in seconds: vocabulary 12, length 6, 128 samples, batch 16, toy
    networks; 4 MLE epochs, 1 D epoch, 2 adversarial epochs."""
    cfg = seqgan_oracle()
    cfg.model.seqgan_oracle_vocab = 12
    cfg.model.seqgan_oracle_samples = 128
    cfg.data.batch_size = 16
    cfg.model.embedding_dim = 8
    cfg.model.g_hidden = 16
    cfg.model.seqgan_d_embedding = 8
    cfg.model.seqgan_d_filters = "tiny"
    cfg.model.seqgan_rollouts = 2
    cfg.curriculum.start = 6
    cfg.curriculum.max_len = 6
    cfg.train.pretrain_epochs = 4
    cfg.train.pretrain_d_epochs = 1
    cfg.train.n_critic = 2
    cfg.train.epochs = 7
    cfg.optim.d_lr = 1e-3
    return cfg


@preset("jazzgan-chorales")
def jazzgan_chorales() -> Config:
    """JazzGAN's small config on chorale sopranos (minutes on 2 cores): 8-bar windows in the
    chosen rhythm encoding (end_position by default; `--set data.rhythm_encoding=timestep`
    etc.), LSTMs 2 x 64, latent 32 per step, batch 32; WGAN-GP λ = 10 with 5 critic steps per
    generator step, Adam 1e-4 (0.5, 0.9), no gradient clipping (the penalty bounds the critic)."""
    cfg = _non_adversarial(crnngan_paper())
    cfg.model.name = "jazzgan"
    cfg.data.representation = "melody_chord_events"
    cfg.data.rhythm_encoding = "end_position"
    cfg.data.window_bars = 8
    cfg.data.batch_size = 32
    cfg.model.latent_dim = 32
    cfg.model.g_hidden = cfg.model.d_hidden = 64
    cfg.model.g_layers = cfg.model.d_layers = 2
    cfg.optim.optimizer = "adam"
    cfg.optim.g_lr = cfg.optim.d_lr = 1e-4
    cfg.optim.beta1, cfg.optim.beta2 = 0.5, 0.9
    cfg.optim.grad_clip = 0.0
    cfg.train.n_critic = 5
    cfg.train.gp_weight = 10.0
    cfg.train.epochs = 20
    cfg.log.interval = 20
    cfg.log.sample_every = 5
    return cfg


@preset("jazzgan-debug")
def jazzgan_debug() -> Config:
    """JazzGAN at toy sizes (seconds): 1-bar windows, batch 4, widths 8, one layer."""
    cfg = jazzgan_chorales()
    cfg.data.window_bars = 1
    cfg.data.batch_size = 4
    cfg.model.latent_dim = 4
    cfg.model.g_hidden = cfg.model.d_hidden = 8
    cfg.model.g_layers = cfg.model.d_layers = 1
    cfg.optim.g_lr = cfg.optim.d_lr = 1e-3
    cfg.train.epochs = 10
    cfg.log.interval = 5
    cfg.log.sample_every = 0
    _toy_logging(cfg)
    return cfg


# ---------------------------------------------------------------------------------------------
# Spectral LSTMs on rendered audio (musicgan/training/families/spectral.py): next-block
# regression on fft_blocks frames, six architectures by `--set model.spectral_arch=...`.
# Data: `musicgan prepare ... --audio-rate HZ` with HZ = data.audio_rate.
@preset("spectral-paper")
def spectral_paper() -> Config:
    """The seed's size: 16 kHz, blocks of 4,000 samples (0.25 s), full DFT (8,000 values a
    step), hidden 2,048, windows of T = 40 blocks (10 s) predicting the next, RMSprop 1e-4,
    L2 1e-4 on dense layers, dense dropout 0.2, LSTM input and recurrent dropout 0.5, 2,000
    epochs (~100M parameters: GPUs)."""
    cfg = _non_adversarial(crnngan_paper())
    cfg.model.name = "spectral-lstm"
    cfg.model.spectral_arch = "bilinear"
    cfg.data.representation = "fft_blocks"
    cfg.data.audio_rate = 16000
    cfg.data.block_size = 4000
    cfg.data.spectrum = "full"
    cfg.data.batch_size = 16
    cfg.model.g_hidden = 2048
    cfg.model.spectral_dropout = 0.2
    cfg.model.spectral_lstm_dropout = 0.5
    cfg.optim.optimizer = "rmsprop"
    cfg.optim.g_lr = 1e-4
    cfg.optim.l2 = 1e-4
    cfg.optim.grad_clip = 0.0  # the seed clips nothing
    cfg.curriculum.start = 41
    cfg.curriculum.max_len = 41  # T = 40 input blocks + the block after them
    cfg.train.epochs = 2000
    cfg.log.sample_every = 300
    cfg.log.num_samples = 4
    cfg.log.metric_samples = 0
    return cfg


@preset("spectral-chorales")
def spectral_chorales() -> Config:
    """The small config for 2 CPU cores: 8 kHz, blocks of 1,000 samples (0.125 s), rfft
    (1,002 values a step), hidden 256, T = 40 (5 s), batch 16, 200 epochs."""
    cfg = spectral_paper()
    cfg.data.audio_rate = 8000
    cfg.data.block_size = 1000
    cfg.data.spectrum = "rfft"
    cfg.model.g_hidden = 256
    cfg.train.epochs = 200
    cfg.log.sample_every = 50
    return cfg


@preset("spectral-debug")
def spectral_debug() -> Config:
    """Seconds on a CPU: spectral-chorales with blocks of 200 samples, hidden 16, T = 7."""
    cfg = spectral_chorales()
    cfg.data.block_size = 200
    cfg.data.batch_size = 4
    cfg.model.g_hidden = 16
    cfg.curriculum.start = 8
    cfg.curriculum.max_len = 8
    cfg.train.epochs = 10  # 20 rendered chorales on 2 ranks: 3 steps an epoch, so --max-steps 20 runs 20
    cfg.log.interval = 5
    cfg.log.sample_every = 0
    cfg.log.num_samples = 2
    cfg.dist.timeout_s = 60.0
    return cfg


# MidiNet (Yang et al. 2017): melody bar by bar on chords and the previous bar (a DCGAN).
# A loader epoch draws one two-bar window per song, so one paper epoch (every bar once) is
# about BARS_PER_CHORALE loader epochs on the Bach chorales (15.5, the mean over the
# training split of all 409, rounded).
BARS_PER_CHORALE = 16


@preset("midinet-paper")
def midinet_paper() -> Config:
    """MidiNet as published: 16 steps a bar, 128 pitches + 13 chord values, 12-key
    augmentation, z 100, G dense 1024 / convolutions 128, D convolution 77 / dense 1024,
    Adam (0.5, 0.999) at 5e-5 (the reference code's default; its help text and the PyTorch
    port say 2e-4: `--set optim.g_lr=2e-4 --set optim.d_lr=2e-4`), batch 72, one-sided
    label smoothing 0.9, feature matching 0.1, mean matching 0.01, 20 paper epochs."""
    cfg = _non_adversarial(crnngan_paper())
    cfg.model.name = "midinet"
    cfg.data.representation = "melody_chord"
    cfg.data.frames_per_beat = 4
    cfg.data.transpose_range = "-6,5"  # all 12 keys, each window in a random one
    cfg.data.batch_size = 72
    cfg.model.latent_dim = 100
    cfg.model.g_hidden = 1024
    cfg.model.d_hidden = 1024
    cfg.model.midinet_g_channels = 128
    cfg.model.midinet_d_channels = 77
    cfg.optim.optimizer = "adam"
    cfg.optim.g_lr = 5e-5
    cfg.optim.d_lr = 5e-5
    cfg.optim.beta1 = 0.5
    cfg.optim.beta2 = 0.999
    cfg.optim.grad_clip = 0.0
    cfg.train.label_smoothing = 0.1
    cfg.train.feature_matching_weight = 0.1
    cfg.train.mean_matching_weight = 0.01
    cfg.curriculum.start = 32
    cfg.curriculum.max_len = 32
    cfg.train.epochs = 20 * BARS_PER_CHORALE
    cfg.log.interval = 20
    cfg.log.sample_every = 50
    return cfg


@preset("midinet-chorales")
def midinet_chorales() -> Config:
    """The small configuration: chorale sopranos in their own keys (no augmentation), 10
    paper epochs; minutes on two CPU cores."""
    cfg = midinet_paper()
    cfg.data.transpose_range = ""
    cfg.train.epochs = 10 * BARS_PER_CHORALE
    return cfg


@preset("midinet-debug")
def midinet_debug() -> Config:
    """MidiNet at toy sizes (seconds): batch 4, z 8, dense widths 16, convolutions 8."""
    cfg = midinet_chorales()
    cfg.data.batch_size = 4
    cfg.model.latent_dim = 8
    cfg.model.g_hidden = 16
    cfg.model.d_hidden = 16
    cfg.model.midinet_g_channels = 8
    cfg.model.midinet_d_channels = 8
    cfg.optim.g_lr = 2e-4
    cfg.optim.d_lr = 2e-4
    cfg.train.epochs = 10
    cfg.log.interval = 5
    cfg.log.sample_every = 0
    _toy_logging(cfg)
    return cfg
