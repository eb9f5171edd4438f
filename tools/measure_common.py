"""What the SID-LLM measurement tools share: the stage-2 model they time, and their output.

Imported by the scripts beside it (``python tools/<script>.py`` puts this folder first on the
import path).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import numpy as np
import torch

from benchmark.models.llm import load_causal_lm
from benchmark.models.sid_lm import SIDVocab

LORA_TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


def stage2_model(backbone: str, device: str, codes: np.ndarray, sizes: list[int], seed: int = 0
                 ) -> tuple[Any, Any, SIDVocab]:
    """The backbone with one token per code added and LoRA (r 16 on every projection) plus the
    new token rows trainable, as the SID-LLM's stage 2 trains it: (peft model, tokenizer,
    vocabulary)."""
    from peft import LoraConfig, get_peft_model

    model, tok = load_causal_lm(backbone, device=device, seed=seed)
    vocab = SIDVocab(codes, sizes)
    vocab.extend(tok, model, seed=seed)
    torch.manual_seed(seed)
    lora = LoraConfig(r=16, lora_alpha=32, lora_dropout=0.0, target_modules=LORA_TARGETS,
                      trainable_token_indices={"embed_tokens": vocab.new_ids})
    return get_peft_model(model, lora), tok, vocab


def step_parser(description: str, steps: int, rounds: int) -> argparse.ArgumentParser:
    """The options every step-timing tool takes: the backbone, the training batch's shape
    (``--batch`` sequences of ``--prompt`` + ``--answer`` tokens; defaults: the ML-100K stage-2
    shape), how many steps per round and rounds, threads, and where to write the JSON."""
    ap = argparse.ArgumentParser(description=description)
    ap.add_argument("--backbone", default="packaged:smollm2")
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--prompt", type=int, default=57)
    ap.add_argument("--answer", type=int, default=6)
    ap.add_argument("--steps", type=int, default=steps)
    ap.add_argument("--rounds", type=int, default=rounds)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", type=Path, default=None)
    return ap


def emit(result: dict[str, Any], out: Path | None) -> None:
    """Print ``result`` as indented JSON and, with ``out``, write the same text there."""
    text = json.dumps(result, indent=1)
    print(text)
    if out:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(text + "\n")
