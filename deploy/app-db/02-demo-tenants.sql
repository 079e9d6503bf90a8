-- Demo data so `python starter.py export --project acme --follow` works on a fresh stack.
-- `globex` is suspended: exporting it shows the non-retryable "not ACTIVE" failure in the UI.
INSERT INTO control_plane.projects (id, name, status) VALUES
    ('acme', 'Acme Corp', 'ACTIVE'),
    ('globex', 'Globex', 'SUSPENDED')
ON CONFLICT (id) DO NOTHING;

CREATE SCHEMA IF NOT EXISTS acme;

CREATE TABLE IF NOT EXISTS acme.customers (
    id    bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    email text NOT NULL UNIQUE,
    name  text NOT NULL
);

CREATE TABLE IF NOT EXISTS acme.orders (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    customer_id bigint NOT NULL REFERENCES acme.customers (id),
    total_cents integer NOT NULL CHECK (total_cents >= 0),
    created_at  timestamptz NOT NULL DEFAULT now()
);

INSERT INTO acme.customers (email, name)
SELECT format('customer%s@acme.test', n), format('Customer %s', n)
FROM generate_series(1, 1000) AS n
ON CONFLICT (email) DO NOTHING;

INSERT INTO acme.orders (customer_id, total_cents)
SELECT 1 + (n % 1000), (n * 37) % 100000
FROM generate_series(1, 20000) AS n
WHERE NOT EXISTS (SELECT 1 FROM acme.orders);

CREATE SCHEMA IF NOT EXISTS globex;
CREATE TABLE IF NOT EXISTS globex.invoices (id bigint PRIMARY KEY, amount_cents integer NOT NULL);
