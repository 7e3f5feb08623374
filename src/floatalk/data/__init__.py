"""Datasets: the prepared-dataset layout, data preparation from videos, and the synthetic world."""
