"""Config tree: presets, overrides, validation messages, JSON round trip, CLI dry run."""

import json

import pytest

from musicgan.cli import main
from musicgan.config import Config, apply_overrides, from_dict, load_config_file, numeric_fields, validate
from musicgan.errors import ConfigError
from musicgan.presets import PRESETS, get_preset
from musicgan.training.curriculum import seq_len_for_epoch
from musicgan.training.freezing import decide_freezing


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_every_preset_validates(name):
    cfg = get_preset(name)
    assert validate(cfg).preset == name


def test_paper_preset_matches_the_paper():
    cfg = get_preset("crnngan-paper")
    assert (cfg.model.g_hidden, cfg.model.g_layers, cfg.model.d_hidden, cfg.model.d_layers) == (350, 2, 350, 2)
    assert (cfg.optim.optimizer, cfg.optim.g_lr, cfg.optim.d_lr) == ("sgd", 0.1, 0.05)
    assert (cfg.optim.grad_clip, cfg.optim.l2, cfg.data.batch_size) == (5.0, 0.1, 20)
    assert cfg.train.pretrain_epochs == 6
    assert [seq_len_for_epoch(cfg.curriculum, e) for e in (0, 1, 5, 24, 30)] == [4, 8, 24, 100, 100]
    assert get_preset("crnngan-3").data.tones_per_step == 3
    assert get_preset("lstm-baseline").model.name == "mle"


def test_overrides_are_typed_and_unknown_keys_named():
    cfg = apply_overrides(Config(), ["optim.g_lr=0.01", "train.feature_matching=false", "data.batch_size=7"])
    assert cfg.optim.g_lr == 0.01 and cfg.train.feature_matching is False and cfg.data.batch_size == 7
    with pytest.raises(ConfigError, match="optim.gl_lr"):
        apply_overrides(Config(), ["optim.gl_lr=1"])
    with pytest.raises(ConfigError, match="unknown config key 'nosuch.x'"):
        apply_overrides(Config(), ["nosuch.x=1"])
    with pytest.raises(ConfigError, match="data.batch_size: expected int"):
        apply_overrides(Config(), ["data.batch_size=many"])


@pytest.mark.parametrize(
    "override,key",
    [
        ("dist.backend=horovod", "dist.backend"),
        ("data.batch_size=0", "data.batch_size"),
        ("model.d_dropout=1.5", "model.d_dropout"),
        ("optim.g_lr=-1", "optim.g_lr"),
        ("model.name=transformer", "model.name"),
    ],
)
def test_validation_names_the_bad_key(override, key):
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        validate(apply_overrides(get_preset("debug"), [override]))


def test_json_round_trip_and_config_file(tmp_path):
    cfg = apply_overrides(get_preset("debug"), ["train.seed=5", "model.d_layout=interleaved"])
    again = from_dict(json.loads(cfg.to_json()))
    assert again == cfg
    path = tmp_path / "c.json"
    path.write_text(json.dumps({"optim": {"d_lr": 0.003}, "train": {"freeze_d_threshold": 0.5}}))
    loaded = load_config_file(get_preset("debug"), path)
    assert loaded.optim.d_lr == 0.003 and loaded.train.freeze_d_threshold == 0.5
    path.write_text("{not json")
    with pytest.raises(ConfigError, match="not valid JSON"):
        load_config_file(get_preset("debug"), path)


def test_freezing_rule():
    assert decide_freezing(0.5, 1.0, 0.7, 0.7).freeze_discriminator  # D far ahead
    assert not decide_freezing(0.8, 1.0, 0.7, 0.7).freeze_discriminator
    assert decide_freezing(1.0, 0.5, 0.7, 0.7).freeze_generator
    assert not decide_freezing(0.1, 1.0, 0.0, 0.0).freeze_discriminator  # θ = 0 disables


