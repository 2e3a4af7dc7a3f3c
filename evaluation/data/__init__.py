"""Stage 1, the work: corpora, transforms, the traffic workload and parallel hashing.

Everything here is seeded data every scheme will see; nothing here knows a scheme."""
