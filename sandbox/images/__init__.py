"""Building the sandbox's images with no container registry.

`sandbox.images.build.ensure_images()` debootstraps a Debian base (`BASE_IMAGE`), then
builds the agent image (`AGENT_IMAGE`, from containers/agent/) and the stub services'
image (`STUBS_IMAGE`, from containers/stubs/) on it, skipping any image whose recipe
sha is unchanged. This face exports only names, so importing an image name never
loads the Docker SDK.
"""

from __future__ import annotations

from sandbox.images.recipes import AGENT_IMAGE, BASE_IMAGE, STUBS_IMAGE

__all__ = ["AGENT_IMAGE", "BASE_IMAGE", "STUBS_IMAGE"]
