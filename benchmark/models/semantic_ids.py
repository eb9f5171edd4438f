"""Semantic IDs: item text -> sentence embedding -> residual codes -> a unique tuple per item.

Two quantisers, one result (:class:`SemanticIDs`):

- ``rqvae`` (TIGER, the SID-LLM reference): an MLP encoder to a small latent, ``levels`` residual
  vector-quantisation levels of ``codebook_size`` codes (``vector_quantize_pytorch.ResidualVQ``
  with k-means initialisation, EMA codebooks, dead-code replacement and the rotation trick), an
  MLP decoder; loss = reconstruction + commitment (the EMA updates play the codebook-loss role).
- ``rkmeans``: training-free residual k-means (scikit-learn ``KMeans`` on the residual of each
  level), which reproductions of TIGER found at least as good as the RQ-VAE.

A final disambiguation column numbers the items inside each group of identical codes (0, 1, ...),
so every row of ``codes`` is unique. Diagnostics say how good the IDs are *before* that column:
collisions, codebook use, and semantic coherence of the first level against ``catalog.labels``.

The artefact depends on item text only, so it is cached by (catalogue fingerprint, config,
VERSION) and shared by both protocols and by every method that uses the same settings.

``source`` chooses where the IDs come from. ``ours`` (the default) builds them as above.
``published:<variant>`` reads a published index shipped beside the dataset
(``<dataset folder>/indexes/<variant>/<Name>.index.json``, verified against the folder's
``SHA256SUMS``; :mod:`benchmark.models.published_ids`, the variants and their provenance in the
dataset's PROVENANCE.md, e.g. ``data/amazon-scientific``). Published codes are used as they
are: no disambiguation column is appended, so items that share a full ID collide; they are one
candidate to a model and tie in the ranking (:meth:`SemanticIDs.tie_groups`). They are fixed
inputs: the run's seed and the quantiser settings do not change them. Reading one is cheap, so
it is not cached. The variants built from interactions of an unknown split
(``published_ids.PUBLISHED_WITH_INTERACTIONS``) say ``uses_interactions: true`` in the
diagnostics and are refused under the ``cold_item`` protocol (their codes may encode the cold
items' interactions). Every source's diagnostics give the same collision summary (items with a
unique full ID, distinct prefixes per level, collision rate, largest collision group); for
``ours`` it describes the codes before the disambiguation column.
"""

from __future__ import annotations

import dataclasses
import re
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm
from vector_quantize_pytorch import ResidualVQ

from benchmark.config import (
    build_config,
    require_at_least,
    require_each,
    require_positive,
    require_range,
)
from benchmark.errors import BenchmarkError
from benchmark.models.published_ids import (
    CODEBOOK_SIZE,
    PUBLISHED_WITH_INTERACTIONS,
    read_published_index,
)
from benchmark.models.text_encoder import PACKAGED_MINILM, encode_items
from benchmark.models.text_encoder import VERSION as TEXT_ENCODER_VERSION

if TYPE_CHECKING:
    from benchmark.cache import Cache
    from benchmark.data import ItemCatalog

VERSION = 2  # 2: SemanticIDs moved to benchmark.models (version-1 pickles name the old module)
_SOURCE = re.compile(r"ours|published:[A-Za-z0-9_][A-Za-z0-9_.-]*")


