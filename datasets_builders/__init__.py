"""One module per source dataset; importing this package registers every builder."""

from datasets_builders import imagenet_vqa  # noqa: F401
from datasets_builders.base import BUILDERS, BuildOptions, BuildResult, get_builder

__all__ = ["BUILDERS", "BuildOptions", "BuildResult", "get_builder"]
