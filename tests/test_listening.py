"""The listening kit: anonymised shuffled clips with real controls, the key kept apart, the
rating page driven in real headless Chromium, and the aggregation of its CSV."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from dist_helpers import musicgan

from musicgan.audio import read_wav, write_wav
from musicgan.errors import DataError
from musicgan.metrics.listening import REAL_MODEL, interval, listening_results, make_listening_kit

RATE = 8000


def wav_run(folder, seed: int, clips: int = 3):
    """A folder of generated-looking WAVs (tones of one model), named like a run."""
    folder.mkdir()
    rng = np.random.default_rng(seed)
    t = np.arange(RATE) / RATE
    for k in range(clips):
        write_wav(0.2 * np.sin(2 * np.pi * rng.uniform(200, 800) * t), folder / f"sample-{k:03d}.wav", RATE)
    return folder


@pytest.fixture
def kit(bach_audio_shards, tmp_path):
    runs = [str(wav_run(tmp_path / "bilinear", 1)), str(wav_run(tmp_path / "baseline", 2))]
    key = make_listening_kit(
        str(tmp_path / "kit"), runs, str(bach_audio_shards), clips_per_model=2, echo=lambda _: None
    )
    return tmp_path / "kit", key


def test_kit_is_anonymised_shuffled_with_real_controls_and_the_key_apart(kit):
    out, key = kit
    clips = sorted(p.name for p in (out / "kit").glob("*.wav"))
    assert clips == [f"{c}.wav" for c in sorted(key)]
    models = sorted(key.values())
    assert models.count("bilinear") == models.count("baseline") == 2 and REAL_MODEL in models
    assert list(key.values()) != sorted(key.values())  # shuffled, not grouped by model
    page = (out / "kit" / "index.html").read_text()
    assert "bilinear" not in page and "baseline" not in page  # nothing on the page names a model
    assert not list((out / "kit").glob("*key*")) and json.loads((out / "answer_key.json").read_text()) == key
    for clip in clips:
        _, rate = read_wav(out / "kit" / clip)
        assert rate == RATE


def test_results_aggregate_mean_and_95_percent_interval_per_model(kit, tmp_path):
    out, key = kit
    ratings = tmp_path / "r.csv"
    score = {"bilinear": 4, "baseline": 2, REAL_MODEL: 5}
    rows = [f"ann,{clip},{score[model]}" for clip, model in key.items()]
    rows += [f"bob,{clip},{score[model] - 1}" for clip, model in key.items()]
    ratings.write_text("rater,clip,rating\n" + "\n".join(rows) + "\n")
    results = listening_results(str(out), [str(ratings)], echo=lambda _: None)
    assert list(results) == [REAL_MODEL, "bilinear", "baseline"]  # best mean first
    for model, r in results.items():
        n = 2 * list(key.values()).count(model)
        expected = interval([score[model]] * (n // 2) + [score[model] - 1] * (n // 2))
        assert r == expected and r["mean"] == score[model] - 0.5 and r["low"] < r["mean"] < r["high"]
    ratings.write_text("rater,clip,rating\nann,clip-999,3\n")
    with pytest.raises(DataError, match="clip 'clip-999' is not in the answer key"):
        listening_results(str(out), [str(ratings)])
    ratings.write_text(f"rater,clip,rating\nann,{next(iter(key))},6\n")
    out_cli = musicgan(["listening-results", str(out), str(ratings)], check=False)
    assert out_cli.returncode == 2 and "is not one of 1-5" in out_cli.stderr and "Traceback" not in out_cli.stderr


def test_interval_matches_the_student_t_formula():
    r = interval([1, 2, 3, 4, 5])
    assert r["mean"] == 3 and r["high"] - 3 == pytest.approx(2.7764451 * np.std([1, 2, 3, 4, 5], ddof=1) / 5**0.5)


def _chromium():
    browser, driver = shutil.which("chromium"), shutil.which("chromedriver")
    if not browser or not driver:
        pytest.skip("needs Debian chromium + chromium-driver (apt-get install -y chromium chromium-driver)")
    webdriver = pytest.importorskip("selenium.webdriver", reason="needs selenium (pip install selenium)")
    return webdriver, browser, driver


def test_rating_page_in_headless_chromium_writes_the_csv_that_results_read(kit, tmp_path):
    webdriver, browser, driver_path = _chromium()
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By

    out, key = kit
    options = webdriver.ChromeOptions()
    options.binary_location = browser
    for flag in (
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
        f"--user-data-dir={tmp_path / 'profile'}",
    ):
        options.add_argument(flag)
    options.add_experimental_option(
        "prefs", {"download.default_directory": str(tmp_path / "downloads"), "download.prompt_for_download": False}
    )
    browser_session = webdriver.Chrome(options=options, service=Service(driver_path))
    try:
        browser_session.get((out / "kit" / "index.html").resolve().as_uri())
        assert len(browser_session.find_elements(By.TAG_NAME, "audio")) == len(key)
        browser_session.find_element(By.ID, "rater").send_keys('Ann, "the" rater')
        wanted = {clip: 1 + k % 5 for k, clip in enumerate(sorted(key))}
        for clip, rating in list(wanted.items())[:-1]:  # the last clip is left unrated
            browser_session.find_element(By.CSS_SELECTOR, f'input[name="{clip}"][value="{rating}"]').click()
        browser_session.find_element(By.ID, "save").click()
        text = browser_session.find_element(By.ID, "csv").get_property("value")
        status = browser_session.find_element(By.ID, "status").text
    finally:
        browser_session.quit()
    assert status == f"{len(key) - 1} of {len(key)} clips rated"
    ratings = tmp_path / "ratings.csv"
    ratings.write_text(text)
    lines = text.splitlines()
    assert lines[0] == "rater,clip,rating" and len(lines) == len(key)
    assert all(line.startswith("Ann   the  rater,") for line in lines[1:])  # commas and quotes cannot break the CSV
    results = listening_results(str(out), [str(ratings)], echo=lambda _: None)
    rated = list(wanted)[:-1]
    for model, r in results.items():
        expected = [wanted[c] for c in rated if key[c] == model]
        assert r["n"] == len(expected) and r["mean"] == pytest.approx(np.mean(expected))


def test_cli_writes_a_kit_from_runs(bach_audio_shards, tmp_path):
    runs = [str(wav_run(tmp_path / "a", 1)), str(wav_run(tmp_path / "b", 2))]
    out = musicgan(
        [
            "evaluate",
            "--listening-kit",
            str(tmp_path / "kit"),
            "--run",
            runs[0],
            "--compare",
            runs[1],
            "--reference",
            str(bach_audio_shards),
            "--kit-clips",
            "1",
        ]
    )
    assert "listening kit: 3 clips" in out.stdout
    assert sorted(json.loads((tmp_path / "kit" / "answer_key.json").read_text()).values()) == ["a", "b", REAL_MODEL]
