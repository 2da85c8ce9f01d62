"""LM-based models that read item text: CTRL (SASRec on title embeddings) and RECFORMER (one text encoder)."""
