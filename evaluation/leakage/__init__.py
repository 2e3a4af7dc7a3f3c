"""Stage 3b, leakage: probes on the parties' views, the inversion attack and their figures."""
