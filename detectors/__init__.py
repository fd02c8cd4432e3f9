"""Detectors: everything that scores transcripts (higher = more suspicious)."""
