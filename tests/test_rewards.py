"""Reward models (smckit.diffusion.rewards) on tiny random models: values against the models' own forward passes,
gradients where guidance needs them, conversions, per-group conditioning, and the lazy-import errors."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

from smckit.diffusion.rewards import (  # noqa: E402
    AestheticReward,
    ClassifierReward,
    CLIPReward,
    ScoreReward,
    to_images,
)
from smckit.errors import InvalidArgumentError, ShapeError  # noqa: E402

PROMPTS = ["a cat", "a dog", "a red bird"]


@pytest.fixture(scope="module")
def clip():
    pytest.importorskip("transformers")
    from smckit.diffusion.tiny import tiny_clip

    return tiny_clip(seed=1)


def _images(b=3, size=16, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(b, 3, size, size, generator=g)


# -- classifier --------------------------------------------------------------------------------------------------
def test_classifier_reward_is_the_log_probability_of_each_target_and_differentiable():
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 16 * 16, 4))
    reward = ClassifierReward(net, preprocess=lambda x: 2 * x - 1)
    cond = reward.prepare([0, 3, 1])
    images = _images().requires_grad_(True)
    r = reward(images, **cond)
    expected = net(2 * images - 1).log_softmax(-1)[torch.arange(3), torch.tensor([0, 3, 1])]
    torch.testing.assert_close(r, expected)
    (grad,) = torch.autograd.grad(r.sum(), images)
    assert bool((grad.abs().sum(dim=(1, 2, 3)) > 0).all())
    fixed = ClassifierReward(net, target=2)
    assert fixed.prepare(PROMPTS)["target"].tolist() == [2, 2, 2]  # any labels, one class
    torch.testing.assert_close(fixed(images), net(images).log_softmax(-1)[:, 2])
    with pytest.raises(InvalidArgumentError, match="integer class labels"):
        reward.prepare(PROMPTS)
    with pytest.raises(ShapeError, match="logits"):
        ClassifierReward(lambda x: x.sum())(images, target=torch.zeros(3, dtype=torch.int64))


def test_classifier_reward_runs_in_the_classifiers_dtype():
    net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 16 * 16, 4)).to(torch.bfloat16)
    r = ClassifierReward(net, target=1)(_images())
    assert r.dtype == torch.float32 and r.shape == (3,)


# -- CLIP --------------------------------------------------------------------------------------------------------
def test_clip_reward_is_the_models_own_cosine(clip):
    model, tokenizer = clip
    reward = CLIPReward(model, tokenizer, scale=100.0)
    cond = reward.prepare(PROMPTS)
    assert cond["text_features"].shape == (3, 16)
    torch.testing.assert_close(cond["text_features"].norm(dim=-1), torch.ones(3))
    images = _images()
    score = reward(images, **cond)
    # the same cosine from CLIPModel's forward: logits_per_image / logit_scale, for the same pixels
    mean = torch.tensor([0.48145466, 0.4578275, 0.40821073]).reshape(1, 3, 1, 1)
    std = torch.tensor([0.26862954, 0.26130258, 0.27577711]).reshape(1, 3, 1, 1)
    tokens = tokenizer(PROMPTS, padding="max_length", truncation=True, return_tensors="pt")
    with torch.no_grad():
        out = model(
            input_ids=tokens["input_ids"], attention_mask=tokens["attention_mask"], pixel_values=(images - mean) / std
        )
    cosine = out.logits_per_image.diagonal() / model.logit_scale.exp()
    torch.testing.assert_close(score, 100.0 * cosine, atol=1e-4, rtol=1e-4)


def test_clip_reward_resizes_and_has_gradients(clip):
    model, tokenizer = clip
    reward = CLIPReward(model, tokenizer)
    cond = reward.prepare(PROMPTS[:2])
    images = torch.rand(2, 3, 40, 24).requires_grad_(True)  # not square, not the model's size
    score = reward(images, **cond)
    assert score.shape == (2,) and bool((score.abs() <= 1 + 1e-5).all())
    (grad,) = torch.autograd.grad(score.sum(), images)
    assert bool(torch.isfinite(grad).all()) and float(grad.abs().sum()) > 0
    with pytest.raises(InvalidArgumentError, match="text_features"):
        reward(images)
    with pytest.raises(InvalidArgumentError, match="CLIPModel"):
        CLIPReward(torch.nn.Linear(2, 2), tokenizer)


def test_aesthetic_head_on_clip_features(clip):
    model, _ = clip
    torch.manual_seed(0)
    head = torch.nn.Linear(16, 1)
    reward = AestheticReward(model, head)
    images = _images().requires_grad_(True)
    score = reward(images)
    with torch.no_grad():
        features = model.visual_projection(
            model.vision_model(pixel_values=reward.pixels(images, torch.float32)).pooler_output
        )
    torch.testing.assert_close(score.detach(), head(features / features.norm(dim=-1, keepdim=True))[:, 0])
    (grad,) = torch.autograd.grad(score.sum(), images)
    assert float(grad.abs().sum()) > 0
    with pytest.raises(ShapeError, match="aesthetic head"):
        AestheticReward(model, torch.nn.Linear(16, 2))(images)


# -- any scorer --------------------------------------------------------------------------------------------------
def test_score_reward_hands_over_images_and_each_images_prompt():
    got = {}

    def score(images, prompts):
        got["images"], got["prompts"] = images, prompts
        return [im.size[0] * 0 + len(p) for im, p in zip(images, prompts)]

    reward = ScoreReward(score)
    assert reward.differentiable is False
    cond = reward.prepare(PROMPTS)
    group = torch.tensor([2, 0, 0, 1])  # particles of groups 2, 0, 0, 1 after gathering
    out = reward(_images(4), group=group, labels=cond["labels"])
    assert got["prompts"] == ["a red bird", "a cat", "a cat", "a dog"]
    assert out.tolist() == [10.0, 5.0, 5.0, 5.0] and out.dtype == torch.float32
    arrays = ScoreReward(lambda images, prompts: images.mean(axis=(1, 2, 3)), output_type="np")
    torch.testing.assert_close(arrays(_images(2), **arrays.prepare(PROMPTS[:2])), _images(2).mean(dim=(1, 2, 3)))
    with pytest.raises(ShapeError, match="2 scores for 3 images"):
        ScoreReward(lambda images, prompts: [0.0, 1.0])(_images(3))
    with pytest.raises(InvalidArgumentError, match="output_type='pt'"):
        ScoreReward(score, differentiable=True)


def test_to_images_formats():
    images = _images(2, size=4)
    assert to_images(images, "pt") is images
    array = to_images(images, "np")
    assert array.shape == (2, 4, 4, 3)
    pil = to_images(images, "pil")
    assert len(pil) == 2 and pil[0].size == (4, 4) and pil[0].mode == "RGB"
    assert pil[1].getpixel((0, 0)) == tuple(round(v * 255) for v in images[1, :, 0, 0].tolist())
    with pytest.raises(InvalidArgumentError, match="output_type"):
        to_images(images, "jpeg")


def test_missing_transformers_names_the_extra(monkeypatch, clip):
    import sys

    monkeypatch.setitem(sys.modules, "transformers", None)  # what an environment without it looks like to import
    with pytest.raises(ImportError, match=r"the .text. extra"):
        CLIPReward(*clip)
