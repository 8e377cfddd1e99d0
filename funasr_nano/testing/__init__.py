"""Test scaffolding: tiny random checkpoints in the real layouts (tiny). Production code does not import it."""
