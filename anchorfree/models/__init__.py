"""Detector building blocks: backbone → neck → head."""