@dataclass
class SemanticIDConfig:
    """How semantic IDs are built. Defaults are sized for ML-100K (1,682 items).

    3 levels x 32 codes: the reference setting (3 x 256, built for 66k items, ~258 items per
    first-level code) would give ML-100K ~6.5 items per first-level code and leave most second-
    and third-level codes unused (1,682 items cannot fill 65k two-level cells). 32 first-level
    codes keep ~50 items per code, so a code is a real semantic cluster that a cold item can
    share with warm items, while 32^3 = 32,768 three-level cells keep collisions rare. The
    encoder (384 -> 256 -> 128 -> 32) mirrors the reference's funnel at MiniLM's width. Tuned on
    SASRec-SID validation NDCG and the diagnostics only (see the PR report).
    """

    method: Literal["rqvae", "rkmeans"] = "rqvae"
    levels: int = 3  # residual levels, before the disambiguation column
    codebook_size: int = 32
    latent_dim: int = 32
    hidden_dims: list[int] = field(default_factory=lambda: [256, 128])
    epochs: int = 200
    batch_size: int = 256
    lr: float = 1e-3
    commitment_weight: float = 0.25
    dead_code_threshold: float = 2.0  # EMA cluster size under which a code is re-seeded
    kmeans_iters: int = 20
    rotation_trick: bool = True
    text_model: str = PACKAGED_MINILM
    seed: int = 0  # adapters set the run's seed (semantic_id_config) unless YAML or --set does
    # "ours" (built here) or "published:<variant>" (read from the dataset's indexes/ folder; the
    # settings above and the seed then change nothing). See the module docstring.
    source: str = "ours"

    def __post_init__(self) -> None:
        for key in ("levels", "codebook_size", "latent_dim", "epochs", "batch_size",
                    "kmeans_iters"):
            require_at_least(key, getattr(self, key), 1)
        require_each("hidden_dims", self.hidden_dims, 1)
        require_positive("lr", self.lr)
        require_range("commitment_weight", self.commitment_weight, 0)
        require_range("dead_code_threshold", self.dead_code_threshold, 0)
        require_at_least("seed", self.seed, 0)
        if not isinstance(self.source, str) or not _SOURCE.fullmatch(self.source):
            raise ValueError("source: must be 'ours' or 'published:<variant>' (e.g. "
                             "published:rqvae_native)")

    @property
    def published_variant(self) -> str | None:
        """The variant of a ``published:<variant>`` source; None for ``ours``."""
        return None if self.source == "ours" else self.source.removeprefix("published:")


@dataclass
class SemanticIDs:
    """``codes[i]`` is item ``i``'s ID; when ``disambiguated`` (source ``ours``) the last column
    is the disambiguation level and rows are unique, otherwise (a published index) the codes
    are the published levels and items may share a row."""

    codes: np.ndarray  # int64 [n_items, levels + 1] (ours) or [n_items, levels] (published)
    level_sizes: list[int]  # vocabulary size of each column (disambiguation included)
    diagnostics: dict[str, Any]
    disambiguated: bool = True

    @property
    def n_levels(self) -> int:
        return self.codes.shape[1]

    def tie_groups(self) -> np.ndarray | None:
        """Item -> group of items sharing the full ID (every column), or None when every ID
        is unique. The one collision rule of every SID method: items in a group are one
        candidate to the model and tie, pessimistically, in the ranking
        (``benchmark.evaluation``)."""
        return tie_groups(self.codes)


def semantic_id_config(overrides: dict[str, Any], run_seed: int) -> SemanticIDConfig:
    """The quantiser config of a run: defaults, then the run's seed, then the method's
    ``semantic_ids`` block (YAML / ``--set``), later layers winning.

    The quantiser's seed follows the run's seed, so each seed of SASRec-SID or the SID-LLM
    rebuilds its codes and the codes' own randomness is part of the seed spread (docs/protocol.md,
    Seeds). Seed 0 keeps the codes every earlier seed-0 run used. A ``semantic_ids.seed``
    set in YAML or on the command line pins one build for every run seed. A published source
    ignores the seed: its codes are fixed inputs.
    """
    return build_config(SemanticIDConfig, [("run seed", {"seed": run_seed}),
                                           ("semantic_ids", overrides)])


def build_semantic_ids(catalog: ItemCatalog, config: SemanticIDConfig, *, cache: Cache,
                       device: str = "cpu", show_progress: bool = True,
                       protocol: str | None = None) -> SemanticIDs:
    """Semantic IDs of every catalogue item: built (cached; depends on item text and config
    only) or, for a published source, read (``protocol``: the run's, checked by
    :func:`published_semantic_ids`)."""
    if config.published_variant is not None:
        return published_semantic_ids(catalog, config.published_variant, protocol=protocol)
    # The device is part of the key: a GPU build gives different (equally valid) codes. The
    # source is always "ours" here and stays out of the key, so keys made before the setting
    # existed still match.
    settings = {k: v for k, v in dataclasses.asdict(config).items() if k != "source"}
    key = {"catalog": catalog.fingerprint(), "config": settings,
           "version": VERSION, "text_encoder_version": TEXT_ENCODER_VERSION,
           "device": torch.device(device).type}

    def build() -> SemanticIDs:
        embeddings = encode_items(catalog, config.text_model, cache=cache, device=device,
                                  show_progress=show_progress,
                                  config_key="semantic_ids.text_model")
        return semantic_ids_from_embeddings(embeddings, config, labels=catalog.labels,
                                            device=device, show_progress=show_progress)

    return cache.get_or_build("semantic_ids", key, build)


