"""Flags and files → validated specs; every validation rule lives here, before torch is imported."""
