import pytest

from file_pipeline.domain.names import UnsafeName, check_blob_name


@pytest.mark.parametrize("name", ["acme001/2026/11/payroll.csv", "x.ach", "a b/ü.xml"])
def test_safe_names_pass(name):
    assert check_blob_name(name) == name


@pytest.mark.parametrize(
    "name",
    [
        "",
        "../etc/passwd",
        "a/../../b",
        "/abs/path",
        "C:evil",
        "a\\b",
        "a\x00b",
        "a//b",
        "./a",
        "a/",
        "x" * 1025,
        "tab\tname",
    ],
)
def test_unsafe_names_are_rejected(name):
    with pytest.raises(UnsafeName):
        check_blob_name(name)
