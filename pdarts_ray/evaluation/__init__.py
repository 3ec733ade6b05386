"""Evaluation: retraining a genotype from scratch (networks, published genotypes, counting,
the retraining loop and its config). Plain PyTorch, no Ray; imports only the core."""
