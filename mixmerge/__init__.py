"""mixmerge: mix data or merge models? Training, merging and evaluation for multilingual safety."""

__version__ = "0.1.0"

LANGUAGES = ("en", "fr", "es", "hi", "ar", "ru")
