"""The JSON API under /api/v1/, with its OpenAPI schema at /api/v1/openapi.json."""

from ninja import NinjaAPI

api = NinjaAPI(title="Flywheel API", version="1", urls_namespace="api")
