"""The research behind ssd_nobias: the studies' runners and reports, the naive fix, the
diagnostics they read. Installed apart from the package (studies/pyproject.toml); nothing in
ssd_nobias imports it."""
