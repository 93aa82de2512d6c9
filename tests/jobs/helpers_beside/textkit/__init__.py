from .norm import Tally, normalize
