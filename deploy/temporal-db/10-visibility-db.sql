-- Runs once, when the temporal-db volume is first initialised (docker-entrypoint-initdb.d).
-- POSTGRES_DB creates the `temporal` database; Temporal's visibility store needs a second one.
-- temporal-schema then installs and upgrades the schemas of both.
CREATE DATABASE temporal_visibility OWNER temporal;
