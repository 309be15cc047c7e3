import pytest

from daskcal.testing.realdata import DATASETS, RealDataError, fetch_dataset

pytestmark = pytest.mark.realdata


@pytest.mark.parametrize("name", sorted(DATASETS))
def test_datasets_fetch_and_verify(realdata, name):
    path = realdata(name)
    assert path.exists()
    if path.is_dir() and name.endswith("_ms"):
        assert (path / "table.dat").exists()


def test_unknown_dataset_is_refused(tmp_path):
    with pytest.raises(RealDataError, match="unknown data set"):
        fetch_dataset("no-such-data", tmp_path)
