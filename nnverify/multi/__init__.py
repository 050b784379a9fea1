"""Queries over several networks (VNN-LIB 2.x): binding to ONNX models, the product graph, replay on each model."""
