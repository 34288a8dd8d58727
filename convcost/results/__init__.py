"""Plain result dataclasses with ``to_dict()``."""
