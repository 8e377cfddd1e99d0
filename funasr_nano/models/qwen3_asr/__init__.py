"""Qwen3-ASR (Qwen/Qwen3-ASR-0.6B, -1.7B): AuT audio encoder -> projector -> Qwen3 thinker."""
