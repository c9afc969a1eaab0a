"""Liveness probe for the container health check and load balancers."""

from fastapi import APIRouter

router = APIRouter(tags=["health"])


@router.get("/healthz")
def healthz() -> dict[str, str]:
    """Answer quickly and touch nothing: a probe must not load models or the database."""
    return {"status": "ok"}
