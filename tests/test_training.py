"""Training recipe and loop: schedule, validation, learning on a separable task, reproducibility."""

import math

import numpy as np
import pytest
import torch

from tans._errors import TansError
from tans.data.dataset import Dataset
from tans.space import create_model
from tans.training import Recipe, evaluate, to_input, train

torch.set_num_threads(1)


def separable(n_per_class=40, n_classes=4, seed=0):
    """Each class is a bright square in its own quadrant, on noise: easy but not trivial."""
    rng = np.random.default_rng(seed)
    labels = np.repeat(np.arange(n_classes), n_per_class)
    images = rng.integers(0, 80, size=(len(labels), 32, 32, 3), dtype=np.uint8)
    for i, c in enumerate(labels):
        y, x = divmod(int(c), 2)
        images[i, 4 + 14 * y : 14 + 14 * y, 4 + 14 * x : 14 + 14 * x] = 230
    return Dataset(images=images, labels=labels, class_names=[f"c{i}" for i in range(n_classes)], name="quadrants")


FAST = Recipe(epochs=2, warmup_epochs=0, batch_size=16, lr=5e-3, max_train_images=96, max_eval_images=40)


def test_schedule_is_per_epoch_warmup_then_cosine():
    r = Recipe(lr=1.0, epochs=5, warmup_epochs=1, min_lr_ratio=0.0)
    lrs = [r.lr_at(e) for e in range(5)]
    assert lrs[0] == pytest.approx(0.5)
    assert lrs[1] == pytest.approx(1.0)
    assert lrs[1] > lrs[2] > lrs[3] > lrs[4] > 0
    assert lrs[3] == pytest.approx(0.5 * (1 + math.cos(math.pi * 2 / 4)))


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"optimizer": "adam"}, "Unknown optimizer 'adam'.*Did you mean 'adamw'"),
        ({"epochs": 0}, "Recipe.epochs must be at least 1"),
        ({"epochs": 2, "warmup_epochs": 2}, "warmup_epochs must be between 0 and epochs - 1"),
        ({"label_smoothing": 1.0}, "label_smoothing must be in"),
        ({"max_train_images": 1}, "max_train_images must be None or at least 2"),
    ],
)
def test_recipe_validation(kwargs, match):
    with pytest.raises(TansError, match=match):
        Recipe(**kwargs)


def test_recipe_dict_round_trip():
    r = Recipe(epochs=3, seed=7, max_train_images=None)
    assert Recipe.from_dict(r.to_dict()) == r
    with pytest.raises(TansError, match="Unknown recipe field.*Did you mean 'epochs'"):
        Recipe.from_dict({"epoch": 3})


def test_to_input_normalises_and_makes_rgb():
    grey = np.array([[[[0]], [[255]]]], dtype=np.uint8).reshape(1, 1, 2, 1)
    x = to_input(grey)
    assert x.shape == (1, 3, 1, 2)
    torch.testing.assert_close(x[0, :, 0, 0], torch.full((3,), -2.0))
    torch.testing.assert_close(x[0, :, 0, 1], torch.full((3,), 2.0))
    with pytest.raises(TansError, match="Expected uint8 images"):
        to_input(np.zeros((2, 4, 4, 3), dtype=np.float32))


def test_training_beats_chance_and_reports_everything():
    data = separable()
    torch.manual_seed(0)
    model = create_model("mbv3_min", num_classes=4)
    seen = []
    result = train(model, data, FAST, device="cpu", progress=seen.append)
    assert [(e.stage, e.done, e.total) for e in seen] == [("epoch", 1, 2), ("epoch", 2, 2)]
    assert result.epochs == tuple(e.extra["stats"] for e in seen)
    assert result.chance == pytest.approx(0.25)
    assert result.train_images == 96 and result.val_images == 24 and result.test_images == 24
    assert result.test_acc >= 0.6 and result.above_chance >= 2.4
    assert result.epochs[-1].train_loss < result.epochs[0].train_loss
    assert result.wall_seconds > 0 and result.train_images_per_second > 0 and result.num_threads == 1
    assert result.to_dict()["recipe"]["epochs"] == 2
    assert not model.training
    assert all(p.is_contiguous() for p in model.parameters())  # ready for safetensors
    assert evaluate(model, data, split="test") == pytest.approx(result.test_acc, abs=0.05)


def test_training_is_reproducible_for_a_seed():
    data = separable(n_per_class=20)
    recipe = Recipe(epochs=1, warmup_epochs=0, batch_size=16, max_train_images=48, seed=3)

    def run(seed):
        torch.manual_seed(0)
        model = create_model("mbv3_min", num_classes=4)
        result = train(model, data, Recipe(**{**recipe.to_dict(), "seed": seed}), device="cpu")
        return result.epochs[0].train_loss, torch.cat([p.detach().flatten() for p in model.parameters()])

    loss_a, w_a = run(3)
    loss_b, w_b = run(3)
    loss_c, w_c = run(4)
    assert loss_a == loss_b
    assert torch.equal(w_a, w_b)
    assert not torch.equal(w_a, w_c)


def test_train_rejects_mismatched_classifier():
    data = separable(n_per_class=10)
    with pytest.raises(TansError, match="Model has 3 outputs but dataset 'quadrants' has 4 classes"):
        train(create_model("mbv3_min", num_classes=3), data, FAST, device="cpu")
