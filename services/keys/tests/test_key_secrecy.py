"""The full key leaves the service once, in the create response: it is in no
log line and no database row, while its hash is."""

from __future__ import annotations

import hashlib
import hmac


def test_full_key_absent_from_logs(stack, client, new_user, create_key, probe):
    user = new_user()
    created = create_key(user)
    key = created["key"]
    assert probe(key).status_code == 404
    # A wrong key next to a real one must not be logged either.
    assert probe(key[:-1] + "x").status_code == 401

    logs = {path.name: path.read_text() for path in stack.log_dir.glob("*.log")}
    assert "keys.log" in logs
    assert created["id"] in logs["keys.log"]
    secret_part = key[len("ir_") :]
    for name, text in logs.items():
        assert secret_part not in text, f"the key is in {name}"
        assert secret_part[:-1] not in text, f"most of the key is in {name}"


def test_full_key_absent_from_database(stack, new_user, create_key, fetch_rows):
    user = new_user()
    created = create_key(user)
    secret_part = created["key"][len("ir_") :]
    pepper = stack.common_env()["API_KEY_PEPPER"]
    expected_hash = hmac.new(
        pepper.encode(), created["key"].encode(), hashlib.sha256
    ).hexdigest()

    tables = fetch_rows(
        "SELECT table_schema, table_name FROM information_schema.tables "
        "WHERE table_type = 'BASE TABLE' "
        "AND table_schema NOT IN ('pg_catalog', 'information_schema')"
    )
    assert ("keys", "api_keys") in [tuple(row) for row in tables]
    for schema, table in tables:
        rows = fetch_rows(
            f'SELECT count(*) FROM "{schema}"."{table}" AS t '
            "WHERE t::text LIKE '%' || $1 || '%'",
            secret_part,
        )
        assert rows[0]["count"] == 0, f"the key is in {schema}.{table}"

    stored = fetch_rows(
        "SELECT key_hash, prefix, last_four FROM keys.api_keys WHERE key_hash = $1",
        expected_hash,
    )
    assert len(stored) == 1
    assert stored[0]["prefix"] == created["prefix"]
    assert stored[0]["last_four"] == created["lastFour"]
