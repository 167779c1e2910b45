"""FIX adapter: venue dictionaries and the translation between quickfix messages and core events."""