def semantic_ids_from_embeddings(embeddings: np.ndarray, config: SemanticIDConfig, *,
                                 labels: list[tuple[str, ...]] | None = None,
                                 device: str = "cpu", show_progress: bool = False) -> SemanticIDs:
    """Quantise [n_items, d] embeddings into unique semantic IDs (uncached)."""
    start = time.perf_counter()
    x = np.asarray(embeddings, dtype=np.float32)
    if config.method == "rqvae":
        raw, diag = _rqvae_codes(x, config, device, show_progress)
    elif config.method == "rkmeans":
        raw, diag = _rkmeans_codes(x, config)
    else:  # build_config already rejects other values; this guards direct construction
        raise ValueError(f"semantic_ids.method must be 'rqvae' or 'rkmeans', not {config.method!r}")
    codes = add_disambiguation(raw)
    diag = {"source": "ours", **diag, **collision_diagnostics(raw, config.codebook_size)}
    if labels is not None:
        diag["semantic_coherence_by_prefix"] = [
            semantic_coherence(raw[:, : depth + 1], labels, seed=config.seed)
            for depth in range(raw.shape[1])
        ]
        diag["semantic_coherence"] = diag["semantic_coherence_by_prefix"][0]
    diag["build_seconds"] = round(time.perf_counter() - start, 2)
    sizes = [config.codebook_size] * raw.shape[1] + [int(codes[:, -1].max()) + 1]
    return SemanticIDs(codes=codes, level_sizes=sizes, diagnostics=diag)


def published_semantic_ids(catalog: ItemCatalog, variant: str, *,
                           protocol: str | None = None) -> SemanticIDs:
    """A published index's codes as they are (no disambiguation column: items sharing an ID
    collide and tie), read and verified on every call (cheap, so not cached). An index built
    from interactions is refused under the ``cold_item`` protocol."""
    uses_interactions = variant in PUBLISHED_WITH_INTERACTIONS
    if uses_interactions and protocol == "cold_item":
        raise BenchmarkError(
            f"semantic_ids.source: published:{variant} was built from interactions of an "
            "unknown split, which may include the cold items' own interactions; it is not run "
            "under the cold_item protocol (use loo, or an index built from item text only)")
    codes, facts = read_published_index(catalog, variant)
    diag: dict[str, Any] = {"source": f"published:{variant}",
                            "uses_interactions": uses_interactions, **facts,
                            **collision_diagnostics(codes, CODEBOOK_SIZE)}
    # seed 0 for the sampled estimate: the codes are fixed, so is their diagnostic
    diag["semantic_coherence_by_prefix"] = [
        semantic_coherence(codes[:, : depth + 1], catalog.labels, seed=0)
        for depth in range(codes.shape[1])
    ]
    diag["semantic_coherence"] = diag["semantic_coherence_by_prefix"][0]
    return SemanticIDs(codes=codes, level_sizes=[CODEBOOK_SIZE] * codes.shape[1],
                       diagnostics=diag, disambiguated=False)


# --------------------------------------------------------------------------- quantisers


def _rqvae_codes(x: np.ndarray, cfg: SemanticIDConfig, device: str,
                 show_progress: bool) -> tuple[np.ndarray, dict[str, Any]]:
    # Float sums depend on the thread count, and 200 epochs amplify that into different codes
    # (measured: 2 threads vs 1 changed 99.9% of ML-100K's IDs). On CPU the build therefore
    # runs on one thread, so the same text and config give the same IDs on any machine.
    # It seeds torch's global RNG for itself and gives the caller's state back afterwards, so a
    # method's own initialisation does not depend on whether the IDs came from the cache.
    threads = torch.get_num_threads()
    if device == "cpu":
        torch.set_num_threads(1)
    try:
        with torch.random.fork_rng(devices=[] if device == "cpu" else None):
            return _train_rqvae(x, cfg, device, show_progress)
    finally:
        torch.set_num_threads(threads)


