"""The pipeline above the engine: the model users hold (speech_model), decoding with the repetition guard
and streaming (decoding), the one path from audio to segments (chunks: plan, VAD chunks, decoding, failure
isolation), transcription (transcribe), live streaming (streaming), translation (translate, translators)."""
