"""Numba CPU kernels, one module per algorithm family (see ``kernels`` for the contract)."""
