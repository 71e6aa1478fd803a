"""ProxylessNAS (Cai, Zhu & Han, ICLR 2019): search spaces, candidate ops and the released networks."""
