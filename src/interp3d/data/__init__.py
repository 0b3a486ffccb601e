"""Datasets: synthetic skeletons, the rendered furniture world and real-data formats."""
