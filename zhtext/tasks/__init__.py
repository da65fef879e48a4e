"""The four model classes (Tagger, TitleGenerator, TextGenerator, Embedder), one API for all."""
