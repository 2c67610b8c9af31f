"""One module per source dataset; importing this package imports them all, which registers every builder."""

import importlib
import pkgutil

from datasets_builders.registry import BUILDERS, BuildOptions, BuildResult, build, get_builder

for _module in pkgutil.iter_modules(__path__):
    importlib.import_module(f"{__name__}.{_module.name}")

__all__ = ["BUILDERS", "BuildOptions", "BuildResult", "build", "get_builder"]
