"""The embedded dev stack (PostgreSQL, sample tenants) behind `make dev`, `make demo` and tests."""
