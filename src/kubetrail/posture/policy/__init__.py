"""Audit ``Policy`` model with the apiserver's matching; generate, lint, simulate and explain on top."""
