"""Training throughput of the SID-LLM's step against a bare torch step (issue 13).

Both steps train the same model (the backbone with the SID tokens added and LoRA + the new token
rows trainable, as in stage 2) on the same batch shape: ``--batch`` sequences of ``--prompt``
prompt tokens plus ``--answer`` answer tokens (defaults: the ML-100K stage-2 shape, 8 x (57 + 6)).

- ours: ``StepTrainer`` (benchmark/models/sid_lm.py): left padding, logits only for the answer
  positions (``logits_to_keep``), cross-entropy over the answer tokens, gradient clipping, AdamW.
- bare: ``model(input_ids, labels=input_ids)``, HF's cross-entropy over every position,
  ``backward()``, AdamW: the plainest loop over the same model and tokens.

The two are timed alternately (``--rounds`` rounds of ``--steps`` steps each, after one warm-up
step), so load on the machine affects both alike; the ratio is ours / bare in tokens per second.
Run from the repository root: ``python tools/llm_step_throughput.py [--backbone tiny:random]``.
Prints one JSON object (and writes it to ``--out`` if given).
"""

from __future__ import annotations

import platform
import time

import numpy as np
import torch
from measure_common import emit, stage2_model, step_parser

from benchmark.models.sid_lm import Example, StepTrainer


def build(backbone: str, device: str, seed: int):
    codes = np.stack(np.meshgrid(*(np.arange(s) for s in (8, 8, 4)), indexing="ij"), -1)
    return stage2_model(backbone, device, codes.reshape(-1, 3), [8, 8, 4], seed)


def main() -> None:
    ap = step_parser(__doc__.splitlines()[0], steps=3, rounds=3)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    model, tok, vocab = build(args.backbone, device, seed=0)
    rng = np.random.default_rng(0)
    n_old = len(tok) - len(vocab.new_ids)
    n = args.batch * (args.steps * (args.rounds + 1) + 1)
    examples = [Example(rng.integers(0, n_old, args.prompt).tolist(),
                        rng.choice(vocab.new_ids, args.answer).tolist()) for _ in range(n)]
    ours = StepTrainer(model, examples, steps=args.steps * (args.rounds + 1) + 1,
                       batch_size=args.batch, lr=1e-4, pad=tok.pad_token_id,
                       max_len=args.prompt + args.answer, seed=0)
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=1e-4, weight_decay=0.0)
    ids = torch.as_tensor([ex.prompt + ex.target for ex in examples[:args.batch]],
                          device=device)

    def bare(steps: int) -> None:
        model.train()
        for _ in range(steps):
            loss = model(input_ids=ids, labels=ids, use_cache=False).loss
            loss.backward()
            opt.step()
            opt.zero_grad(set_to_none=True)

    def timed(fn, steps: int) -> float:
        if device == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        fn(steps)
        if device == "cuda":
            torch.cuda.synchronize()
        return time.perf_counter() - start

    ours.advance(1)
    bare(1)  # warm-up
    t_ours = t_bare = 0.0
    for _ in range(args.rounds):
        t_ours += timed(ours.advance, args.steps)
        t_bare += timed(bare, args.steps)
    tokens = args.steps * args.rounds * args.batch * (args.prompt + args.answer)
    out = {"backbone": args.backbone, "device": device,
           "device_name": torch.cuda.get_device_name() if device == "cuda" else platform.processor()
           or platform.machine(),
           "dtype": str(next(model.parameters()).dtype), "threads": torch.get_num_threads(),
           "batch": args.batch, "tokens_per_sequence": args.prompt + args.answer,
           "steps_timed_each": args.steps * args.rounds,
           "ours_tokens_per_s": round(tokens / t_ours, 1),
           "bare_tokens_per_s": round(tokens / t_bare, 1),
           "ratio_ours_over_bare": round(t_bare / t_ours, 3),
           "torch": torch.__version__}
    emit(out, args.out)


if __name__ == "__main__":
    main()
