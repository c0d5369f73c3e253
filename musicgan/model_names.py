"""Which module defines each model family: the one table of `model.name` values.

Plain data, imported by `config.validate` (to reject an unknown name) and by the family
registry (to import only the family a run uses), so neither imports the other. A new family
adds one line here next to its `@register("name")` module.
"""

FAMILY_MODULES: dict[str, str] = {
    "crnngan": "musicgan.training.families.crnngan",
    "mle": "musicgan.training.families.crnngan",
    "rnnrbm": "musicgan.training.families.rbm",
    "lstmrbm": "musicgan.training.families.rbm",
    "note-lstm": "musicgan.training.families.notes",
    "note-mlpgan": "musicgan.training.families.notes",
    "musegan": "musicgan.training.families.musegan",
    "wgan-gp": "musicgan.training.families.wgan",
    "gansynth": "musicgan.training.families.gansynth",
    "seqgan": "musicgan.training.families.seqgan",
    "jazzgan": "musicgan.training.families.jazzgan",
    "spectral-lstm": "musicgan.training.families.spectral",
    "midinet": "musicgan.training.families.midinet",
}
