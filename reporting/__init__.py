"""Reports over run folders: the self-contained HTML comparison page (and, later, trend pages).

A package of its own, not under `reports/`, because that folder is where run folders go (gitignored).
"""
