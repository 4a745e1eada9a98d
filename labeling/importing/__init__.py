"""Streaming import of CSV, JSON Lines and Label Studio exports: check, read, normalize, write in chunks."""
