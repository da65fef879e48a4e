"""The neural layer: hub loading, from-scratch builders, batching, the one Trainer, decoding,
incremental steps and the torch CRF. Everything here may import torch and transformers."""
