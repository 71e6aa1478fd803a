"""ProxylessNAS (Cai, Zhu & Han, ICLR 2019): search spaces, candidate ops, the released networks, the
supernets and the registered search method ``proxylessnas``."""

from nasrepro.methods.proxylessnas import search, spaces  # noqa: F401  (registration)
