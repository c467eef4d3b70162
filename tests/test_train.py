"""Self-supervised fine-tuning: a short run on six dev photos learns and saves a usable model."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
import torch

from lookalike.cli import main
from lookalike.features.registry import get_method
from lookalike.imaging.loading import LoadOptions, load_image
from lookalike.methods.augnet import preprocess, resize_short_side
from lookalike.nets.augnet import load_augnet
from lookalike.training.train import TrainSettings, adapted_model, augment, embed, normalise, train

# Small inputs keep the frozen network's pass to seconds; the head trains on its feature maps.
QUICK = dict(short_side=128, view_side=96, views=1, batch_size=6, lr=3e-3)


@pytest.fixture(scope="module")
def six_photos(landmarks_dir):
    """Three photos each of two landmarks that verify against each other."""
    chosen = []
    for label in ("hertford_bridge", "sacre_coeur"):
        chosen += sorted(str(p) for p in (landmarks_dir / label).iterdir())[:3]
    return chosen


@pytest.fixture(scope="module")
def trained(six_photos, tmp_path_factory):
    output = str(tmp_path_factory.mktemp("train") / "model.pt")
    settings = TrainSettings(epochs=12, seed=3, **QUICK)
    return train(six_photos, output, settings, quiet=True), settings


def test_training_lowers_the_loss(trained):
    result, _ = trained
    assert result.photos == 6 and result.epochs_done == 12
    assert np.mean(result.losses[-3:]) < 0.8 * np.mean(result.losses[:3])


def test_saved_model_reloads_to_the_same_vectors(trained, six_photos):
    """The in-memory model and `augnet --weights model.pt` embed a photo identically."""
    result, _ = trained
    head = torch.nn.Linear(2048, 768)
    head.load_state_dict(torch.load(result.output + ".ckpt", weights_only=False)["head"])
    image = load_image(six_photos[0], LoadOptions())
    with torch.inference_mode():
        in_memory = adapted_model(head)(torch.from_numpy(preprocess(image))[None])[0].numpy()
    adapted = get_method("augnet", weights=result.output, device="cpu")
    np.testing.assert_allclose(adapted.extract(image), in_memory, atol=1e-5)
    state = torch.load(result.output, map_location="cpu", weights_only=True)
    assert set(state["model"]) == set(load_augnet(result.output).state_dict())  # AugNet's names
    stock_head = load_augnet().pre.fc
    assert not torch.allclose(stock_head.weight, head.weight, atol=1e-4)  # training changed it


def test_resume_continues_where_it_stopped(trained, six_photos, tmp_path):
    """Training 6 epochs, then resuming to 12, gives the uninterrupted run's model."""
    result, _ = trained
    output = str(tmp_path / "model.pt")
    shutil.copy(result.output + ".prep.pt", output + ".prep.pt")  # the same frozen maps
    train(six_photos, output, TrainSettings(epochs=6, seed=3, **QUICK), resume=True, quiet=True)
    resumed = train(six_photos, output, TrainSettings(epochs=12, seed=3, **QUICK),
                    resume=True, quiet=True)
    assert resumed.losses == pytest.approx(result.losses)
    a = torch.load(output, weights_only=True)["model"]["pre.fc.weight"]
    b = torch.load(result.output, weights_only=True)["model"]["pre.fc.weight"]
    torch.testing.assert_close(a, b)


def test_augment_is_deterministic_and_changes_the_photo(six_photos):
    rgb = np.asarray(load_image(six_photos[0], LoadOptions(min_short_side=200)).convert("RGB"))
    one = augment(rgb, np.random.default_rng(1), 96)
    two = augment(rgb, np.random.default_rng(1), 96)
    other = augment(rgb, np.random.default_rng(2), 96)
    assert one.shape[0] == 3 and min(one.shape[1:]) == 96
    np.testing.assert_array_equal(one, two)
    assert one.shape != other.shape or not np.allclose(one, other)


def test_cli_reports_bad_files_and_rejects_weights(six_photos, tmp_path, capsys):
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"not a photo")
    output = str(tmp_path / "m.pt")
    assert main(["train", *six_photos[:3], str(broken), "-o", output, "--weights", output]) == 1
    code = main(["train", *six_photos[:3], str(broken), "-o", output, "--epochs", "1",
                 "--views", "0", "--size", "128", "-q"])
    assert code == 2
    assert "broken.jpg" in capsys.readouterr().err
    assert torch.load(output, weights_only=True)["lookalike"]["photos"] == 3


def test_embed_matches_the_model_on_prepared_maps(trained, six_photos):
    """`embed` (the benchmark's shortcut over cached maps) agrees with the full network."""
    result, settings = trained
    prepared = torch.load(result.output + ".prep.pt", weights_only=False)["prepared"]
    head = torch.nn.Linear(2048, 768)
    head.load_state_dict(torch.load(result.output + ".ckpt", weights_only=False)["head"])
    rgb = np.asarray(load_image(prepared.paths[0], LoadOptions()).convert("RGB"))
    x = torch.from_numpy(normalise(resize_short_side(rgb, settings.short_side)))[None]
    with torch.inference_mode():
        direct = adapted_model(head)(x)[0].numpy()
    np.testing.assert_allclose(embed(prepared, head)[0], direct, atol=2e-2)


def test_minutes_stops_early_and_still_saves(trained, six_photos, tmp_path):
    result, _ = trained
    output = str(tmp_path / "model.pt")
    shutil.copy(result.output + ".prep.pt", output + ".prep.pt")
    stopped = train(six_photos, output, TrainSettings(epochs=12, seed=3, minutes=1e-6, **QUICK),
                    resume=True, quiet=True)
    assert stopped.epochs_done == 1
    assert torch.load(output, weights_only=True)["lookalike"]["epochs_done"] == 1