def _train_rqvae(x: np.ndarray, cfg: SemanticIDConfig, device: str,
                 show_progress: bool) -> tuple[np.ndarray, dict[str, Any]]:
    torch.manual_seed(cfg.seed)  # k-means init and dead-code re-seeding draw from torch's RNG
    model = RQVAE(x.shape[1], cfg).to(device)
    data = torch.from_numpy(x).to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    generator = torch.Generator().manual_seed(cfg.seed)
    model.train()
    with torch.no_grad():
        model(data)  # k-means initialisation of every level on the whole catalogue, not a batch
    curve = []
    for _ in tqdm(range(cfg.epochs), desc="RQ-VAE", disable=not show_progress, leave=False):
        order = torch.randperm(len(data), generator=generator).to(device)
        total = 0.0
        for batch in order.split(cfg.batch_size):
            _, _, recon, commit = model(data[batch])
            loss = recon + commit
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            total += float(loss.detach()) * len(batch)
        curve.append(total / len(data))
    model.eval()
    with torch.no_grad():
        _, indices, recon, _ = model(data)
        z = model.encoder(data)
        latent_error = ((model.quantizer(z.unsqueeze(1))[0].squeeze(1) - z) ** 2).sum(-1).mean()
    diag = {
        "method": "rqvae",
        "reconstruction_error": round(float(recon), 6),  # mean squared L2 error per item
        # how far the latent is from its quantised value, relative to the latent's own size
        "latent_quantisation_error": round(float(latent_error / (z**2).sum(-1).mean()), 6),
        "final_train_loss": round(curve[-1], 6) if curve else None,
    }
    return indices.cpu().numpy().astype(np.int64), diag


def _mlp(dims: list[int]) -> nn.Sequential:
    layers: list[nn.Module] = []
    for i, (a, b) in enumerate(zip(dims[:-1], dims[1:], strict=True)):
        layers.append(nn.Linear(a, b))
        if i < len(dims) - 2:
            layers.append(nn.SiLU())
    return nn.Sequential(*layers)


class RQVAE(nn.Module):
    """MLP encoder -> ResidualVQ -> MLP decoder (the TIGER / SID-LLM quantiser)."""

    def __init__(self, in_dim: int, cfg: SemanticIDConfig) -> None:
        super().__init__()
        self.encoder = _mlp([in_dim, *cfg.hidden_dims, cfg.latent_dim])
        self.decoder = _mlp([cfg.latent_dim, *reversed(cfg.hidden_dims), in_dim])
        self.quantizer = ResidualVQ(
            dim=cfg.latent_dim, num_quantizers=cfg.levels, codebook_size=cfg.codebook_size,
            kmeans_init=True, kmeans_iters=cfg.kmeans_iters,
            threshold_ema_dead_code=cfg.dead_code_threshold,
            commitment_weight=cfg.commitment_weight, rotation_trick=cfg.rotation_trick,
        )

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor,
                                                  torch.Tensor]:
        """(reconstruction, codes [B, levels], reconstruction loss, commitment loss)."""
        z = self.encoder(x)
        zq, indices, commit = self.quantizer(z.unsqueeze(1))  # ResidualVQ wants [B, N, D]
        recon_x = self.decoder(zq.squeeze(1))
        recon = ((recon_x - x) ** 2).sum(-1).mean()
        return recon_x, indices.squeeze(1), recon, commit.sum()


def _rkmeans_codes(x: np.ndarray, cfg: SemanticIDConfig) -> tuple[np.ndarray, dict[str, Any]]:
    from sklearn.cluster import KMeans

    residual = x.astype(np.float64)
    codes = np.zeros((len(x), cfg.levels), dtype=np.int64)
    for level in range(cfg.levels):
        k = min(cfg.codebook_size, len(x))
        km = KMeans(n_clusters=k, n_init=3, max_iter=max(cfg.kmeans_iters, 100),
                    random_state=cfg.seed + level).fit(residual)
        codes[:, level] = km.labels_
        residual = residual - km.cluster_centers_[km.labels_]
    diag = {
        "method": "rkmeans",
        # same quantity as the RQ-VAE's: mean squared L2 error of the reconstructed embedding
        "reconstruction_error": round(float((residual**2).sum(1).mean()), 6),
    }
    return codes, diag


# --------------------------------------------------------------------------- IDs and diagnostics


def add_disambiguation(codes: np.ndarray) -> np.ndarray:
    """Append a column numbering items inside each group of identical rows (in item order)."""
    _, inverse = np.unique(codes, axis=0, return_inverse=True)
    inverse = inverse.reshape(-1)
    seen: dict[int, int] = {}
    extra = np.zeros(len(codes), dtype=np.int64)
    for i, group in enumerate(inverse):
        extra[i] = seen.get(int(group), 0)
        seen[int(group)] = extra[i] + 1
    return np.concatenate([codes, extra[:, None]], axis=1)


