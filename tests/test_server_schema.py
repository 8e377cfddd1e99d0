"""The HTTP request fields derived from the option dataclasses (funasr_nano.server.schema)."""

from funasr_nano.options import DecodingOptions, TranscribeOptions, TranslationOptions
from funasr_nano.server.schema import openapi_properties, option_fields


def test_nested_defaults_come_from_the_outer_fields_default():
    # TranslationOptions.decoding caps the speech pass at 256 tokens; DecodingOptions() alone says 512
    translation = {f.name: f.default for f in option_fields(TranslationOptions)}
    assert translation["max_new_tokens"] == TranslationOptions().decoding.max_new_tokens == 256
    assert DecodingOptions().max_new_tokens != 256
    assert openapi_properties(TranslationOptions)["max_new_tokens"]["default"] == 256
    transcription = {f.name: f.default for f in option_fields(TranscribeOptions)}
    assert transcription["max_new_tokens"] == TranscribeOptions().decoding.max_new_tokens
