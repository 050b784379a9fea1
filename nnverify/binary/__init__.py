"""Binary networks (±1 weights and biases, step activations) trained by sampling, and their 2-of-3 vote verified
as one system: ``model``, ``train``, ``onnx_export``, ``vote``, ``figures``; ``python -m nnverify.binary`` rebuilds
the shipped example (``properties/queries/vote/``, ``bench/results/vote/``)."""
