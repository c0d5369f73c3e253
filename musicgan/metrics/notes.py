"""Metrics of generated single notes, after GANSynth's evaluation (Engel et al. 2019,
"GANSynth: Adversarial Neural Audio Synthesis"), on `specgram_if` images (B, 2, T, bins):

  pitch accuracy  share of notes a pitch classifier trained on real notes assigns to the
                  conditioning pitch (higher is better)
  pitch entropy   mean entropy (bits) of the classifier's pitch distribution per note
                  (lower: a clearer pitch)
  frechet         Frechet distance between the classifier's penultimate features of the
                  notes and of real notes (in-house: our classifier, not the paper's)
  ndb             number of statistically different bins (Richardson & Weiss 2018, "On GANs
                  and GMMs"): k-means bins on real log-magnitude spectra, the share of bins
                  whose share of the notes differs from the real share (two-proportion z-test,
                  5 %), as a fraction of the bins

The classifier is small (the time-averaged spectrum through 64 features), trained once per training
set and cached by the content hash of its shards in `$MUSICGAN_CACHE/pitch-classifier/`,
like the reference statistics. Its accuracy on held-out real notes is the ceiling a
generator can reach, uniform noise the floor.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from musicgan.metrics.cache import cache_dir, content_hash
from musicgan.metrics.distributions import frechet_from_moments

CLASSIFIER_VERSION = 2  # bump when the classifier or its training changes (new cache key)
FEATURES = 64
NDB_SIGNIFICANCE_Z = 1.96  # two-sided 5 %


class PitchClassifier(nn.Module):
    """(B, 2, T, bins) -> pitch logits (B, P); `features` gives the (B, 64) penultimate layer.
    It reads the time-averaged spectrum of both channels (a pitch is a pattern of harmonics
    along the frequency axis; pooling that axis, as an image network would, blurs it) through
    a hidden layer of 64."""

    def __init__(self, num_bins: int, num_pitches: int) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Flatten(), nn.Linear(2 * int(num_bins), FEATURES))
        self.head = nn.Linear(FEATURES, int(num_pitches))

    def features(self, images: torch.Tensor) -> torch.Tensor:
        return self.body(images.mean(dim=2))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.head(F.leaky_relu(self.features(images), 0.2))


def train_classifier(
    images: torch.Tensor,
    classes: torch.Tensor,
    num_pitches: int,
    *,
    steps: int = 400,
    batch_size: int = 32,
    seed: int = 0,
) -> PitchClassifier:
    """Adam 3e-3 on cross-entropy for `steps` seeded random batches (same data, same weights)."""
    generator = torch.Generator().manual_seed(seed)
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        classifier = PitchClassifier(images.shape[3], num_pitches)
    optimizer = torch.optim.Adam(classifier.parameters(), lr=3e-3)
    for _ in range(steps):
        index = torch.randint(len(images), (min(batch_size, len(images)),), generator=generator)
        optimizer.zero_grad()
        F.cross_entropy(classifier(images[index]), classes[index]).backward()
        optimizer.step()
    return classifier.eval()


def cached_classifier(
    shards,
    images: torch.Tensor,
    classes: torch.Tensor,
    num_pitches: int,
    *,
    encoding: dict,
    root: Path | None = None,
    **params,
) -> PitchClassifier:
    """`train_classifier` on the notes of `shards` (encoded as `encoding`, the representation's
    state), trained once: cached by their content hash."""
    key = content_hash(
        shards,
        kind="pitch-classifier",
        version=CLASSIFIER_VERSION,
        num_pitches=num_pitches,
        encoding=encoding,
        **params,
    )
    path = (root or cache_dir()) / "pitch-classifier" / f"{key}.pt"
    if path.is_file():
        classifier = PitchClassifier(images.shape[3], num_pitches)
        classifier.load_state_dict(torch.load(path, weights_only=True))
        return classifier.eval()
    classifier = train_classifier(images, classes, num_pitches, **params)
    _save_atomically(classifier.state_dict(), path)
    return classifier


def _save_atomically(state: dict, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
    os.close(handle)
    torch.save(state, temporary)
    os.replace(temporary, path)


@torch.no_grad()
def pitch_scores(classifier: PitchClassifier, images: torch.Tensor, classes: torch.Tensor) -> dict:
    """Pitch accuracy vs `classes` and mean pitch entropy (bits), plus the features."""
    features = classifier.features(images)
    logits = classifier.head(F.leaky_relu(features, 0.2))
    probabilities = logits.softmax(dim=1)
    entropy = -(probabilities * probabilities.clamp_min(1e-12).log2()).sum(dim=1)
    return {
        "pitch_accuracy": float((logits.argmax(1) == classes).float().mean()),
        "pitch_entropy": float(entropy.mean()),
        "features": features.double().numpy(),
    }


def feature_frechet(reference: np.ndarray, other: np.ndarray) -> float:
    """Frechet distance between Gaussians fitted to two (n, d) feature sets."""
    return frechet_from_moments(
        reference.mean(0), np.cov(reference, rowvar=False), other.mean(0), np.cov(other, rowvar=False)
    )


def log_spectra(images: torch.Tensor) -> np.ndarray:
    """(n, T * bins) magnitude channel of (n, 2, T, bins) images: what NDB bins."""
    return images[:, 0].flatten(1).double().numpy()


def ndb_bins(real_spectra: np.ndarray, num_bins: int, seed: int = 0) -> np.ndarray:
    """(num_bins, D) k-means centroids of real spectra (scipy's kmeans2, k-means++ start)."""
    from scipy.cluster.vq import kmeans2

    centroids, _ = kmeans2(real_spectra, int(num_bins), minit="++", seed=seed)
    return centroids


def ndb(centroids: np.ndarray, real_spectra: np.ndarray, spectra: np.ndarray) -> float:
    """Share of bins whose share of `spectra` differs significantly from the real share."""
    real_share, share = _bin_shares(centroids, real_spectra), _bin_shares(centroids, spectra)
    n_real, n = len(real_spectra), len(spectra)
    pooled = (real_share * n_real + share * n) / (n_real + n)
    error = np.sqrt(np.maximum(pooled * (1 - pooled) * (1 / n_real + 1 / n), 1e-12))
    return float(np.mean(np.abs(real_share - share) / error > NDB_SIGNIFICANCE_Z))


def _bin_shares(centroids: np.ndarray, spectra: np.ndarray) -> np.ndarray:
    distances = ((spectra[:, None, :] - centroids[None, :, :]) ** 2).sum(axis=2)
    return np.bincount(distances.argmin(axis=1), minlength=len(centroids)) / len(spectra)


def note_metrics(
    classifier: PitchClassifier,
    train_images: torch.Tensor,
    centroids: np.ndarray,
    images: torch.Tensor,
    classes: torch.Tensor,
) -> dict[str, float]:
    """The four metrics of `images` conditioned on (or labelled) `classes`, against the
    training notes (features and NDB bins)."""
    scores = pitch_scores(classifier, images, classes)
    with torch.no_grad():
        train_features = classifier.features(train_images).double().numpy()
    return {
        "pitch_accuracy": scores["pitch_accuracy"],
        "pitch_entropy": scores["pitch_entropy"],
        "frechet": feature_frechet(train_features, scores["features"]),
        "ndb": ndb(centroids, log_spectra(train_images), log_spectra(images)),
    }


def noise_images(like: torch.Tensor, seed: int = 0) -> torch.Tensor:
    """Uniform noise in [-1, 1] shaped like `like`: the floor every metric is read against."""
    return torch.rand(like.shape, generator=torch.Generator().manual_seed(seed)) * 2 - 1
