-- Version 13: an app's owner, for the client object and
-- `GET /v1/users/{id}/clients` (issue 20); set by
-- `spout admin app add --owner USERNAME`.
ALTER TABLE apps ADD COLUMN owner_id INTEGER REFERENCES users(id) ON DELETE SET NULL;
CREATE INDEX apps_by_owner ON apps(owner_id) WHERE owner_id IS NOT NULL;