def tie_groups(codes: np.ndarray) -> np.ndarray | None:
    """Group index (0..G-1, in order of first item) of each row; None when rows are unique."""
    _, first, inverse = np.unique(codes, axis=0, return_index=True, return_inverse=True)
    inverse = inverse.reshape(-1)
    if len(first) == len(codes):
        return None
    order = np.argsort(np.argsort(first, kind="stable"), kind="stable")  # groups by first item
    return order[inverse].astype(np.int64)


def collision_diagnostics(codes: np.ndarray, codebook_size: int) -> dict[str, Any]:
    """Collisions before disambiguation and codebook use per level."""
    _, inverse, counts = np.unique(codes, axis=0, return_inverse=True, return_counts=True)
    group_size = counts[inverse.reshape(-1)]
    alone = int((group_size == 1).sum())
    utilisation, perplexity = [], []
    for level in range(codes.shape[1]):
        freq = np.bincount(codes[:, level], minlength=codebook_size) / len(codes)
        utilisation.append(round(float((freq > 0).mean()), 4))
        nz = freq[freq > 0]
        perplexity.append(round(float(np.exp(-(nz * np.log(nz)).sum())), 2))
    return {
        "n_items": int(len(codes)),
        "unique_ids_before_disambiguation": round(float(len(counts) / len(codes)), 4),
        "distinct_ids": int(len(counts)),  # different full IDs (a collision group counts once)
        "items_with_unique_id": alone,  # items whose full ID no other item has
        "items_with_unique_id_share": round(alone / len(codes), 4),
        # distinct prefixes of the first 1, 2, ..., L codes (the last is distinct_ids)
        "distinct_prefixes": [int(len(np.unique(codes[:, : depth + 1], axis=0)))
                              for depth in range(codes.shape[1])],
        # share of items whose code tuple is shared with at least one other item
        "collision_rate": round(float((group_size > 1).mean()), 4),
        "max_collision_group": int(counts.max()),
        "codebook_utilisation": utilisation,  # share of the K codes used, per level
        "codebook_perplexity": perplexity,  # effective number of codes used, per level
    }


def semantic_coherence(codes: np.ndarray, labels: list[tuple[str, ...]], *,
                       seed: int = 0, max_exact: int = 4000,
                       n_pairs: int = 200_000) -> float | None:
    """P(two items share a label | they share ``codes``) / P(two random items share a label).

    1.0 means the codes carry no label information; higher is better. Exact over all pairs for
    catalogues up to ``max_exact`` items, otherwise estimated from ``n_pairs`` sampled pairs of
    each kind (seeded). None when no item has a label or no two items share a code.
    """
    vocab = sorted({lab for labs in labels for lab in labs})
    if not vocab:
        return None
    index = {lab: j for j, lab in enumerate(vocab)}
    onehot = np.zeros((len(labels), len(vocab)), dtype=np.float32)
    for i, labs in enumerate(labels):
        onehot[i, [index[lab] for lab in labs]] = 1.0
    _, group = np.unique(codes, axis=0, return_inverse=True)
    group = group.reshape(-1)
    n = len(labels)
    if n <= max_exact:
        share_label = (onehot @ onehot.T) > 0
        same_code = group[:, None] == group[None, :]
        off_diag = ~np.eye(n, dtype=bool)
        same = same_code & off_diag
        if not same.any():
            return None
        p_same = share_label[same].mean()
        p_random = share_label[off_diag].mean()
    else:
        rng = np.random.default_rng(seed)
        a, b = rng.integers(0, n, n_pairs), rng.integers(0, n, n_pairs)
        keep = a != b
        p_random = ((onehot[a[keep]] * onehot[b[keep]]).sum(1) > 0).mean()
        order = np.argsort(group, kind="stable")
        starts = np.searchsorted(group[order], group)
        sizes = np.bincount(group)[group]
        a = rng.integers(0, n, n_pairs)
        a = a[sizes[a] > 1]
        if len(a) == 0:
            return None
        b = order[starts[a] + rng.integers(0, sizes[a])]
        keep = a != b
        p_same = ((onehot[a[keep]] * onehot[b[keep]]).sum(1) > 0).mean()
    return round(float(p_same / p_random), 4) if p_random > 0 else None
