"""CPF encrypted at rest: the codec, the key document, rotation on every adapter, and that
no CPF is ever written in clear."""

import json
import os
import stat

import pytest
from hypothesis import given
from hypothesis import strategies as st

from service.customers.errors import DuplicateCustomer
from service.customers.model import now
from service.settings import SettingsError, load_settings
from service.storage.pii import Keyring, PiiCodec, PiiKeyError, SealedCpf, check_key_ids, load_codec
from tests.factories import change
from tests.storage.conftest import customer, raw_dump, reopened

CPFS = ["52998224725", "11144477735", "39053344705"]


def spellings(cpf):
    return [cpf.encode(), f"{cpf[:3]}.{cpf[3:6]}.{cpf[6:9]}-{cpf[9:]}".encode()]


@given(st.text(alphabet="0123456789", min_size=11, max_size=11))
def test_a_cpf_round_trips_and_its_index_does_not_depend_on_the_key(cpf):
    codec = PiiCodec(Keyring.generate())
    rotated = PiiCodec(codec.keyring.with_new_key())
    sealed = codec.encrypt_cpf(cpf)
    assert cpf not in sealed.ciphertext and cpf not in sealed.index
    assert rotated.decrypt_cpf(sealed) == cpf
    assert rotated.encrypt_cpf(cpf).index == sealed.index  # the unique index survives rotation
    assert rotated.encrypt_cpf(cpf).key_id == rotated.active_key_id != sealed.key_id
    assert codec.encrypt_cpf(cpf).ciphertext != sealed.ciphertext  # a fresh nonce each time


def test_a_ciphertext_moved_to_another_row_or_key_does_not_decrypt():
    codec = PiiCodec(Keyring.generate())
    maria, joao = codec.encrypt_cpf(CPFS[0]), codec.encrypt_cpf(CPFS[1])
    with pytest.raises(PiiKeyError):
        codec.decrypt_cpf(SealedCpf(maria.ciphertext, maria.key_id, joao.index))
    with pytest.raises(PiiKeyError, match="no PII key with id 'gone'"):
        codec.decrypt_cpf(SealedCpf(maria.ciphertext, "gone", maria.index))
    with pytest.raises(PiiKeyError):
        codec.decrypt_cpf(SealedCpf(maria.ciphertext[:-4] + "AAAA", maria.key_id, maria.index))
    other = PiiCodec(Keyring.generate())  # another document: other keys, other index key
    assert other.blind_index(CPFS[0]) != maria.index


@pytest.mark.parametrize(
    ("document", "complaint"),
    [
        ("not json", "not a PII key document"),
        ('{"active": "a", "index_key": "AAAA", "keys": {}}', "not a PII key document"),
        ("{}", "not a PII key document"),
    ],
)
def test_a_broken_key_document_is_refused_with_its_source(document, complaint):
    with pytest.raises(SettingsError, match=f"env X: {complaint}"):
        Keyring.from_json(document, "env X")


def test_a_key_document_must_hold_its_active_key():
    document = json.loads(Keyring.generate().to_json())
    document["active"] = "missing"
    with pytest.raises(SettingsError, match="active key id 'missing' is not in keys"):
        Keyring.from_json(json.dumps(document), "f")


def test_the_embedded_profile_creates_the_key_file_0600_once(tmp_path, monkeypatch):
    monkeypatch.delenv("CUSTOMERS_PII_KEYS", raising=False)
    settings = load_settings(environ={}, overrides={"pii": {"key_file": str(tmp_path / "k/pii")}})
    codec = load_codec(settings)
    key_file = tmp_path / "k" / "pii"
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert load_codec(settings).keyring == codec.keyring  # the second start reads the same key
    assert os.listdir(tmp_path / "k") == ["pii"]  # no temp file left behind


def test_without_create_a_missing_key_file_refuses_to_start(tmp_path, monkeypatch):
    monkeypatch.delenv("CUSTOMERS_PII_KEYS", raising=False)
    pii = {"key_file": str(tmp_path / "pii"), "create_key_file": False}
    with pytest.raises(SettingsError, match="does not exist"):
        load_codec(load_settings(environ={}, overrides={"pii": pii}))
    assert not (tmp_path / "pii").exists()


def test_the_env_var_wins_over_the_key_file(tmp_path, monkeypatch):
    keyring = Keyring.generate()
    monkeypatch.setenv("CUSTOMERS_PII_KEYS", keyring.to_json())
    settings = load_settings(environ={}, overrides={"pii": {"key_file": str(tmp_path / "pii")}})
    assert load_codec(settings).keyring == keyring
    assert not (tmp_path / "pii").exists()


def test_stored_key_ids_the_configuration_lacks_are_named():
    codec = PiiCodec(Keyring.generate())
    check_key_ids({codec.active_key_id}, codec, "f")
    with pytest.raises(SettingsError, match="key id\\(s\\) k-old, which f does not have"):
        check_key_ids({codec.active_key_id, "k-old"}, codec, "f")


async def test_rotation_reseals_everything_and_lookups_keep_working(repository, codec):
    stored = [
        await repository.insert(customer(f"c{i}@example.com", cpf), change("create"))
        for i, cpf in enumerate(CPFS)
    ]
    assert await repository.pii_key_ids() == {codec.active_key_id}
    rotated = PiiCodec(codec.keyring.with_new_key())
    newest = rotated.active_key_id
    async with reopened(repository, rotated) as server:  # restarted with the new document
        stored.append(
            await server.insert(customer("new@example.com", "22233344405"), change("create"))
        )
        assert await server.pii_key_ids() == {codec.active_key_id, newest}
        assert await server.reencrypt_pii(limit=2) == 2  # one batch: resumable from here
        assert await server.reencrypt_pii(limit=2) == 1
        assert await server.reencrypt_pii(limit=2) == 0
        assert await server.pii_key_ids() == {newest}

    # Only the newest key is needed now; lookups and uniqueness work as before.
    keyring = rotated.keyring
    newest_only = Keyring(newest, keyring.index_key, {newest: keyring.keys[newest]})
    async with reopened(repository, PiiCodec(newest_only)) as reader:
        for before in stored:
            assert await reader.get(before["id"]) == before
            found = await reader.page(limit=5, filters={"cpf": before["cpf"]})
            assert [c["id"] for c in found.items] == [before["id"]]
            assert await reader.exists("cpf", before["cpf"])
        with pytest.raises(DuplicateCustomer) as clash:
            await reader.insert(customer("again@example.com", CPFS[0]), change("create"))
        assert clash.value.fields == ("cpf",)


async def test_no_cpf_in_clear_after_inserts_updates_idempotent_answers_and_rotation(
    repository, codec
):
    maria = await repository.insert(customer("maria@example.com", CPFS[0]), change("create"))
    joao = await repository.insert(customer("joao@example.com", CPFS[1]), change("create"))
    await repository.update(joao["id"], {"cpf": CPFS[2], "name": "João"}, change("update"))
    await repository.update(maria["id"], {"name": "Maria S."}, change("update"))
    claim = await repository.idempotency.claim("r1", "f1", now())
    answer = codec.seal(json.dumps({**maria, "created_at": "", "updated_at": ""}).encode(), "x")
    await repository.idempotency.complete("r1", claim.token, answer, now())
    async with reopened(repository, PiiCodec(codec.keyring.with_new_key())) as rotated:
        while await rotated.reencrypt_pii(limit=1):
            pass
        dump = await raw_dump(rotated)
    assert b"maria@example.com" in dump  # the dump is real: fields not sealed are in clear
    for cpf in CPFS:
        for spelling in spellings(cpf):
            assert spelling not in dump, spelling
