"""Shared building blocks of the Image Router services.

Business logic stays in each service; this package holds only what every
service needs in the same form: settings, the error envelope, JSON logging with
request ids, JWT verification, gRPC helpers and the database plumbing.
"""
