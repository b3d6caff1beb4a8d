"""Pydantic v2 models of radstream's events and API bodies, its error catalogue and settings.

This package imports nothing else of radstream's, so every other layer can depend on it.
"""
