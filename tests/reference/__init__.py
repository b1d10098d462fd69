"""Test-only references (not part of the installed package).
"""
