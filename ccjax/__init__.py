"""ccjax: a JAX-native generator for the CausalCircuit dataset."""

__version__ = "0.1.0"
