"""specviz: instrumented speculative decoding and single-task vs multitask studies."""

__version__ = "0.1.0"
