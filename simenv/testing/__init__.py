"""pytest support: the ``simenv`` plugin (auto-loaded through the ``pytest11`` entry point)."""
