"""float32 against bfloat16 autocast for the SID-LLM's three kinds of work, timed in one run.

For each precision (``benchmark.models.llm.compute_precision``), alternately, so that load on the
machine affects both alike:

- training: ``StepTrainer`` steps (LoRA + new rows) on ``--batch`` sequences of ``--prompt`` +
  ``--answer`` tokens, in tokens per second;
- forward: one scoring pass over the same sequences, in tokens per second;
- ranking: the constrained beam search (width ``--width``, top-20 lists) over a trie of
  ``--items`` random 4-level IDs for ``--users`` prompts, in seconds per user.

A benchmark, not a test: the figures depend on the machine and its load. Quality is a separate
question (validation NDCG@10 of a trained model at each precision). Run from the repository
root: ``python tools/llm_precision.py [--backbone tiny:random]``; prints one JSON object.
"""

from __future__ import annotations

import platform
import time

import numpy as np
import torch
from measure_common import emit, stage2_model, step_parser

from benchmark.models.llm import PRECISIONS, compute_precision
from benchmark.models.sid_lm import Example, SIDTrie, StepTrainer, constrained_beam_search


def build(backbone: str, device: str, items: int):
    rng = np.random.default_rng(0)
    sizes = [32, 32, 32, 8]
    codes = np.unique(np.stack([rng.integers(0, s, items * 2) for s in sizes], 1), axis=0)
    codes = codes[rng.permutation(len(codes))[:items]]
    model, tok, vocab = stage2_model(backbone, device, codes, sizes)
    return model, tok, vocab, SIDTrie(codes, sizes)


def main() -> None:
    ap = step_parser(__doc__.splitlines()[0], steps=2, rounds=2)
    ap.add_argument("--users", type=int, default=32)
    ap.add_argument("--items", type=int, default=4344)
    ap.add_argument("--width", type=int, default=20)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    model, tok, vocab, trie = build(args.backbone, device, args.items)
    rng = np.random.default_rng(0)
    n_old = len(tok) - len(vocab.new_ids)
    n = args.batch * (args.steps * (args.rounds + 1) + 1) * len(PRECISIONS)
    examples = [Example(rng.integers(0, n_old, args.prompt).tolist(),
                        rng.choice(vocab.new_ids, args.answer).tolist()) for _ in range(n)]
    trainer = StepTrainer(model, examples, steps=n // args.batch, batch_size=args.batch,
                          lr=1e-4, pad=tok.pad_token_id, max_len=args.prompt + args.answer,
                          seed=0)
    ids = torch.as_tensor([ex.prompt + ex.target for ex in examples[:args.batch]],
                          device=device)
    prompts = [rng.integers(0, n_old, args.prompt).tolist() for _ in range(args.users)]
    none = [np.zeros(0, dtype=np.int64)] * args.users

    def forward(steps: int) -> None:
        model.eval()
        with torch.no_grad():
            for _ in range(steps):
                model(input_ids=ids, use_cache=False)

    def rank(_: int) -> None:
        model.eval()
        constrained_beam_search(model, prompts, none, trie, vocab, width=args.width, k=20,
                                pad=tok.pad_token_id)

    work = {"train": trainer.advance, "forward": forward, "rank": rank}
    seconds = {(p, w): 0.0 for p in PRECISIONS for w in work}
    for precision in PRECISIONS:  # warm-up
        with compute_precision(device, precision):
            trainer.advance(1)
            forward(1)
    for _ in range(args.rounds):
        for precision in PRECISIONS:
            for name, fn in work.items():
                with compute_precision(device, precision):
                    start = time.perf_counter()
                    fn(args.steps)
                    if device == "cuda":
                        torch.cuda.synchronize()
                    seconds[precision, name] += time.perf_counter() - start
    tokens = args.steps * args.rounds * args.batch * (args.prompt + args.answer)
    out = {"backbone": args.backbone, "device": device,
           "device_name": torch.cuda.get_device_name() if device == "cuda"
           else platform.processor() or platform.machine(),
           "threads": torch.get_num_threads(), "torch": torch.__version__,
           "batch": args.batch, "tokens_per_sequence": args.prompt + args.answer,
           "ranking": {"users": args.users, "items": len(trie.codes), "width": args.width}}
    for precision in PRECISIONS:
        out[precision] = {
            "train_tokens_per_s": round(tokens / seconds[precision, "train"], 1),
            "forward_tokens_per_s": round(tokens / seconds[precision, "forward"], 1),
            "rank_seconds_per_user": round(seconds[precision, "rank"]
                                           / (args.rounds * args.users), 4)}
    out["bfloat16_speedup"] = {k: round(out["bfloat16"][k] / out["float32"][k], 3)
                               if "tokens" in k else
                               round(out["float32"][k] / out["bfloat16"][k], 3)
                               for k in out["float32"]}
    emit(out, args.out)


if __name__ == "__main__":
    main()
