"""The export-backup domain library: dump, compress, hash, store and notify, without Temporal."""
