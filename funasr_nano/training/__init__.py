"""Training: configuration (config), manifests (data), speech synthesis (synth), tokenizers (tokenizer),
batches and loss (batching), the trainer (trainer)."""
