"""Stage 3a, accuracy: the robustness benchmark (Thorn's method), threshold calibration,
pair rates, the account-level model and their figures."""
