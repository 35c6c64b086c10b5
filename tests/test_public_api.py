import asess


def test_all_is_sorted_and_complete():
    # Submodules appear once imported (the Emmett adapter by its tests).
    public = {n for n in dir(asess) if not n.startswith("_")} - {
        "aiohttp",
        "middleware",
        "demo",
        "emmett",
        "fastapi",
        "starlette",
        "testing",
    }
    assert asess.__all__ == sorted(asess.__all__)
    assert set(asess.__all__) == public


def test_no_submodule_shadows_the_session_proxy():
    assert isinstance(asess.session, asess._context.SessionProxy)
