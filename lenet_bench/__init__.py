"""lenet_bench: a declarative benchmark and reproduction harness for LeNet on MNIST."""

__version__ = "0.1.0"
