"""Readers for corpora and annotations, the data root, vocabularies and batching."""
