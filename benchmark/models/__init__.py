"""Shared model machinery (SASRec backbone, text encoder, semantic IDs, LLM loading, ...).

Imports the protocol's types and cache only, never its runner (checked by lint-imports).
"""
