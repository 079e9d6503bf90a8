-- Runs once, when the app-db volume is first initialised (docker-entrypoint-initdb.d).
-- The part of the platform's control plane the worker reads (backup/projects.py): a project is
-- backed up only when its status is ACTIVE; its schema is schema_name, or the id when NULL.
CREATE SCHEMA IF NOT EXISTS control_plane;

CREATE TABLE IF NOT EXISTS control_plane.projects (
    id          text PRIMARY KEY,
    name        text NOT NULL,
    status      text NOT NULL DEFAULT 'ACTIVE',
    schema_name text,
    created_at  timestamptz NOT NULL DEFAULT now()
);
