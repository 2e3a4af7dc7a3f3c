"""Stage 3d, cost benchmarks: index, PSI, device bundle, HE cost curves and the EU-scale
extrapolation, with their figures."""
