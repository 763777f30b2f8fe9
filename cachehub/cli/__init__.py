"""The ``cachehub`` command: tour, local DynamoDB, admin, doctor, migrate, conformance."""

from .app import cli, main

__all__ = ["cli", "main"]
