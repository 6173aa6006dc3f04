"""Deprecated: moved to :mod:`simenv.tools.docker.image`; this alias is kept for one release."""

import warnings

from simenv.tools.docker.image import BASE_IMAGE, build_base_image, cache_dir, image_exists

__all__ = ["BASE_IMAGE", "build_base_image", "cache_dir", "image_exists"]

warnings.warn(
    "simenv.tools.docker_image moved to simenv.tools.docker.image; import it from there"
    " (the old path is kept for one release, see CHANGELOG.md)",
    DeprecationWarning,
    stacklevel=2,
)
