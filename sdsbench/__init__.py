"""sdsbench: the Yahoo Streaming Benchmark through four generations of streaming systems."""

__version__ = "0.1.0"
