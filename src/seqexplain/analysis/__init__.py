"""Analyses of trained models: state gradients (memory of recurrent and transformer LMs), spectra, word classes."""
