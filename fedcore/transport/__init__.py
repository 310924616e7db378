"""gRPC transport: server and channel factories with mTLS, chunked streams, status mapping.

Certificates are made by :mod:`fedcore.transport.certs`; this package only uses PEM bytes.
"""
