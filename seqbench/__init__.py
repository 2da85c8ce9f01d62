"""seqbench: a harness that asks whether a sequential recommender uses the order of a user's history."""

__version__ = "0.1.0"
