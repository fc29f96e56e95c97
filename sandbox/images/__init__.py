"""Building the sandbox's images with no container registry.

`ensure_images()` debootstraps a Debian base (`BASE_IMAGE`), then builds the agent image
(`AGENT_IMAGE`, from containers/agent/) and the stub services' image (`STUBS_IMAGE`, from
containers/stubs/) on it, skipping any image whose recipe sha is unchanged.
"""

from __future__ import annotations

from sandbox.images.build import (
    ALL_IMAGES,
    ImageStatus,
    docker_client,
    ensure_images,
    image_digest,
    image_status,
)
from sandbox.images.recipes import AGENT_IMAGE, BASE_IMAGE, STUBS_IMAGE

__all__ = [
    "AGENT_IMAGE",
    "ALL_IMAGES",
    "BASE_IMAGE",
    "STUBS_IMAGE",
    "ImageStatus",
    "docker_client",
    "ensure_images",
    "image_digest",
    "image_status",
]
