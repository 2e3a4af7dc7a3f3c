"""Stage 3c, attacks: evasion, collision, membership oracle, dishonest clients and the
per-scheme security profile a run stores."""
