"""One recipe per reproduced paper; each composes the layers below and nothing else."""
