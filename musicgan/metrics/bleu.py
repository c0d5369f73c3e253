"""BLEU-n of generated token sequences against a held-out set (Papineni et al. 2002, "BLEU:
a Method for Automatic Evaluation of Machine Translation"), as SeqGAN (Yu et al. 2017)
reports it: every generated sequence is one hypothesis scored against ALL held-out
sequences as its references, and the set's score is the mean sentence BLEU.

Definition: modified n-gram precision p_k (each n-gram's count clipped by its largest count
in any one reference) for k = 1..n, geometric mean with uniform weights 1/n, times the
brevity penalty exp(1 - r/c) when the hypothesis (length c) is shorter than the closest
reference length r. Smoothing: Chen & Cherry 2014 ("A Systematic Comparison of Smoothing
Techniques for Sentence-Level BLEU") method 1, an epsilon of 0.1 in place of a zero
numerator; it is nltk's `SmoothingFunction().method1`, the one SeqGAN's successors
(Texygen) use.

Own implementation rather than nltk (not a dependency): the largest count of every n-gram
over the references is computed ONCE for the whole set here, where nltk's sentence_bleu
recounts every reference for every hypothesis (hypotheses x references work).
"""

from __future__ import annotations

import json
import math
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

from musicgan.metrics.runs import load_run

SMOOTHING = "chen-cherry-1 (epsilon 0.1)"
EPSILON = 0.1
NAN = float("nan")


def ngrams(tokens: Sequence[int], n: int) -> Counter:
    return Counter(tuple(tokens[i : i + n]) for i in range(len(tokens) - n + 1))


class References:
    """The held-out set, indexed once: per order k the largest count of each k-gram in any
    one reference, and the reference lengths (for the brevity penalty)."""

    def __init__(self, references: Sequence[Sequence[int]], max_n: int) -> None:
        self.max_n = max_n
        self.lengths = sorted({len(r) for r in references})
        self.max_counts: list[Counter] = [Counter() for _ in range(max_n)]
        for reference in references:
            for k in range(1, max_n + 1):
                best = self.max_counts[k - 1]
                for gram, count in ngrams(reference, k).items():
                    best[gram] = max(best[gram], count)

    def closest_length(self, length: int) -> int:
        return min(self.lengths, key=lambda r: (abs(r - length), r))


def sentence_bleu(hypothesis: Sequence[int], refs: References, n: int = 4) -> float:
    """BLEU-n of one hypothesis (smoothed, module docstring); NaN for an empty hypothesis."""
    if not hypothesis or not refs.lengths:
        return NAN
    log_sum = 0.0
    for k in range(1, n + 1):
        counts = ngrams(hypothesis, k)
        total = sum(counts.values())
        if total == 0:  # shorter than k: no k-grams at all, precision undefined -> smoothed
            total = 1
        clipped = sum(min(count, refs.max_counts[k - 1][gram]) for gram, count in counts.items())
        log_sum += math.log((clipped if clipped > 0 else EPSILON) / total) / n
    length, closest = len(hypothesis), refs.closest_length(len(hypothesis))
    brevity = 0.0 if length >= closest else 1.0 - closest / length
    return math.exp(brevity + log_sum)


def mean_bleu(hypotheses: Sequence[Sequence[int]], references: Sequence[Sequence[int]], n: int = 4) -> float:
    """Mean sentence BLEU-n of the hypotheses against all references; NaN when either is empty."""
    if n < 1:
        raise ValueError(f"BLEU order must be >= 1, got {n}")
    hypotheses = [h for h in hypotheses if len(h)]
    if not hypotheses or not references:
        return NAN
    refs = References(references, n)
    return sum(sentence_bleu(h, refs, n) for h in hypotheses) / len(hypotheses)


# -- `musicgan evaluate` hook: BLEU of a token run's samples against the reference split ----------
TOKEN_REPRESENTATIONS = ("melody_grid", "tokens")
ORDERS = (2, 3, 4)
MAX_REFERENCES = 2000  # held-out windows indexed (the index grows with the number of distinct n-grams)


def is_token_run(run_dir: Path) -> bool:
    """True when the run directory's config.json trains on discrete tokens."""
    try:
        saved = json.loads((Path(run_dir) / "config.json").read_text())
    except (OSError, ValueError):  # missing, bad JSON, or not UTF-8
        return False
    data = saved.get("data") if isinstance(saved, dict) else None
    return isinstance(data, dict) and data.get("representation") in TOKEN_REPRESENTATIONS


def held_out_windows(shard_dir, split: str, representation, length: int) -> list[list[int]]:
    """Non-overlapping windows of `length` tokens of every song of the split (at most MAX_REFERENCES)."""
    from musicgan.data.loader import iter_encoded
    from musicgan.data.shards import split_urls

    windows: list[list[int]] = []
    for _, steps in iter_encoded(split_urls(shard_dir, split), representation):
        ids = steps.reshape(-1).tolist()
        windows += [ids[i : i + length] for i in range(0, len(ids) - length + 1, length)]
        if len(windows) >= MAX_REFERENCES:
            break
    return windows[:MAX_REFERENCES]


def bleu_set_metric(context) -> dict:
    """BLEU-2/3/4 of a token run's sample MIDI files (re-encoded by the run's representation,
    first curriculum.max_len tokens) against windows of that length of the reference split;
    {} for other runs and for MIDI folders."""
    if context.kind != "run" or context.reference_kind != "shards" or not is_token_run(context.path):
        return {}
    # The run's fitted representation (a token vocabulary) lives in its checkpoint.
    cfg, _family, representation, _networks, _path = load_run(context.path)
    length = cfg.curriculum.max_len
    generated = [representation.encode(song).reshape(-1).tolist()[:length] for song in context.read_songs()]
    references = held_out_windows(context.reference, context.split, representation, length)
    return {f"bleu{n}": mean_bleu(generated, references, n) for n in ORDERS}
