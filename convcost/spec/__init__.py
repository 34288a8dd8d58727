"""Flags and files → validated specs; every validation rule lives here, before torch is imported."""


def __getattr__(name: str) -> object:
    if name == "DType":  # the README's `from convcost.spec import DType` of before the role folders
        from convcost.spec.compare import DType

        return DType
    raise AttributeError(f"module 'convcost.spec' has no attribute {name!r}")
