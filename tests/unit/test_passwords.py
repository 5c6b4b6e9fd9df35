from shared.security.passwords import hash_password, needs_rehash, verify_password


def test_password_hash_is_argon2id_and_salted():
    first, second = hash_password("correct horse battery"), hash_password("correct horse battery")
    assert first.startswith("$argon2id$")
    assert first != second
    assert "correct horse" not in first


def test_right_password_verifies_and_wrong_one_does_not():
    stored = hash_password("correct horse battery")
    assert verify_password(stored, "correct horse battery")
    assert not verify_password(stored, "correct horse battery!")
    assert not verify_password(stored, "")


def test_garbage_hash_never_verifies():
    assert not verify_password("not-a-hash", "anything")


def test_fresh_hash_needs_no_rehash():
    assert not needs_rehash(hash_password("correct horse battery"))
