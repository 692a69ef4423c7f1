"""The one registry pattern (helpers.Registry): register, get, list, one unknown-name error."""

import pytest

from helpers import Registry


def test_register_get_list_and_filter():
    reg: Registry = Registry("widget")

    @reg.register("blue")
    def blue():
        return "b"

    reg.add("red", lambda: "r")
    assert reg.get("blue") is blue
    assert reg.get("red")() == "r"
    assert reg.list() == ["blue", "red"]
    assert reg.list(filter=lambda name, entry: entry is blue) == ["blue"]
    assert "blue" in reg and "green" not in reg and 3 not in reg
    assert len(reg) == 2


def test_unknown_name_names_the_closest_and_all():
    reg: Registry = Registry("widget")
    reg.add("phash", 1)
    reg.add("dhash", 2)
    message = r"unknown widget 'PHash' \(closest: 'phash'\); known: dhash, phash"
    with pytest.raises(ValueError, match=message):
        reg.get("PHash")
    with pytest.raises(ValueError, match="unknown widget 3"):
        reg.get(3)


def test_a_name_is_registered_once_unless_replaced():
    reg: Registry = Registry("widget")
    reg.add("a", 1)
    with pytest.raises(ValueError, match="'a' is already registered"):
        reg.add("a", 2)
    reg.add("a", 3, replace=True)
    assert reg.get("a") == 3
    with pytest.raises(ValueError, match="non-empty string"):
        reg.add("", 1)


def test_finders_extend_the_names():
    reg: Registry = Registry("dataset")
    reg.add("sample", "S")
    reg.add_finder(lambda name: f"folder {name[7:]}" if name.startswith("folder:") else None,
                   lambda: ["folder:<path>"])
    assert reg.get("folder:/x") == "folder /x"
    assert "folder:/y" in reg
    assert reg.names() == ["folder:<path>", "sample"]
    with pytest.raises(ValueError, match="known: folder:<path>, sample"):
        reg.get("nope")
