from collections.abc import Iterator
from pathlib import Path

import pytest
from slurm_cluster import SlurmCluster
from slurm_cluster import unavailable as slurm_cluster_unavailable

from forgetkit.clip_encoder import ClipSpec
from forgetkit.fixtures.synthetic import make_image_folder


@pytest.fixture(scope="session")
def shapes(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A drawn 12-class image folder: shapes/{train,val}/<s0000000..>/*.png + class_names.txt."""
    return make_image_folder(tmp_path_factory.mktemp("shapes"), splits={"train": 3, "val": 2})


@pytest.fixture(scope="session")
def offline_clip(tmp_path_factory: pytest.TempPathFactory) -> ClipSpec:
    """The real open_clip code path with a tiny random-weight model (no download), caching into a temp dir."""
    return ClipSpec(
        model="tiny-random-clip", pretrained="none", batch_size=16, cache_dir=tmp_path_factory.mktemp("clip-cache")
    )


@pytest.fixture(scope="session")
def slurm_cluster() -> Iterator[SlurmCluster]:
    """A private single-node Slurm cluster (munged, slurmctld, slurmd), started once and stopped at the end."""
    reason = slurm_cluster_unavailable()
    if reason:
        pytest.skip(f"no test Slurm cluster: {reason}")
    cluster = SlurmCluster().start()
    try:
        yield cluster
    finally:
        cluster.stop()
