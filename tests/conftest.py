from pathlib import Path

import pytest

from forgetkit.testing.synthetic import make_image_folder


@pytest.fixture(scope="session")
def shapes(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A drawn 12-class image folder: shapes/{train,val}/<s0000000..>/*.png + class_names.txt."""
    return make_image_folder(tmp_path_factory.mktemp("shapes"), splits={"train": 3, "val": 2})
