"""Benchmarks (``make bench``): not science, so outside the package notebooks import.
"""
