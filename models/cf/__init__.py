"""CF-SRec models over item ids (SASRec, GRU4Rec, BERT4Rec, NextItNet); what they share is in ``common``."""
