"""The ONNX model bundle: data files read by pixsearch.indexer.models."""
