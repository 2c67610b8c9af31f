"""Distractor selection is one tensor op: top-5 wrong names by CLIP similarity, 3 sampled, truth placed."""

import numpy as np
import torch

from datasets_builders.imagenet_classes import imagenet_names
from forgetkit.distractors import group_names, pick_distractors, place_answers


def embeddings(n_classes: int, labels: np.ndarray, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    text = torch.nn.functional.normalize(torch.randn(n_classes, 16, generator=generator), dim=1)
    noise = 0.3 * torch.randn(len(labels), 16, generator=generator)
    images = torch.nn.functional.normalize(text[torch.from_numpy(labels)] + noise, dim=1)
    return images, text


def test_distractors_come_from_the_five_most_similar_wrong_classes() -> None:
    labels = np.arange(200) % 20
    images, text = embeddings(20, labels)
    groups = np.arange(20)
    chosen = pick_distractors(images, text, labels, groups, np.random.default_rng(0))
    sims = (images @ text.T).numpy()
    sims[np.arange(200), labels] = -np.inf
    top5 = np.argsort(-sims, axis=1)[:, :5]
    assert chosen.shape == (200, 3)
    for row, pool, truth in zip(chosen, top5, labels):
        assert set(row) <= set(pool)
        assert truth not in row
        assert len(set(row)) == 3


def test_classes_sharing_a_name_are_one_candidate_and_never_pair_with_the_truth() -> None:
    names = ["missile", "projectile", "Missile", "tank", "sunglasses", "sunglasses ", "cannon", "rifle"]
    texts, groups = group_names(names)
    assert texts == ["missile", "projectile", "tank", "sunglasses", "cannon", "rifle"]
    labels = np.arange(400) % len(names)
    images, text = embeddings(len(names), labels, seed=1)
    chosen = pick_distractors(images, text, labels, groups, np.random.default_rng(0))
    for row, truth in zip(chosen, groups[labels]):
        option_names = [texts[g] for g in (*row, truth)]
        assert len(set(option_names)) == 4


def test_same_seed_same_choice() -> None:
    labels = np.arange(50) % 10
    images, text = embeddings(10, labels)
    first = pick_distractors(images, text, labels, np.arange(10), np.random.default_rng(7), chunk=7)
    second = pick_distractors(images, text, labels, np.arange(10), np.random.default_rng(7))
    np.testing.assert_array_equal(first, second)


def test_answer_positions_are_uniform_and_keep_every_option() -> None:
    n = 40000
    distractors = np.tile(np.array([[1, 2, 3]]), (n, 1))
    options, answers = place_answers(np.zeros(n, dtype=np.int64), distractors, np.random.default_rng(0))
    assert (options[np.arange(n), answers] == 0).all()
    assert (np.sort(options, axis=1) == [0, 1, 2, 3]).all()
    kept_order = options[options != 0].reshape(n, 3)
    assert (kept_order == [1, 2, 3]).all()
    counts = np.bincount(answers, minlength=4) / n
    assert np.allclose(counts, 0.25, atol=0.01)


def test_the_authors_imagenet_names_that_collide_stay_one_option_text() -> None:
    """First synonyms name two 'crane's and two 'maillot's, and 'Cardigan' (corgi) next to 'cardigan' (sweater)."""
    names, _ = imagenet_names("authors", None)
    texts, groups = group_names(names)
    assert len(texts) == 997
    assert groups[134] == groups[517] and groups[638] == groups[639] and groups[264] == groups[474]
    assert texts[groups[474]] == "Cardigan"
