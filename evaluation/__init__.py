"""The harness, in stages; each imports only stages before it (see docs/architecture.md):

data -> run -> accuracy | leakage | attacks | bench -> api -> assess -> cli
"""
