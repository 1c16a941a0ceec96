-- A connection's owner may give it a new API key of the same account (the old one was revoked,
-- expired or rotated): PUT /api/v1/connections/{id}/credentials. The api role may write the sealed
-- key and what is derived from it; credentials stay write-only (no SELECT on credentials_enc).
GRANT UPDATE (credentials_enc, key_version, api_key_hint, account_ref, account_uid_ref)
    ON exchange_connections TO rebalancer_api;
