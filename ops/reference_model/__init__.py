"""The reference lesion-detector: synthetic phantoms, training and ONNX export (not clinical)."""
