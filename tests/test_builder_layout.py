"""Builders share code only through shared modules (sources, hf_images, classification, output, ...): no module of
datasets_builders imports a builder module, i.e. one holding a function registered with `@register`."""

import pytest
from test_import_graph import import_graph

from datasets_builders import BUILDERS
from forgetkit.errors import ForgetkitError


def builder_modules() -> set[str]:
    return {info.build.__module__ for info in BUILDERS.values()}


def builder_imports(graph: dict[str, set[str]]) -> dict[str, list[str]]:
    """Each datasets_builders module that imports a builder module (lazy and type-only imports count), and which."""
    builders = builder_modules()
    found = {module: sorted(targets & builders) for module, targets in graph.items()}
    return {module: targets for module, targets in found.items() if module.startswith("datasets_builders") and targets}


def test_no_module_of_datasets_builders_imports_a_builder() -> None:
    builders = builder_modules()
    assert {"datasets_builders.flowers102_vqa", "datasets_builders.imagenet_vqa", "datasets_builders.mix"} <= builders
    assert not {"datasets_builders.sources", "datasets_builders.classification"} & builders
    assert builder_imports(import_graph()) == {}


def test_the_check_sees_a_builder_importing_another() -> None:
    graph = import_graph()
    graph["datasets_builders.stanford_cars_vqa"].add("datasets_builders.flowers102_vqa")
    assert builder_imports(graph) == {"datasets_builders.stanford_cars_vqa": ["datasets_builders.flowers102_vqa"]}


def test_a_registration_declares_the_dataset_it_writes() -> None:
    from datasets_builders.registry import output_name

    assert output_name("imagenet-vqa", "train") == "imagenet_vqa_train"
    assert output_name("flowers102-vqa", "test") == "flowers102_vqa_test"
    assert output_name("imagewikiqa-classlabel") == "imagewikiqa_classlabel"
    with pytest.raises(ForgetkitError, match="mllm-cl names its dataset from more than the split"):
        output_name("mllm-cl")
