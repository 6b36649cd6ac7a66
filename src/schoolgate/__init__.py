"""schoolgate: connects a school's portal to ESIA/Gosuslugi and the state education systems."""

__version__ = "0.1.0"