def test_cli_dry_run_and_bad_key(capsys):
    assert main(["train", "--run-dir", "x", "--preset", "debug", "--set", "train.seed=3", "--dry-run"]) == 0
    assert json.loads(capsys.readouterr().out)["train"]["seed"] == 3
    assert main(["train", "--run-dir", "x", "--preset", "debug", "--set", "train.sed=3", "--dry-run"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: unknown config key 'train.sed'") and "Traceback" not in err
    assert main(["train", "--run-dir", "x", "--preset", "nope", "--dry-run"]) == 2
    assert "unknown preset 'nope'" in capsys.readouterr().err


def test_every_numeric_field_declares_its_range():
    """A numeric field added without a range would accept NaN, inf and nonsense again."""
    import dataclasses

    ranged = {key for key, _, _ in numeric_fields(Config())}
    for section in ("data", "model", "optim", "curriculum", "train", "dist", "log"):
        for item in dataclasses.fields(getattr(Config(), section)):
            if item.type in ("int", "float", int, float):
                assert f"{section}.{item.name}" in ranged, f"{section}.{item.name} has no valid range"


@pytest.mark.parametrize(
    "override",
    [
        "optim.g_lr=nan",
        "optim.l2=inf",
        "optim.momentum=-3",
        "optim.beta1=7",
        "optim.beta2=1",
        "dist.timeout_s=inf",
        "dist.timeout_s=0",
        "train.max_minutes=nan",
        "train.rollback_lr_factor=0",
        "model.latent_dim=0",
        "train.seed=-1",
        "train.label_smoothing=-inf",
    ],
)
def test_nonsense_numbers_are_refused_naming_the_key(override):
    key = override.split("=")[0]
    with pytest.raises(ConfigError, match=rf"^{key.replace('.', chr(92) + '.')} must be a finite number"):
        validate(apply_overrides(get_preset("debug"), [override]))


def test_every_float_field_refuses_nan_and_infinity():
    for key, _, value in numeric_fields(Config()):
        if isinstance(value, float):
            for bad in ("nan", "inf", "-inf"):
                with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
                    validate(apply_overrides(get_preset("debug"), [f"{key}={bad}"]))


def test_config_file_that_is_a_directory_or_not_text_is_one_line(tmp_path, capsys):
    binary = tmp_path / "binary.json"
    binary.write_bytes(b"\xff\xfe{")
    for path, message in (
        (tmp_path, "is a directory: --config takes a JSON file"),
        (binary, "cannot read config file"),
    ):
        assert main(["train", "--run-dir", "x", "--preset", "debug", "--config", str(path), "--dry-run"]) == 2
        err = capsys.readouterr().err
        assert err.startswith("error: config file" if path == tmp_path else "error: cannot read") and message in err
        assert len(err.strip().splitlines()) == 1


def test_config_validation_does_not_import_the_model_families():
    """config.validate knows the family names from musicgan/model_names.py, not the registry
    (which imports every model): checked in a fresh interpreter."""
    import subprocess
    import sys

    code = (
        "import sys; from musicgan.config import Config, validate; validate(Config()); "
        "assert 'musicgan.training' not in sys.modules, sorted(m for m in sys.modules if 'musicgan' in m)"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_every_listed_family_registers_under_its_name():
    from musicgan.model_names import FAMILY_MODULES
    from musicgan.training.families import FAMILIES, all_network_names

    names = all_network_names()  # imports every family module listed
    assert set(FAMILY_MODULES) == set(FAMILIES)
    assert {"generator", "discriminator"} <= names


def test_a_run_saved_before_a_key_was_renamed_still_loads():
    """Runs written before `model.seqgan_adversarial_lr` (an absolute rate, 0 = g_lr) became a
    factor on optim.g_lr load with the same rate (sample / evaluate / resume of old runs)."""
    from musicgan.config import Config, from_dict

    saved = Config().to_dict()
    saved["model"].pop("seqgan_adversarial_lr_factor")
    saved["optim"]["g_lr"] = 0.01
    for old_rate, factor in ((0.0, 1.0), (0.001, 0.1)):
        saved["model"]["seqgan_adversarial_lr"] = old_rate
        cfg = from_dict(saved)
        assert cfg.model.seqgan_adversarial_lr_factor == pytest.approx(factor)
        assert "seqgan_adversarial_lr" in saved["model"]  # the caller's dict is left as it was
