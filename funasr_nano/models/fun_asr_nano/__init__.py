"""models/fun_asr_nano"""
