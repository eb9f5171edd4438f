"""SID-LLM: a causal LM whose vocabulary holds the catalogue's semantic IDs.

Items are written as ``<|sid_start|><|sid_0_a|>...<|sid_3_d|><|sid_end|>`` (semantic IDs from
benchmark.models.semantic_ids). Stage 1 trains only the new token rows on catalogue alignment tasks
(SID -> title, title -> SID, SID -> genres/year, and with ``request_alignment`` a genre request
-> an item's SID): item text only, so it is cached by catalogue and shared by both protocols.
Stage 2 fine-tunes on training histories -> next SID (LoRA + the new rows by default, full
fine-tuning by config), mixed with the alignment tasks so the model keeps its language; a
share of the examples carries a genre request taken from the target's catalogue labels, which
is what makes the model steerable. Ranking is constrained beam search
over the trie of valid SIDs minus the user's history (benchmark/models/sid_lm.py).

Deviations from the reference work (a 2-core CPU, see configs/methods/sid_llm.yaml): a 135M
backbone instead of Qwen3-8B, LoRA instead of full fine-tuning in stage 2, a few hundred steps
instead of epochs over 4.2M samples, histories cut to the last ``history_items`` items, and no
validate() calls by default (each costs a full beam-search pass over every user).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

import numpy as np
import torch

from adapters import sid_llm_diagnostics as diag
from adapters import sid_llm_explain as explain
from benchmark.adapter import AdapterBase, RunContext, TrainData, UserBatch
from benchmark.config import (
    require_at_least,
    require_nested,
    require_positive,
    require_probability,
    require_range,
)
from benchmark.models.llm import compute_precision, frozen_precision
from benchmark.models.sid_lm import (
    Prompter,
    SIDTrie,
    SIDVocab,
    StepTrainer,
    constrained_beam_search,
    inference_weights,
    train_steps,
)
from benchmark.models.training import get_or_train, train_with_patience
from benchmark.registry import register

VERSION = 3  # 2: LoRA's initial weights seeded by the run's seed (were the RNG's leftover state)
# 3: the semantic IDs' quantiser seed follows the run's seed (was 0 for every seed)


@register("sid_llm")
class SIDLLM(AdapterBase):
    @dataclass
    class Config:
        backbone: str = "packaged:smollm2"  # or a HF id / local dir, or "tiny:random"
        dtype: str = "auto"  # float32 on CPU, bf16 on a GPU that supports it
        # Compute precision (benchmark.models.llm.compute_precision): ranking / generation and
        # training steps under bfloat16 autocast, or float32.
        precision: Literal["float32", "bfloat16"] = "float32"
        train_precision: Literal["float32", "bfloat16"] = "float32"
        semantic_ids: dict = field(default_factory=dict)  # SemanticIDConfig overrides
        history_items: int = 5  # last items of the history in the prompt (paper: 20)
        # Words of each history item's title written before its SID (0: the SID alone, which
        # the backbone cannot read before it learns the codes).
        history_titles: int = 0
        # Initial rows of the code tokens: "noise" (mean of all rows + noise), "text" (mean
        # embedding of the title tokens of the items sharing the code, + the same noise) or
        # "item_text" (the same over the values of the item's text fields: title, year and
        # genres on ML-100K, so a genre word in a request has rows to match).
        init_rows: Literal["noise", "text", "item_text"] = "noise"
        # Which label a steering request names: None = any of the item's labels (MovieLens
        # genres); 0 = the first of its category path (Amazon: the category below the root).
        steer_label_level: int | None = None
        # Stage-1 attribute task: which catalogue fields the answer holds (None: every field
        # but the title) and how the question asks for them.
        attribute_fields: list[str] | None = None
        attribute_question: str = "Genres and year of {sid}?"
        # A fourth alignment task, in stage 1 and in stage 2's alignment mix: the steering
        # request (steer_template, one of the item's labels) with an empty history -> the
        # item's SID. Catalogue text only; it teaches the label -> SID direction of steering.
        request_alignment: bool = False
        max_len: int = 192  # tokens per training sequence (oldest history tokens dropped)
        init_noise: float = 0.02  # new rows = mean + noise * std * N(0, 1)
        stage1_steps: int = 90
        stage1_lr: float = 2e-2  # new rows only: 1e-3 barely moves them (stage-1 loss probe)
        stage1_batch: int = 16
        finetune: Literal["lora", "full"] = "lora"
        lora_r: int = 16
        lora_alpha: int = 32
        lora_targets: list[str] = field(
            default_factory=lambda: ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj",
                                     "up_proj", "down_proj"])
        stage2_steps: int = 60
        stage2_lr: float = 5e-4
        stage2_batch: int = 8
        alignment_share: float = 0.2  # share of stage-2 examples that are stage-1 tasks
        # Share of stage-2 examples that teach explanations: facts of a (history, next item)
        # pair of the training sequences -> a sentence restating them (adapters/
        # sid_llm_explain.py). 0: explain() falls back to the count-based reason.
        explain_share: float = 0.15
        explain_users: int = 200  # users of the faithfulness measurement (0 = off)
        explain_max_new: int = 80  # tokens of a generated explanation (two 6-word titles fit)
        # Titles after the reason's cues ("you liked", "I picked") copied from the facts by
        # constrained decoding (sid_llm_explain.TitleCopy); off: free greedy decoding.
        explain_copy: bool = False
        steer_share: float = 0.2  # share of next-item examples with a genre request
        steer_template: str = "Something from the {genre} genre, please."
        validate_every: int = 0  # stage-2 steps between validate() calls; 0 = never
        # Validation cases per validate() call: a seeded sample (the same at every call), since
        # one beam-search pass over every case costs minutes on a CPU; 0 = every case.
        validate_cases: int = 0
        patience: int = 2
        beam_width: int = 20  # at least the harness's K
        eval_batch: int = 32
        steer_users: int = 200  # seeded users of the steerability measurement (0 = off)
        steer_genres: int = 5
        steer_beam_width: int = 10  # its lists are top-10s: a narrower beam halves its cost
        # Protocols whose run measures steerability and the stage-2 round trip / invalid rate
        # (each costs beam searches; they describe the model, not the protocol).
        diagnostic_protocols: list[str] = field(default_factory=lambda: ["loo"])
        roundtrip_items: int = 200
        invalid_sample: int = 100  # users for the unconstrained-decoding invalid-ID rate

        def __post_init__(self) -> None:
            for key in ("history_items", "max_len", "stage1_batch", "stage2_batch", "lora_r",
                        "lora_alpha", "patience", "beam_width", "eval_batch", "steer_genres",
                        "steer_beam_width"):
                require_at_least(key, getattr(self, key), 1)
            for key in ("stage1_steps", "stage2_steps", "validate_every", "validate_cases",
                        "steer_users", "explain_users", "explain_max_new",
                        "roundtrip_items", "invalid_sample", "history_titles"):
                require_at_least(key, getattr(self, key), 0)  # 0 = skip / off
            for key in ("stage1_lr", "stage2_lr"):
                require_positive(key, getattr(self, key))
            require_range("init_noise", self.init_noise, 0)
            require_at_least("steer_label_level", self.steer_label_level, 0, optional=True)
            if "{sid}" not in self.attribute_question:
                raise ValueError("attribute_question must contain {sid}")
            for key in ("alignment_share", "steer_share", "explain_share"):
                require_probability(key, getattr(self, key))
            for key in ("precision", "train_precision"):
                if getattr(self, key) not in ("float32", "bfloat16"):
                    raise ValueError(f"{key} must be float32 or bfloat16")
            if self.alignment_share + self.explain_share > 1:
                raise ValueError("alignment_share + explain_share must be at most 1")
            unknown = sorted(set(self.diagnostic_protocols) - {"loo", "cold_item"})
            if unknown:
                raise ValueError(f"diagnostic_protocols: {unknown} are not loo or cold_item")
            from benchmark.models.semantic_ids import SemanticIDConfig

            require_nested("semantic_ids", SemanticIDConfig, self.semantic_ids)

    needs = frozenset({"item_text"})
    output = "ranking"
    wants_gpu = True

    # ------------------------------------------------------------------ fit

    def fit(self, train: TrainData, validate: Callable[..., float], ctx: RunContext) -> None:
        from benchmark.models.llm import load_causal_lm

        cfg, self.ctx, self.train = self.config, ctx, train
        self.catalog = train.catalog
        codes, level_sizes = self._semantic_ids(train, ctx)
        self.model, self.tok = load_causal_lm(cfg.backbone, device=ctx.device, dtype=cfg.dtype,
                                              seed=ctx.seed)
        self.vocab = SIDVocab(codes, level_sizes)
        titles = self._init_texts()
        self.vocab.extend(self.tok, self.model, noise=cfg.init_noise, seed=ctx.seed,
                          titles=titles)
        self.trie = SIDTrie(codes, level_sizes)
        # Items that share a full ID are one leaf of the trie: tied in the ranking.
        self.tie_groups = None if self.trie.unique else self.trie.group
        self.prompter = Prompter(self.tok, self.vocab, self.catalog, cfg.history_items,
                                 cfg.history_titles, cfg.steer_label_level,
                                 cfg.attribute_fields, cfg.attribute_question,
                                 cfg.request_alignment, cfg.steer_template)
        self.pad = self.tok.pad_token_id
        # Facts of the explanations: who bought what together in the training sequences, and
        # each item's first semantic-ID code (its family: items described alike).
        self.co_purchases = explain.CoPurchases(train.sequences, train.n_items)
        self.families = np.asarray(codes)[:, 0]
        torch.manual_seed(ctx.seed)  # LoRA's initial weights: the same whatever ran before
        self.model = self._wrap_peft(self.model)
        self._diag: dict[str, Any] = {"semantic_id_levels": level_sizes}
        progress = _progress(ctx.show_progress)

        # Stage 1: new token rows only; item text only -> keyed by the catalogue.
        self._set_trainable(stage=1)
        key1 = ["sid_llm_stage1", VERSION, ctx.catalog_hash, codes, self._stage1_config(),
                ctx.seed]
        meta = self._checkpoint(key1, lambda: self._stage1(ctx, progress))
        self._diag["stage1"] = meta["stats"]
        self._diag["roundtrip_after_stage1"] = meta["roundtrip"]

        # Stage 2: behaviour (training sequences only) + alignment; keyed by the training data.
        self._set_trainable(stage=2)
        key2 = ["sid_llm_stage2", VERSION, ctx.train_hash, ctx.catalog_hash, codes,
                self._stage2_config(), ctx.seed]
        self._diagnosed = ctx.protocol in cfg.diagnostic_protocols

        def stage2() -> dict[str, Any]:
            meta = self._stage2(train, validate, ctx, progress)
            meta["roundtrip"] = meta["invalid_id_rate_unconstrained"] = "not measured"
            if self._diagnosed:
                meta["roundtrip"] = diag.roundtrip(self, cfg.roundtrip_items)
                meta["invalid_id_rate_unconstrained"] = diag.invalid_rate(
                    self, train.sequences, cfg.invalid_sample, ctx.seed)
            return meta

        meta = self._checkpoint(key2, stage2)
        self._diag.update(stage2=meta["stats"], roundtrip_after_stage2=meta["roundtrip"],
                          invalid_id_rate_unconstrained=meta["invalid_id_rate_unconstrained"])
        self.model.eval()

    def _stage1(self, ctx: RunContext, progress: Callable | None) -> dict[str, Any]:
        cfg = self.config
        ex = self.prompter.alignment_examples(np.arange(len(self.catalog)))
        stats = self._train(ex, ctx, steps=cfg.stage1_steps, batch_size=cfg.stage1_batch,
                            lr=cfg.stage1_lr, seed=ctx.seed, progress=progress,
                            desc="sid_llm stage 1")
        return {"stats": stats, "roundtrip": diag.roundtrip(self, cfg.roundtrip_items)}

    def _train(self, examples: list, ctx: RunContext, *, steps: int, batch_size: int,
               **kwargs: Any) -> dict[str, Any]:
        with frozen_precision(self.model, ctx.device, self.config.train_precision):
            stats = train_steps(self.model, examples, steps=steps, batch_size=batch_size,
                                pad=self.pad, max_len=self.config.max_len, **kwargs)
        ctx.count_examples(stats["steps"] * batch_size)
        return stats

    def _stage2(self, train: TrainData, validate: Callable[..., float], ctx: RunContext,
                progress: Callable | None) -> dict[str, Any]:
        cfg = self.config
        rng = np.random.default_rng(ctx.seed + 1)
        n_total = cfg.stage2_steps * cfg.stage2_batch
        n_align = int(round(cfg.alignment_share * n_total))
        n_explain = int(round(cfg.explain_share * n_total))
        examples = self.prompter.next_item_examples(train.sequences,
                                                    n_total - n_align - n_explain, rng,
                                                    cfg.steer_share, cfg.steer_template)
        if n_explain:
            examples += explain.explanation_examples(self.prompter, train.sequences,
                                                     n_explain, rng, self.co_purchases,
                                                     self.families)
        examples += self.prompter.alignment_examples(rng.integers(0, len(self.catalog), n_align),
                                                     rng)
        if cfg.validate_every <= 0:
            stats = self._train(examples, ctx, steps=cfg.stage2_steps,
                                batch_size=cfg.stage2_batch, lr=cfg.stage2_lr, seed=ctx.seed,
                                progress=progress, desc="sid_llm stage 2")
            ctx.report_stop("step_cap")
            return {"stats": stats}
        # Model selection on validate(): one optimiser and schedule over all stage-2 steps,
        # validated every `validate_every` steps; the best trainable state is kept.
        trainer = StepTrainer(self.model, examples, steps=cfg.stage2_steps,
                              batch_size=cfg.stage2_batch, pad=self.pad, max_len=cfg.max_len,
                              lr=cfg.stage2_lr, seed=ctx.seed, progress=progress,
                              desc="sid_llm stage 2")

        def chunk(number: int) -> None:
            with frozen_precision(self.model, ctx.device, cfg.train_precision):
                ctx.count_examples(trainer.advance(cfg.validate_every) * cfg.stage2_batch)

        def check() -> float:
            return validate(cfg.validate_cases) if cfg.validate_cases else validate()

        stopped = train_with_patience(chunk, check,
                                      max_rounds=-(-cfg.stage2_steps // cfg.validate_every),
                                      patience=cfg.patience, snapshot=self._trainable_state,
                                      cap_reason="step_cap")
        self.model.load_state_dict(stopped.best_state, strict=False)
        ctx.report_stop(stopped.reason)
        return {"stats": trainer.stats() | {"chunks": stopped.rounds}}

    # ------------------------------------------------------------------ data

    def _init_texts(self) -> list[str] | None:
        """The text whose token embeddings start each code's row (None: noise rows)."""
        cat = self.catalog
        if self.config.init_rows == "text":
            return [cat.title(i) for i in range(len(cat))]
        if self.config.init_rows == "item_text":
            return [" ".join(cat.text_attributes(i).values()) or cat.title(i)
                    for i in range(len(cat))]
        return None

    def _semantic_ids(self, train: TrainData, ctx: RunContext) -> tuple[np.ndarray, list[int]]:
        from benchmark.models.semantic_ids import build_semantic_ids, semantic_id_config

        sid_cfg = semantic_id_config(self.config.semantic_ids, ctx.seed)
        sids = build_semantic_ids(train.catalog, sid_cfg, cache=ctx.cache, device=ctx.device,
                                  show_progress=ctx.show_progress, protocol=ctx.protocol)
        self._sid_diagnostics = sids.diagnostics
        return sids.codes, list(sids.level_sizes)

    # ------------------------------------------------------------------ trainable state

    def _wrap_peft(self, model: Any) -> Any:
        from peft import LoraConfig, get_peft_model

        lora = LoraConfig(r=self.config.lora_r, lora_alpha=self.config.lora_alpha,
                          lora_dropout=0.0, target_modules=list(self.config.lora_targets),
                          trainable_token_indices={"embed_tokens": self.vocab.new_ids})
        return get_peft_model(model, lora)

    def _set_trainable(self, stage: int) -> None:
        """Stage 1: only the new token rows; stage 2: + LoRA (or everything, if full)."""
        for name, p in self.model.named_parameters():
            if "trainable_tokens" in name:
                p.requires_grad_(True)
            elif stage == 2 and (self.config.finetune == "full" or "lora_" in name):
                p.requires_grad_(True)
            else:
                p.requires_grad_(False)

    def _trainable_state(self) -> dict[str, torch.Tensor]:
        return {n: p.detach().cpu().clone() for n, p in self.model.named_parameters()
                if p.requires_grad}

    def _stage1_config(self) -> dict[str, Any]:
        c = self.config
        keys = ["backbone", "dtype", "init_noise", "init_rows", "attribute_fields",
                "attribute_question", "stage1_steps", "stage1_lr", "stage1_batch", "max_len",
                "lora_r", "lora_targets", "roundtrip_items"]
        if c.request_alignment:  # (absent otherwise: earlier stage-1 checkpoints stay valid)
            keys += ["request_alignment", "steer_template", "steer_label_level"]
        if c.train_precision != "float32":  # (likewise)
            keys.append("train_precision")
        return {k: getattr(c, k) for k in keys}

    def _stage2_config(self) -> dict[str, Any]:
        """The settings stage 2's checkpoint depends on: all but those read only after it
        (the steering and explanation measurements) and, when stage 2 does not validate, the
        ranking precision, so a trained model can be ranked at either precision."""
        after = {"steer_users", "steer_genres", "steer_beam_width", "explain_users",
                 "explain_max_new", "explain_copy"}
        if self.config.validate_every <= 0:
            after.add("precision")
        return {k: v for k, v in asdict(self.config).items() if k not in after}

    def _checkpoint(self, key: list, train: Callable[[], dict[str, Any]]) -> dict[str, Any]:
        """``train()``'s meta, or the stored one with its weights loaded into the model. Only
        trainable weights (new rows, LoRA) go into the checkpoint."""
        def build() -> dict[str, Any]:
            meta = train()
            return {"weights": self._trainable_state(), "meta": meta}

        state, cached = get_or_train(self.ctx, "sid_llm", key, build,
                                     map_location=self.ctx.device, weights_only=False)
        if cached:
            missing = self.model.load_state_dict(state["weights"], strict=False)
            assert not missing.unexpected_keys, missing.unexpected_keys
        return state["meta"]

    # ------------------------------------------------------------------ ranking

    def rank(self, users: UserBatch, k: int) -> torch.Tensor:
        return torch.as_tensor(self.recommend_ids(list(users.histories), None, k))

    def recommend_ids(self, histories: list[np.ndarray], requests: list[str | None] | None,
                      k: int, width: int | None = None) -> np.ndarray:
        """Top-k per history (history items excluded inside the decoder), in mini-batches;
        the beam is ``max(width, k)`` wide (``width`` defaults to ``beam_width``)."""
        requests = requests or [None] * len(histories)
        width = max(self.config.beam_width if width is None else width, k)
        out = []
        with inference_weights(self.model, self.config.precision):
            for lo in range(0, len(histories), self.config.eval_batch):
                hs = histories[lo:lo + self.config.eval_batch]
                prompts = [self.prompter.next_item(h, r)
                           for h, r in zip(hs, requests[lo:lo + self.config.eval_batch])]
                with compute_precision(self.ctx.device, self.config.precision):
                    items, _ = constrained_beam_search(
                        self.model, prompts, hs, self.trie, self.vocab,
                        width=width, k=k, pad=self.pad)
                out.append(items)
        return np.concatenate(out) if out else np.zeros((0, k), dtype=np.int64)

    def diagnostics(self) -> dict[str, Any]:
        out = dict(self._diag)
        out["semantic_ids"] = getattr(self, "_sid_diagnostics", {})
        if self.config.steer_users > 0 and self._diagnosed:
            out["steerability"] = diag.steerability(self, self.train.sequences, self.ctx.seed)
        if self.config.explain_users > 0 and self.config.explain_share > 0 and self._diagnosed:
            out["explanations"] = explain.measure(self, self.train.sequences,
                                                  self.config.explain_users,
                                                  self.config.explain_max_new)
        return out

    # ------------------------------------------------------------------ conversation

    def sid_string(self, item: int) -> str:
        return self.vocab.item_text(item)

    def recommend_for(self, history: np.ndarray, prompt: str | None, k: int) -> list[int]:
        items = self.recommend_ids([np.asarray(history, dtype=np.int64)], [prompt], k)[0]
        return [int(i) for i in items if i >= 0]

    def explain(self, history: np.ndarray, items: list[int], prompt: str | None) -> str:
        """The model's reason for the first pick, written from its catalogue facts; the
        count-based reason when the model was not trained to explain (explain_share 0)."""
        if self.config.explain_share <= 0 or not items:
            return diag.explain(self.catalog, history, items, prompt)
        [(_, text)] = explain.generate(self, [np.asarray(history, dtype=np.int64)],
                                       [int(items[0])], self.config.explain_max_new)
        return text

    def respond(self, messages: list[dict[str, str]], history: np.ndarray) -> str:
        return diag.respond(self, messages, history)


def _progress(show: bool) -> Callable | None:
    if not show:
        return None
    from tqdm.auto import tqdm

    return lambda it, desc: tqdm(it, desc=desc, leave=False)
