"""Model machinery shared by the methods under test; the protocol never imports it.

- :mod:`~benchmark.models.sasrec`: the SASRec backbone, its training loop and the adapter base
  of every SASRec-backbone method (SASRec-ID, SASRec-SID, SAID, RA-Rec's ID model);
- :mod:`~benchmark.models.text_encoder`: item text -> sentence embeddings (cached);
- :mod:`~benchmark.models.semantic_ids`: embeddings -> residual codes -> unique semantic IDs;
- :mod:`~benchmark.models.llm`: causal-LM backbones (packaged SmolLM2, HF ids, a tiny random one);
- :mod:`~benchmark.models.recformer`: Recformer's encoder and input construction;
- :mod:`~benchmark.models.sid_lm`: semantic-ID tokens in an LM: vocabulary, prompts, training
  steps, constrained beam search;
- :mod:`~benchmark.models.llm_alignment`: per-item virtual tokens a frozen LM learns to read
  back as the item's text (SAID's stage 1);
- :mod:`~benchmark.models.prefix_towers`: ID vectors as per-layer attention prefixes of a frozen
  LM, user and item towers, their losses (RA-Rec);
- :mod:`~benchmark.models.tuning_data`: RA-Rec's denoise-and-balance tuning-data selection;
- :mod:`~benchmark.models.training`: checkpoint get-or-train in the cache and the early-stopping
  loop around ``validate()``;
- :mod:`~benchmark.models.packaged`: backbones shipped inside pip packages.

These modules may import the protocol's types (``benchmark.adapter``, ``benchmark.data``), its
cache, config and errors, never its runner, report or CLI, nor ``adapters`` / ``baselines``
(``lint-imports`` checks it). Importing this package imports nothing heavy.
"""
