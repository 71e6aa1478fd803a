"""NASBOT (Kandasamy et al., NeurIPS 2018): layer graphs (`graph`) and the OTMANN distance (`otmann`).

Nothing is imported or registered here yet: the method itself (GP, EA, asynchronous workers) lands
later, and importing `nasrepro.methods.nasbot.graph` must stay cheap (numpy only).
"""
