"""The packaged text encoder: offline, normalised, deterministic, cached, clear when missing."""

from __future__ import annotations

import numpy as np
import pytest

from benchmark.cache import Cache
from benchmark.data import ItemCatalog
from benchmark.errors import BenchmarkError
from benchmark.models.text_encoder import (
    PACKAGED_MINILM,
    encode_items,
    encode_texts,
    load_text_model,
)


@pytest.fixture(scope="session")
def minilm():
    """The packaged all-MiniLM-L6-v2, loaded once per test session."""
    return load_text_model(PACKAGED_MINILM, "cpu")


def catalog(titles: list[str]) -> ItemCatalog:
    return ItemCatalog(item_ids=[str(i) for i in range(len(titles))],
                       attributes=[{"title": t, "year": "1995"} for t in titles],
                       labels=[() for _ in titles])


@pytest.mark.slow
def test_packaged_encoder_gives_normalised_deterministic_vectors(minilm):
    texts = ["Toy Story (1995)", "GoldenEye (1995)", "Toy Story (1995)"]
    x = encode_texts(texts, show_progress=False)
    assert x.dtype == np.float32 and x.shape == (3, 384)  # MiniLM-L6 width
    np.testing.assert_allclose(np.linalg.norm(x, axis=1), 1.0, atol=1e-5)
    np.testing.assert_array_equal(x[0], x[2])
    assert not np.allclose(x[0], x[1])


@pytest.mark.slow
def test_encode_items_embeds_catalog_text_and_caches_it(minilm, tmp_path, monkeypatch):
    cat = catalog(["Heat", "Casino", "Heat"])
    cache = Cache(tmp_path)
    x = encode_items(cat, cache=cache, show_progress=False)
    np.testing.assert_array_equal(x[0], x[2])
    np.testing.assert_allclose(x[1], encode_texts([cat.text(1)], show_progress=False)[0],
                               atol=1e-6)

    def fail(*args, **kwargs):
        raise AssertionError("a cached embedding was recomputed")

    monkeypatch.setattr("benchmark.models.text_encoder.encode_texts", fail)
    np.testing.assert_array_equal(encode_items(cat, cache=cache, show_progress=False), x)


def test_a_missing_model_names_the_config_key(tmp_path):
    with pytest.raises(BenchmarkError, match="semantic_ids.text_model"):
        encode_items(catalog(["a"]), str(tmp_path / "no-such-model"), cache=Cache(tmp_path),
                     show_progress=False, config_key="semantic_ids.text_model")
