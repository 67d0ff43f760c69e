from lenet_bench.cli import entry_point

entry_point()
