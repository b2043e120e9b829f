"""Datasets: paired folders, labels, splits."""
