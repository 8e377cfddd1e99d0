"""Speech-LLM families (one folder each) and what they share: the family interface (base), the chat
format from the tokenizer (chat), LoRA adapters on the LLM (lora)."""
