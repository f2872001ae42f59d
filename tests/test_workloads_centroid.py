"""The TF-IDF nearest-centroid model the labeller places prompts with."""

from __future__ import annotations

import math

import pytest

from specviz.workloads.centroid import CentroidModel, head, tokens

TEXTS = [
    "Explain photosynthesis in plant cells",
    "How do plant cells store energy",
    "Describe the causes of the French revolution",
    "Why did the Roman empire fall",
]
LABELS = ["stem", "stem", "humanities", "humanities"]


def test_nearest_centroid_places_a_text_by_the_words_it_shares() -> None:
    model = CentroidModel.train(TEXTS, LABELS)
    sims = model.similarities("What do plant cells do with sunlight energy?")
    assert max(sims, key=sims.__getitem__) == "stem"
    sims = model.similarities("Which empire followed the revolution?")
    assert max(sims, key=sims.__getitem__) == "humanities"


def test_centroids_and_text_vectors_are_unit_length_so_similarity_is_a_cosine() -> None:
    model = CentroidModel.train(TEXTS, LABELS)
    for centroid in model.centroids.values():
        assert math.sqrt(sum(w * w for w in centroid.values())) == pytest.approx(1.0)
    # a training text is closest to its own category, and never more similar than 1
    sims = model.similarities(TEXTS[0])
    assert sims["stem"] > sims["humanities"] and sims["stem"] <= 1.0 + 1e-12


def test_tokens_read_the_instruction_only_and_drop_numbers_and_stop_words() -> None:
    text = "Explain the 3 causes of inflation\n\nPasted: physics physics physics 1999"
    assert head(text) == "explain the 3 causes of inflation"
    assert tokens(text) == ["explai", "causes", "inflat"]  # cut to 6 letters


def test_known_words_count_only_the_vocabulary() -> None:
    model = CentroidModel.train(TEXTS, LABELS)
    assert model.known_words("plant cells and quarks") == 2
    assert model.known_share("plant quarks") == 0.5
    assert model.known_share("") == 0.0


def test_training_needs_one_label_per_text() -> None:
    with pytest.raises(ValueError, match="one label per text"):
        CentroidModel.train(TEXTS, LABELS[:2])
