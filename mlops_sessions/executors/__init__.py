"""Executors: the only code that touches TensorFlow, Docker, Kubernetes or the network.

Each module imports its heavy libraries inside functions, so importing this package (and
``mlops validate``, ``nox -l``) stays fast and needs none of them.
"""
