"""Binary networks (±1 weights and biases, step activations) trained by sampling, and their 2-of-3 vote.

``model``: the networks in numpy; ``train``: the flip-and-keep trainer on scikit-learn's ``load_digits``;
``onnx_export``: one network, or three and their vote as one Sign network; ``vote``: the vote's queries, decided
exactly (``encode/bnn.py`` + CP-SAT) and replayed on every network. ``python -m nnverify.binary`` rebuilds all.
"""
