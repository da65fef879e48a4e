"""The evaluation layer: SIGHAN segmentation scores, entity F1, ROUGE/BLEU, Spearman. No torch."""
