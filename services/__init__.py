"""The rebalancer's services; each runs alone as ``python -m services.<name>``."""
