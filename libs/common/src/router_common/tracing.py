"""OpenTelemetry tracing, off unless an OTLP endpoint is configured.

With `OTEL_EXPORTER_OTLP_ENDPOINT` set (for example `http://collector:4318`),
`configure_tracing` installs an SDK tracer provider that sends spans over
OTLP/HTTP to `<endpoint>/v1/traces`, and instruments FastAPI, httpx and gRPC
(client and server). Without it, nothing is imported or installed, so the
global tracer provider stays OpenTelemetry's no-op default.

Call it once per process, before the gRPC servers and clients are created:
the gRPC instrumentation wraps the constructors, not existing objects.
"""

from __future__ import annotations

import structlog
from fastapi import FastAPI

log = structlog.get_logger(__name__)

# Probes and scrapes would only add noise to the traces.
EXCLUDED_URLS = "healthz,readyz,metrics"
_configured = False


def configure_tracing(service: str, endpoint: str, app: FastAPI | None = None) -> bool:
    """Install tracing for this process when `endpoint` is set; return whether it
    is on. A second call only instruments `app`."""
    global _configured
    if not endpoint:
        return False

    from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor

    if not _configured:
        _install_provider(service, endpoint)
        _configured = True
        log.info("tracing_enabled", endpoint=endpoint)
    if app is not None:
        FastAPIInstrumentor.instrument_app(app, excluded_urls=EXCLUDED_URLS)
    return True


def _install_provider(service: str, endpoint: str) -> None:
    from opentelemetry import trace
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import (
        OTLPSpanExporter,
    )
    from opentelemetry.instrumentation.grpc import (
        GrpcAioInstrumentorClient,
        GrpcAioInstrumentorServer,
    )
    from opentelemetry.instrumentation.httpx import HTTPXClientInstrumentor
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    provider = TracerProvider(resource=Resource.create({"service.name": service}))
    exporter = OTLPSpanExporter(endpoint=f"{endpoint.rstrip('/')}/v1/traces")
    provider.add_span_processor(BatchSpanProcessor(exporter))
    trace.set_tracer_provider(provider)

    HTTPXClientInstrumentor().instrument()
    GrpcAioInstrumentorClient().instrument()
    GrpcAioInstrumentorServer().instrument()
