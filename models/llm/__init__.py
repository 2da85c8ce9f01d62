"""LLM4Rec models (LLM-SRec, TALLRec, LLaRA, CoLLM, A-LLMRec) on one shared core: ``base`` (the recommender),
``config``, ``data``, ``heads``, ``fit`` (training schedule), ``vectors`` (evaluation side), ``generation``
(title-generation task), ``teacher`` (the shared SASRec teacher) and ``recipes`` (official settings)."""
