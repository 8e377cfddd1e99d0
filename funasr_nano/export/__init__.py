"""Export: checkpoint writers (checkpoint), LoRA merge (merge), GGUF for llama.cpp (gguf, gguf_architectures,
gguf_folder)."""
