"""Audio input: any file, bytes or array -> 16 kHz mono float32 (io); voice activity detection (vad)."""
