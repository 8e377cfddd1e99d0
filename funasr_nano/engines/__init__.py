"""Engines: what decodes a speech LLM's prompt (token ids + audio embeddings) into tokens (base), with
transformers (transformers) or llama.cpp (llamacpp)."""
