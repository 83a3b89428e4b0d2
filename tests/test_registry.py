import pytest

from beyond_inet.registry import Registry, UnknownNameError


def test_unknown_name_suggests_close_matches() -> None:
    r: Registry[int] = Registry("widget")
    r.add("imagenet-val", 1)
    r.add("cue-conflict", 2)
    assert r.get("cue-conflict") == 2
    with pytest.raises(UnknownNameError) as e:
        r.get("imagenet-vall")
    assert "Did you mean 'imagenet-val'" in str(e.value)
    assert "Known: imagenet-val, cue-conflict" in str(e.value)


def test_duplicate_registration_is_an_error() -> None:
    r: Registry[int] = Registry("widget")
    r.register("a")(1)
    with pytest.raises(ValueError, match="already registered"):
        r.add("a", 2)
