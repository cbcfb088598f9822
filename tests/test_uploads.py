"""The server's uploads in-process: kept across a restart and a cache clear, gone when asked."""

from __future__ import annotations

import pytest
from media import wav

from ara_sidecar.cache import cache_key
from ara_sidecar.errors import UserError
from ara_sidecar.pipeline import Pipeline
from ara_sidecar.server.uploads import UPLOAD_KINDS, Uploads


def test_uploads_survive_a_restart_and_a_cache_clear(settings, tmp_path, astronaut_png):
    settings = settings.with_overrides(**{"cache.dir": str(tmp_path / "cache")})
    image = astronaut_png.read_bytes()
    first = Uploads(Pipeline(settings))
    avatar_id = first.add_avatar(image, "me.png")
    audio_id = first.add_audio(wav(), "hello.wav")
    video_key = cache_key({"kind": "video", "n": 1})
    render = first.cache.get_or_create(video_key, ".mp4", lambda path: path.write_bytes(b"video"))

    uploads = Uploads(Pipeline(settings))  # another server on the same cache: a restart
    listed = uploads.avatars()
    assert [a["avatar_id"] for a in listed if "uploaded" in a] == [avatar_id]
    assert any(a.get("persona") == "ara" for a in listed)

    assert uploads.cache.clear(keep_kinds=UPLOAD_KINDS) == 1
    assert not render.path.exists()
    assert uploads.avatar_path(avatar_id).read_bytes() == image
    assert uploads.audio_path(audio_id).read_bytes() == wav()

    assert uploads.cache.clear() == 2
    assert [a for a in uploads.avatars() if "uploaded" in a] == []
    with pytest.raises(UserError, match="upload the image with POST /v1/avatars"):
        uploads.avatar_path(avatar_id)
