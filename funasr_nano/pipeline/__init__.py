"""The pipeline above the engine: the model users hold (speech_model), decoding with the repetition guard
and streaming (decoding), transcription (transcribe), live streaming (streaming), translation (translate,
translators)."""
