"""Provenance of generated videos (issue 16): the invisible watermark and reading it back."""
