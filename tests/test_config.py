"""Configuration: the YAML defaults, user file and ARA_* overrides, validated."""

import pytest

from ara_sidecar.config import load_settings
from ara_sidecar.errors import UserError


def test_defaults_load():
    s = load_settings(environ={})
    assert s.device == "auto" and s.tts == "piper" and s.voice == "dsp" and s.fps == 25
    assert s.path(s.personas_dir).joinpath("ara", "modes.yaml").is_file()


def test_env_overrides_nested_and_typed():
    s = load_settings(environ={"ARA_PIPER_VOICE": "lessac", "ARA_FPS": "30", "ARA_LIPSYNC": "animator"})
    assert s.piper.voice == "lessac" and s.fps == 30 and s.lipsync == "animator"


def test_user_file_is_merged(tmp_path):
    user = tmp_path / "mine.yaml"
    user.write_text("encoder:\n  crf: 28\n")
    s = load_settings(environ={"ARA_CONFIG": str(user)})
    assert s.encoder.crf == 28 and s.encoder.preset == "superfast"


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"ARA_DEVICE": "tpu"}, "device"),
        ({"ARA_FPS": "0"}, "fps"),
        ({"ARA_ENCODER_CRF": "abc"}, "encoder.crf"),
    ],
)
def test_invalid_values_name_the_key(env, message):
    with pytest.raises(UserError, match=message):
        load_settings(environ=env)


def test_unknown_key_in_user_file(tmp_path):
    user = tmp_path / "bad.yaml"
    user.write_text("encoder:\n  crff: 28\n")
    with pytest.raises(UserError, match=r"encoder\.crff"):
        load_settings(environ={"ARA_CONFIG": str(user)})


def test_cli_style_overrides_revalidate():
    s = load_settings(environ={})
    assert s.with_overrides(**{"piper.voice": "x"}).piper.voice == "x"
    with pytest.raises(UserError, match="fps"):
        s.with_overrides(fps=-1)
