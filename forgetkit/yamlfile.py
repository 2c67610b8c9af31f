"""Reading the YAML users hand us (study specs) safely: bounded in what aliases may expand to, errors bounded
in length.

PyYAML's safe loader still builds an alias as often as it is named, so a 400-byte spec of nested aliases
expands to hundreds of millions of values. The document's node graph is walked first, counting values as
construction would, and refused past `MAX_VALUES`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from forgetkit.errors import ForgetkitError

MAX_VALUES = 100_000
"""Far above any study spec (runs/fig2.yaml has a few hundred), far below what exhausts memory."""
MAX_ERROR = 300


def load_yaml(path: Path) -> Any:
    """The YAML document in `path`, or one `ForgetkitError` line saying what is wrong with it."""
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise ForgetkitError(f"{path} is not UTF-8 text; a study spec is a YAML file") from None
    try:
        loader = yaml.SafeLoader(text)
    except yaml.YAMLError as err:
        raise ForgetkitError(f"{path} is not valid YAML: {_bounded(err)}") from None
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        _check_expansion(node, path)
        return loader.construct_document(node)
    except yaml.YAMLError as err:
        raise ForgetkitError(f"{path} is not valid YAML: {_bounded(err)}") from None
    finally:
        loader.dispose()


def _bounded(err: yaml.YAMLError) -> str:
    message = " ".join(str(err).split())
    return message if len(message) <= MAX_ERROR else message[:MAX_ERROR] + "..."


def _check_expansion(root: yaml.Node, path: Path) -> None:
    pending, count = [root], 0
    while pending:
        node = pending.pop()
        count += 1
        if count > MAX_VALUES:
            raise ForgetkitError(
                f"{path}: its aliases expand to more than {MAX_VALUES} values (an alias bomb, or a loop); "
                "write the spec out without nested aliases"
            )
        if isinstance(node, yaml.SequenceNode):
            pending.extend(node.value)
        elif isinstance(node, yaml.MappingNode):
            pending.extend(item for pair in node.value for item in pair)
