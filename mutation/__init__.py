"""Mutation testing of the conformance suite: semantic mutants and their runner."""
