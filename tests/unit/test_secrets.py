from __future__ import annotations

import pytest
from cryptography.fernet import Fernet

from services.common.secrets import (
    Credentials,
    CredentialsUnreadable,
    SecretBox,
    SecretKeyError,
    key_version,
    main,
    mask,
)

CREDS = Credentials(api_key="ABCD1234efgh5678", secret="s3cr3t-value-1234", passphrase="pass-phrase-9")


def test_seal_open_round_trip_with_key_version():
    key = Fernet.generate_key()
    box = SecretBox([key])
    ciphertext, version = box.seal(CREDS)
    assert version == key_version(key) == box.current_key_version
    assert b"s3cr3t" not in ciphertext
    assert box.open(ciphertext) == CREDS


def test_extra_fields_survive_the_round_trip():
    box = SecretBox([Fernet.generate_key()])
    creds = Credentials("key-1234567890", "secret-123456", extra={"uid": "42"})
    ciphertext, _ = box.seal(creds)
    opened = box.open(ciphertext)
    assert opened.extra == {"uid": "42"}
    assert opened.to_ccxt_config() == {"apiKey": "key-1234567890", "secret": "secret-123456", "uid": "42"}


def test_rotation_keeps_old_ciphertext_readable_and_rotate_reseals_with_the_new_key():
    old_key, new_key = Fernet.generate_key(), Fernet.generate_key()
    old_ciphertext, old_version = SecretBox([old_key]).seal(CREDS)
    both = SecretBox([new_key, old_key])
    assert both.open(old_ciphertext) == CREDS
    rotated = both.rotate(old_ciphertext)
    assert both.current_key_version == key_version(new_key) != old_version
    new_only = SecretBox([new_key])
    assert new_only.open(rotated) == CREDS
    with pytest.raises(CredentialsUnreadable):
        new_only.open(old_ciphertext)


def test_repr_and_str_never_show_values():
    for text in (repr(CREDS), str(CREDS), f"{CREDS}", repr([CREDS])):
        assert "s3cr3t" not in text
        assert "ABCD1234efgh5678" not in text
        assert "pass-phrase" not in text
    assert "ABCD…78" in repr(CREDS)


def test_mask():
    assert mask("ab12cdefghijklmnf9") == "ab12…f9"
    assert mask("short") == "…"
    assert mask(None) == "…"


def test_missing_key_is_a_clear_error_outside_dev():
    with pytest.raises(SecretKeyError, match="REBALANCER_SECRET_KEYS is not set"):
        SecretBox.from_env({})
    with pytest.raises(SecretKeyError, match="REBALANCER_SECRET_KEYS is not set"):
        SecretBox.from_env({"REBALANCER_ENV": "production"})


def test_dev_default_key_only_in_dev_and_loudly():
    with pytest.warns(UserWarning, match="DEVELOPMENT key"):
        box = SecretBox.from_env({"REBALANCER_ENV": "dev"})
    assert box.open(box.seal(CREDS)[0]) == CREDS


def test_malformed_key_is_a_clear_error():
    with pytest.raises(SecretKeyError, match="malformed"):
        SecretBox.from_env({"REBALANCER_SECRET_KEYS": "not-a-key"})


def test_env_keys_first_is_current():
    first, second = Fernet.generate_key(), Fernet.generate_key()
    box = SecretBox.from_env({"REBALANCER_SECRET_KEYS": f"{first.decode()}, {second.decode()}"})
    assert box.current_key_version == key_version(first)
    assert box.key_versions == (key_version(first), key_version(second))


def test_garbage_ciphertext_is_unreadable():
    with pytest.raises(CredentialsUnreadable):
        SecretBox([Fernet.generate_key()]).open(b"garbage")


def test_generate_key_prints_a_usable_key(capsys: pytest.CaptureFixture[str]):
    assert main(["generate-key"]) == 0
    key = capsys.readouterr().out.strip()
    assert SecretBox([key.encode()]).open(SecretBox([key.encode()]).seal(CREDS)[0]) == CREDS
