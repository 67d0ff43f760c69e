"""`serve`: a local page to draw a digit on and watch a trained run's network read it, layer by layer."""

from lenet_bench.serve.app import create_app, listen, run_server

__all__ = ["create_app", "listen", "run_server"]
