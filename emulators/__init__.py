"""Stand-ins for clouds the tests and the reliability scripts cannot reach (Telegram)."""
