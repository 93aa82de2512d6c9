from .norm import Tally, normalize

__all__ = ["Tally", "normalize"]
