"""Indexing: photos to vectors (scan, decode, encode with the ONNX bundle)."""
