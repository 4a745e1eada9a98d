"""The labeling room's part of the JSON API: one router per area, mounted together under /api/v1/."""

from ninja import Router

from . import llm_labels, projects, queue
from .auth import api_auth

router = Router()
router.add_router("", projects.router)
router.add_router("", queue.router)
router.add_router("", llm_labels.router)

__all__ = ["api_auth", "router"]
